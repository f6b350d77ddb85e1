"""The parameters reference, rendered at build time from the typed schema (``scgapfill.params``).

``{scgapfill-parameters} train`` in a page renders one table for the ``train`` section: every field
(nested sections flattened to dotted names, ``train.loss.zip``), its type and bounds, its default as the
schema gives it (what ``scgapfill.GapFill`` and ``scgapfill.impute`` use), the value in
``conf/base/parameters*.yml`` where that differs (what ``kedro run`` uses), and a description: the
field's own ``description`` when the schema has one, else the comment next to the key in the yml, else
the comment above the field in ``params.py``.

A section of ``scgapfill.params.SECTIONS`` that no page renders is a build warning (an error under
``-W``), so a new section cannot be left out of the reference.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf" / "base"
_FIELD = re.compile(r"^    (?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*:")
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>.*)$")


# --- conf/base/parameters*.yml: values, comments and the file of each section ----------------------------

def _split_comment(rest: str) -> tuple[str, str, int | None]:
    """``" 16     # channels ..."`` -> value text, comment text, the comment's column in ``rest``."""
    quote = None
    for i, char in enumerate(rest):
        if char in "\"'":
            quote = None if quote == char else (quote or char)
        elif char == "#" and quote is None and (i == 0 or rest[i - 1].isspace()):
            return rest[:i].strip(), rest[i + 1:].strip(), i
    return rest.strip(), "", None


# An inline comment that ends on one of these words goes on at the next key's comment (three keys sharing
# one sentence, as train.cells_per_epoch, max_val_cells and max_steps do).
_OPEN_ENDED = {"and", "or", "the", "with", "of", "to", "a", "for", "in", "on", "by", "from", "at"}


def read_conf(conf: Path = CONF) -> tuple[dict[str, str], dict[str, str]]:
    """Comments by dotted key, and the yml file of each top-level section.

    A key's comment is the comment lines right above it (at its indent) and its inline comment with the
    comment-only lines under it indented deeper than the key (its continuation).
    """
    comments: dict[str, str] = {}
    files: dict[str, str] = {}
    for path in sorted(conf.glob("parameters*.yml")):
        stack: list[tuple[int, str]] = []
        pending: list[str] = []
        last_key, last_indent, inline = None, 0, False
        run: list[str] = []  # keys whose inline comments make one sentence
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if not stripped:
                pending, inline = [], False
                continue
            indent = len(line) - len(line.lstrip())
            if stripped.startswith("#"):
                text = stripped.lstrip("#").strip()
                if inline and last_key is not None and indent > last_indent:
                    comments[last_key] = f"{comments[last_key]} {text}".strip()
                    run = []  # the sentence went on under the key, not at the next one
                else:
                    pending.append(text)
                    inline = False
                continue
            match = _KEY.match(line)
            if match is None:
                continue
            while stack and stack[-1][0] >= indent:
                stack.pop()
            key = ".".join([k for _, k in stack] + [match["key"]])
            value, comment, _ = _split_comment(match["rest"])
            if not stack:
                files[key] = path.name
            if run and comment:
                run.append(key)
                shared = " ".join(filter(None, [comments[run[0]], comment]))
                for member in run:
                    comments[member] = shared
            else:
                run = []
                comments[key] = " ".join([*pending, comment]).strip()
            if comment and comments[key].split()[-1].lower() in _OPEN_ENDED:
                run = run or [key]
            else:
                run = []
            pending = []
            last_key, last_indent, inline = key, indent, bool(comment)
            if not value:
                stack.append((indent, match["key"]))
    return comments, files


def read_values(conf: Path = CONF) -> dict[str, Any]:
    """The yml's values by dotted key, as Kedro reads them."""
    import yaml

    values: dict[str, Any] = {}

    def walk(prefix: str, tree: Any) -> None:
        values[prefix] = tree
        if isinstance(tree, dict):
            for key, sub in tree.items():
                walk(f"{prefix}.{key}", sub)

    for path in sorted(conf.glob("parameters*.yml")):
        for key, tree in (yaml.safe_load(path.read_text()) or {}).items():
            walk(key, tree)
    return values


# --- the schema ------------------------------------------------------------------------------------------

def source_comments(cls: type) -> dict[str, str]:
    """The comment lines right above each field of a pydantic model's class body."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    pending: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        field = _FIELD.match(line)
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
        elif field is not None:
            if pending:
                found[field["name"]] = " ".join(pending)
            pending = []
        else:
            pending = []
    return found


def _is_model(annotation: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def type_text(annotation: Any) -> str:
    """``Literal["a", "b"]`` -> ``a | b``; ``Optional[float]`` -> ``float or null``; ``Any`` -> ``any``."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return "any"
    if origin is Literal:
        return " | ".join(str(arg) for arg in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        text = " or ".join(type_text(a) for a in args)
        return f"{text} or null" if len(args) < len(typing.get_args(annotation)) else text
    if origin is list:
        (arg,) = typing.get_args(annotation) or (Any,)
        return f"list of {type_text(arg)}"
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def bounds_text(field: Any) -> str:
    parts = []
    for item in field.metadata:
        for name, sign in _BOUNDS:
            if getattr(item, name, None) is not None:
                parts.append(f"{sign} {getattr(item, name)}")
    return ", ".join(parts)


def value_text(value: Any) -> str:
    """A value as it is written in the yml (``null``, ``true``, ``[a, b]``, ``""``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return repr(value)


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == "auto"


def same_value(schema: Any, conf: Any) -> bool:
    if isinstance(schema, (list, tuple)) and isinstance(conf, (list, tuple)):
        return list(schema) == list(conf)
    if _is_auto(conf) and schema in (None, 0, "auto"):
        return True  # "auto" in the yml is how the schema's 0/None is written there
    return schema == conf or (isinstance(conf, float) and isinstance(schema, (int, float)) and float(schema) == conf)


def rows(section: str, model: type, comments: dict[str, str], values: dict[str, Any], prefix: str = "") -> list[dict]:
    """One row per field of ``model``, nested models flattened in place."""
    from pydantic_core import PydanticUndefined

    above = source_comments(model)
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix or section}.{name}"
        if _is_model(field.annotation):
            out.extend(rows(section, field.annotation, comments, values, key))
            continue
        default = field.default if field.default is not PydanticUndefined else None
        if field.default_factory is not None:
            default = field.default_factory()
        description = field.description or comments.get(key) or above.get(name, "")
        conf = values.get(key, PydanticUndefined)
        out.append({
            "key": key,
            "type": type_text(field.annotation),
            "bounds": bounds_text(field),
            # A field the yml leaves at auto (decided at run time: train.budget, the CPUs) shows auto.
            "default": "auto" if _is_auto(conf) and same_value(default, conf) else value_text(default),
            "conf": None if conf is PydanticUndefined or same_value(default, conf) else value_text(conf),
            "missing_from_conf": conf is PydanticUndefined,
            "description": description,
        })
    return out


def section_rows(section: str) -> tuple[list[dict], str, str]:
    """The rows of one section, the yml file it lives in, and the comment above it there."""
    from scgapfill.params import SECTIONS

    comments, files = read_conf()
    values = read_values()
    return rows(section, SECTIONS[section], comments, values), files.get(section, ""), comments.get(section, "")


# --- docutils --------------------------------------------------------------------------------------------

def _entry(*children: nodes.Node) -> nodes.entry:
    entry = nodes.entry()
    entry += nodes.paragraph("", "", *children) if children else nodes.paragraph()
    return entry


def _table(items: list[dict]) -> nodes.table:
    table = nodes.table(classes=["scgapfill-parameters"])
    group = nodes.tgroup(cols=4)
    table += group
    for width in (24, 18, 16, 42):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for title in ("parameter", "type", "default", "what it does"):
        row += _entry(nodes.Text(title))
    head += row
    body = nodes.tbody()
    group += body
    for item in items:
        row = nodes.row(ids=[nodes.make_id(f"param-{item['key']}")])
        row += _entry(nodes.literal(text=item["key"]))
        kind = [nodes.Text(item["type"])]
        if item["bounds"]:
            kind.append(nodes.Text(f" ({item['bounds']})"))
        row += _entry(*kind)
        default = [nodes.literal(text=item["default"])]
        if item["conf"] is not None:
            default += [nodes.Text("; conf/base: "), nodes.literal(text=item["conf"])]
        elif item["missing_from_conf"]:
            default += [nodes.Text("; not in conf/base")]
        row += _entry(*default)
        row += _entry(nodes.Text(item["description"])) if item["description"] else _entry()
        body += row
    return table


class ParametersDirective(SphinxDirective):
    """``{scgapfill-parameters} <section>``: the table of one parameter section."""

    required_arguments = 1
    has_content = False
    option_spec = {"no-intro": directives.flag}

    def run(self) -> list[nodes.Node]:
        from scgapfill.params import SECTIONS

        section = self.arguments[0]
        if section not in SECTIONS:
            logger.warning("scgapfill-parameters: %r is not a parameter section (%s)", section, sorted(SECTIONS),
                           location=self.get_location())
            return []
        documented = getattr(self.env, "scgapfill_parameter_sections", {})
        documented[section] = self.env.docname
        self.env.scgapfill_parameter_sections = documented
        self.env.note_dependency(str(Path(inspect.getfile(SECTIONS[section])).resolve()))
        for path in sorted(CONF.glob("parameters*.yml")):
            self.env.note_dependency(str(path))
        items, file, comment = section_rows(section)
        out: list[nodes.Node] = []
        if "no-intro" not in self.options:
            intro = nodes.paragraph()
            intro += nodes.Text("In ")
            intro += nodes.literal(text=f"conf/base/{file}" if file else "no conf/base file")
            intro += nodes.Text(f"; schema: ")
            intro += nodes.literal(text=f"scgapfill.params.{SECTIONS[section].__name__}")
            intro += nodes.Text(f". {comment}" if comment else ".")
            out.append(intro)
        out.append(_table(items))
        return out


def _purge(app: Sphinx, env: Any, docname: str) -> None:
    documented = getattr(env, "scgapfill_parameter_sections", {})
    for section in [s for s, doc in documented.items() if doc == docname]:
        del documented[section]


def _merge(app: Sphinx, env: Any, docnames: Any, other: Any) -> None:
    env.scgapfill_parameter_sections = {**getattr(env, "scgapfill_parameter_sections", {}),
                                        **getattr(other, "scgapfill_parameter_sections", {})}


def _check(app: Sphinx, env: Any) -> None:
    from scgapfill.params import SECTIONS

    missing = sorted(set(SECTIONS) - set(getattr(env, "scgapfill_parameter_sections", {})))
    if missing:
        logger.warning("parameter section(s) %s of scgapfill.params.SECTIONS are on no page: add "
                       "```{scgapfill-parameters} <section>``` to docs/parameters.md", missing)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("scgapfill-parameters", ParametersDirective)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-check-consistency", _check)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
