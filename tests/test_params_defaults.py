"""conf/base/parameters*.yml equals the schema's defaults (``scgapfill.params``), key for key.

``kedro run`` reads the yml; ``scgapfill.GapFill`` and ``scgapfill.impute`` read the schema. The two
must give the same model, so every yml key is a schema field and every schema field is in the yml with
the schema's default, but for the deliberate exceptions below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from scgapfill.params import SECTIONS

CONF_BASE = Path(__file__).resolve().parents[1] / "conf" / "base"

# Dotted key -> why the yml differs from the schema's default on purpose.
EXCEPTIONS = {
    "train.checkpoint_dir": (
        "a Kedro run keeps last.ckpt under data/06_models/checkpoints so that a killed `kedro run` resumes; "
        "the library's default is no folder (a temporary one), as a notebook has no project folder to write into"
    ),
}


def _yml() -> dict:
    merged: dict = {}
    for path in sorted(CONF_BASE.glob("parameters*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def _flat(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}.{key}"))
        return out
    return {prefix: tree}


def _defaults(model: type[BaseModel], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out.update(_defaults(field.annotation, key))
        else:
            out[key] = field.get_default(call_default_factory=True)
    return out


def _same(default: Any, value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() == "auto" and default in (None, 0, "auto"):
        return True  # "auto" in the yml is how the schema's 0 / None is written there (validators map it)
    if isinstance(default, (list, tuple)):
        return list(default) == list(value or [])
    if isinstance(default, float) or isinstance(value, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and float(default) == float(value)
    return type(default) is type(value) and default == value if default is not None else value is None


def test_every_yml_key_is_a_schema_field() -> None:
    yml = _yml()
    assert set(yml) <= set(SECTIONS), set(yml) - set(SECTIONS)
    unknown = []
    for section, tree in yml.items():
        known = _defaults(SECTIONS[section], section)
        unknown += [key for key in _flat(tree, section) if key not in known]
    assert not unknown, f"keys in conf/base that the schema does not know: {unknown}"


def test_every_schema_default_is_in_the_yml_with_the_same_value() -> None:
    yml = _yml()
    missing, different = [], []
    for section, model in SECTIONS.items():
        values = _flat(yml.get(section, {}), section)
        for key, default in _defaults(model, section).items():
            if key not in values:
                missing.append(key)
            elif key not in EXCEPTIONS and not _same(default, values[key]):
                different.append(f"{key}: schema {default!r}, yml {values[key]!r}")
    assert not missing, f"schema fields missing from conf/base/parameters*.yml: {missing}"
    assert not different, "yml values that differ from the schema's defaults:\n" + "\n".join(different)


def test_the_exceptions_still_differ() -> None:
    """An exception whose yml value came back to the default is no longer one: drop it from the list."""
    yml = _yml()
    for key in EXCEPTIONS:
        section = key.split(".")[0]
        default = _defaults(SECTIONS[section], section)[key]
        assert not _same(default, _flat(yml[section], section)[key]), key


def test_every_field_is_described() -> None:
    """The parameters page prefers ``Field(description=...)``; a field with none falls back to comments."""
    described = [k for s, m in SECTIONS.items() for k, f in _fields(m, s) if f.description]
    assert len(described) > 60
    assert SECTIONS["train"].model_fields["min_delta"].description


def _fields(model: type[BaseModel], prefix: str):
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _fields(field.annotation, f"{prefix}.{name}")
        else:
            yield f"{prefix}.{name}", field
