"""Typed parameters: the shipped defaults parse, wrong values name their dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scgapfill import params
from scgapfill.params import ParameterError, parse, validate_all

CONF_BASE = Path(__file__).resolve().parents[1] / "conf" / "base"


def _shipped_parameters() -> dict:
    merged: dict = {}
    for path in sorted(CONF_BASE.glob("parameters*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def test_shipped_parameters_are_valid_and_complete() -> None:
    shipped = _shipped_parameters()
    parsed = validate_all(shipped)
    for section in ("input", "qc", "normalize", "hvg", "layout"):
        assert section in parsed, section
        assert isinstance(parsed[section], params.SECTIONS[section])
    assert parsed["qc"].min_genes == shipped["qc"]["min_genes"]
    assert parsed["input"].simulation.n_cells == shipped["input"]["simulation"]["n_cells"]


@pytest.mark.parametrize("section", sorted(params.SECTIONS))
def test_every_section_has_valid_defaults(section: str) -> None:
    model = parse(section, None)
    assert isinstance(model, params.SECTIONS[section])
    assert parse(section, {}) == model
    assert parse(section, model) is model  # already typed: returned as is


def test_values_are_coerced_and_frozen() -> None:
    qc = parse("qc", {"min_genes": "50", "max_counts": None})
    assert qc.min_genes == 50 and qc.max_counts is None
    with pytest.raises(Exception):
        qc.min_genes = 10  # frozen: a node cannot change the run's parameters


@pytest.mark.parametrize(
    ("section", "value", "key"),
    [
        ("qc", {"min_genes": -1}, "qc.min_genes"),
        ("qc", {"max_pct_mito": 101}, "qc.max_pct_mito"),
        ("qc", {"min_genes": "many"}, "qc.min_genes"),
        ("qc", {"min_gene": 10}, "qc.min_gene"),  # unknown key: a typo
        ("hvg", {"flavor": "seurat_v9"}, "hvg.flavor"),
        ("layout", {"strategy": "umap"}, "layout.strategy"),
        ("input", {"simulation": {"n_cells": 2}}, "input.simulation.n_cells"),
        ("input", {"simulation": {"dropout_shape": 1.0}}, "input.simulation.dropout_shape"),
        ("train", {"loss": {"alpha": -1}}, "train.loss.alpha"),
        ("train", {"training_mask": {"min_rate": 0.6, "max_rate": 0.2}}, "train.training_mask"),
        ("model", {"depth": 0}, "model.depth"),
        ("heldout", {"fraction": 1.0}, "heldout.fraction"),
    ],
)
def test_wrong_value_names_the_dotted_key(section: str, value: dict, key: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse(section, value)
    message = str(info.value)
    assert f"  {key}:" in message, message
    assert isinstance(info.value, ValueError)


def test_training_mask_order_message() -> None:
    with pytest.raises(ParameterError, match=r"min_rate \(0\.6\) must not exceed max_rate \(0\.2\)"):
        parse("train", {"training_mask": {"min_rate": 0.6, "max_rate": 0.2}})
    # Equal bounds are fine.
    assert parse("train", {"training_mask": {"min_rate": 0.3, "max_rate": 0.3}}).training_mask.min_rate == 0.3


def test_validate_all_collects_every_error() -> None:
    shipped = _shipped_parameters()
    bad = {
        **shipped,
        "qc": {**shipped["qc"], "min_genes": -1, "min_cells": -2},
        "layout": {"strategy": "umap"},
        "train": {"training_mask": {"min_rate": 0.9, "max_rate": 0.1}},
    }
    with pytest.raises(ParameterError) as info:
        validate_all(bad)
    message = str(info.value)
    for key in ("qc.min_genes", "qc.min_cells", "layout.strategy", "train.training_mask"):
        assert f"  {key}:" in message, (key, message)
    assert message.count("Invalid parameter(s)") == 1
    assert "input." not in message and "hvg." not in message  # valid sections are not reported


def test_validate_all_refuses_unknown_sections_with_the_closest_name() -> None:
    # A typo in a section name would otherwise be ignored: trian.max_epochs=3 ran 100 epochs.
    with pytest.raises(ParameterError) as info:
        validate_all({"qc": {}, "trian": {"max_epochs": 3}, "zzz": 1})
    message = str(info.value)
    assert "  trian: not a parameter section; did you mean 'train'?" in message
    assert "  zzz: not a parameter section; the sections are" in message


def test_method_names_are_checked() -> None:
    from scgapfill.eval.baselines import BASELINES
    from scgapfill.params import BASELINE_NAMES

    assert set(BASELINE_NAMES) == set(BASELINES)
    with pytest.raises(ParameterError, match=r"baselines.methods: .*unknown method\(s\) \['magik'\]"):
        parse("baselines", {"methods": "none+magik"})
    with pytest.raises(ParameterError, match=r"benchmark.methods: .*\['unnet'\]"):
        parse("benchmark", {"methods": ["unnet"]})
    assert parse("benchmark", {"methods": "none+unet"}).methods == ["none", "unet"]


def test_a_gpu_is_refused_before_any_work_where_there_is_none(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError, match="train.accelerator: 'gpu' asks for a GPU"):
        validate_all({"train": {"accelerator": "gpu"}})
    assert validate_all({"train": {"accelerator": "cpu"}})["train"].accelerator == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert validate_all({"train": {"accelerator": "gpu"}})["train"].accelerator == "gpu"


def test_train_auto_settings_are_decided_at_run_time() -> None:
    auto = parse("train", {"enable_progress_bar": "auto", "num_threads": "auto"})
    assert auto.enable_progress_bar is None and auto.num_threads == 0
    assert parse("train", {}) == auto
    fixed = parse("train", {"enable_progress_bar": False, "num_threads": 3})
    assert fixed.enable_progress_bar is False and fixed.num_threads == 3
    assert parse("train", {"enable_progress_bar": "true"}).enable_progress_bar is True
    for wrong in ({"num_threads": -1}, {"num_threads": "many"}, {"enable_progress_bar": "sometimes"}):
        with pytest.raises(ParameterError, match=f"train.{next(iter(wrong))}"):
            parse("train", wrong)


def test_the_hook_parses_once_and_hands_nodes_the_typed_sections() -> None:
    from types import SimpleNamespace

    from scgapfill.glue.hooks import ParameterValidationHook

    hook = ParameterValidationHook()
    hook.after_context_created(SimpleNamespace(params={"train": {"max_epochs": 3}, "qc": {"min_genes": 5}}))
    inputs = {"params:train": {"max_epochs": 3}, "params:qc": {"min_genes": 5}, "masked": object(),
              "parameters": {"train": {"max_epochs": 3}, "qc": {"min_genes": 5}}}
    typed = hook.before_node_run(node=None, inputs=inputs)
    assert isinstance(typed["params:train"], params.TrainParams) and typed["params:train"].max_epochs == 3
    assert typed["params:qc"].min_genes == 5 and "masked" not in typed
    assert isinstance(typed["parameters"], params.Parameters) and typed["parameters"].train.max_epochs == 3
    assert parse("train", typed["params:train"]) is typed["params:train"]  # the node's own parse passes it on
    assert hook.before_node_run(node=None, inputs={"masked": object()}) is None
