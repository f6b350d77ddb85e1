"""The package's layers (docs/architecture.md): no module imports from a layer above its own.

Read with ``ast`` (nothing is imported), lazy imports inside functions included: an import that runs
late still ties the lower layer to the upper one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "scgapfill"

# Lowest first. A module may import from its own layer and the ones before it, never after.
LAYERS = [
    ("params",),                               # the typed parameters: imported by every layer
    ("data",),                                 # readers, simulator, QC, masks, normalisation, gene layout
    ("graph",),                                # cell graph, smoothing
    ("nn",),                                   # the network, the loss, the saved bundle
    ("train",),                                # Lightning module, trainer, shards
    ("infer",),                                # imputation: in memory, streamed, against a reference
    ("model",),                                # GapFill, impute: the user-facing class
    ("eval",),                                 # metrics, baselines, the protocol, benchmark, plots
    ("glue",),                                 # Kedro hooks and datasets, run record, MLflow
    ("pipelines",),                            # Kedro nodes and pipelines
    ("cli", "settings", "pipeline_registry", "__main__", "__init__"),  # Kedro's entry points, the package
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _layer(module: str) -> str:
    """``scgapfill.train.fit`` -> ``train``; ``scgapfill`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every ``scgapfill`` module that ``path`` imports (absolute or relative), with its line."""
    return _imports_in(path.read_text(), _module_name(path), path.name == "__init__.py")


def _imports_in(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "scgapfill"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "scgapfill":
                continue
            if target == "scgapfill":  # from scgapfill import data, GapFill ...: each name is the module
                found += [(node.lineno, f"scgapfill.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return sorted(found)


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_top_level_module_and_package_has_a_layer() -> None:
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert names - set(RANK) == set(), "add the new module or package to LAYERS (and docs/architecture.md)"


def _upward(module: str, imports: list[tuple[int, str]]) -> list[str]:
    own = _layer(module)
    return [f"line {line}: {target} ({_layer(target)})" for line, target in imports
            if _layer(target) in RANK and RANK[_layer(target)] > RANK[own]]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_layer_above_its_own(path: Path) -> None:
    upward = _upward(_module_name(path), _imports(path))
    assert not upward, f"{path.relative_to(PACKAGE)} imports upward: " + "; ".join(upward)


def test_the_checker_sees_upward_imports_absolute_relative_and_lazy() -> None:
    source = (
        "from scgapfill.data.layout import to_grid\n"      # down: fine
        "from ..model import GapFill\n"                      # up, relative
        "def f():\n    import scgapfill.glue.tracking\n"    # up, lazy
        "from scgapfill import pipelines\n"                  # up, through the package
    )
    found = _upward("scgapfill.train.fit", _imports_in(source, "scgapfill.train.fit"))
    assert [line.split(": ")[1] for line in found] == [
        "scgapfill.model (model)", "scgapfill.glue.tracking (glue)", "scgapfill.pipelines (pipelines)"
    ]


def test_a_node_is_found_from_its_kedro_viz_name_in_one_step() -> None:
    """``<name>_node`` in pipeline P is the function ``<name>`` in ``scgapfill/pipelines/P/nodes.py``."""
    from scgapfill.pipeline_registry import register_pipelines

    pipelines = register_pipelines()
    stray = []
    for name in ("data_processing", "masking", "modeling", "evaluation", "inference", "benchmark"):
        for node in pipelines[name].nodes:
            if node.name != f"{node.func.__name__}_node" or node.func.__module__ != f"scgapfill.pipelines.{name}.nodes":
                stray.append(f"{name}: {node.name} runs {node.func.__module__}.{node.func.__name__}")
    assert not stray, stray


def test_a_score_is_found_from_its_metric_name_in_one_step() -> None:
    """A metric's prefix names its file under ``scgapfill/eval/metrics/`` (docs/architecture.md)."""
    from scgapfill.eval.benchmark import SUMMARY_METRICS

    files = {"heldout_truth_mean": "truth", "false_corr": "truth", "heldout": "heldout", "mcv": "mcv",
             "ari": "clustering", "n_clusters": "clustering", "truth": "truth"}
    for metric in [m for m in SUMMARY_METRICS if m != "seconds"]:
        prefix = next(p for p in files if metric.startswith(p))
        source = (PACKAGE / "eval" / "metrics" / f"{files[prefix]}.py").read_text()
        assert metric in source or metric.removesuffix("_before").removesuffix("_after") in source, metric
