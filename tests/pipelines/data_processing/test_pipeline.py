"""The data_processing pipeline run with SequentialRunner on an in-memory catalog."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from scgapfill.layout import validate_layout
from scgapfill.pipeline_registry import register_pipelines
from scgapfill.pipelines.data_processing import create_pipeline

PARAM_SECTIONS = ("input", "qc", "normalize", "hvg", "layout", "model")


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, to inspect an intermediate result after the run."""

    def _release(self) -> None:
        pass


def _catalog(params: dict, **datasets) -> DataCatalog:
    entries = {f"params:{name}": MemoryDataset(params[name]) for name in PARAM_SECTIONS}
    entries["processed"] = KeptDataset()
    entries.update(datasets)
    return DataCatalog(datasets=entries)


def _check(processed: ad.AnnData, gene_layout: dict, n_top_genes: int) -> None:
    assert "counts" in processed.layers
    assert "size_factor" in processed.obs
    counts = processed.layers["counts"].toarray()
    np.testing.assert_array_equal(counts, np.rint(counts))
    assert processed.n_vars == n_top_genes
    validate_layout(gene_layout)
    assert gene_layout["genes"] == list(processed.var_names)
    assert len(set(gene_layout["positions"])) == processed.n_vars


def test_pipeline_structure() -> None:
    pipeline = create_pipeline()
    assert pipeline.inputs() == {f"params:{name}" for name in PARAM_SECTIONS}
    assert pipeline.outputs() == {"gene_layout"}
    assert {n.name for n in pipeline.nodes} == {
        "load_counts_node", "quality_control_node", "normalize_node", "select_genes_node", "gene_layout_node",
    }
    assert all("data_processing" in n.tags for n in pipeline.nodes)


def test_registry_has_data_processing_and_training() -> None:
    pipelines = register_pipelines()
    assert {"data_processing", "training", "__default__"} <= set(pipelines)
    data_nodes = {n.name for n in pipelines["data_processing"].nodes}
    assert data_nodes <= {n.name for n in pipelines["training"].nodes}


def test_pipeline_runs_on_a_simulation(tiny_params: dict) -> None:
    catalog = _catalog(tiny_params)
    outputs = SequentialRunner().run(create_pipeline(), catalog)

    # Kedro 1.x returns the output datasets, not their data.
    assert set(outputs) == {"gene_layout"}
    gene_layout = outputs["gene_layout"].load()
    processed = catalog["processed"].load()
    _check(processed, gene_layout, tiny_params["hvg"]["n_top_genes"])
    assert processed.uns["label_key"] == "group"
    assert gene_layout["strategy"] == "correlation"


def test_pipeline_from_prefilled_counts(tiny_params: dict, small_adata: ad.AnnData) -> None:
    pipeline = create_pipeline().from_inputs("input_counts")
    assert "load_counts_node" not in {n.name for n in pipeline.nodes}
    params = {**tiny_params, "hvg": {"n_top_genes": 1000}, "layout": {"strategy": "given", "seed": 0}}
    catalog = _catalog(params, input_counts=MemoryDataset(small_adata))
    outputs = SequentialRunner().run(pipeline, catalog)

    processed = catalog["processed"].load()
    gene_layout = outputs["gene_layout"].load()
    # All genes seen in >= 3 cells are kept when n_top_genes exceeds them.
    n_expected = int(((small_adata.X > 0).sum(axis=0) >= tiny_params["qc"]["min_cells"]).sum())
    _check(processed, gene_layout, n_expected)
    np.testing.assert_array_equal(gene_layout["positions"], np.arange(n_expected))


def test_pipeline_stops_on_bad_parameters(tiny_params: dict) -> None:
    params = {**tiny_params, "qc": {**tiny_params["qc"], "min_genes": 10_000}}
    catalog = _catalog(params)
    with pytest.raises(ValueError, match=r"qc\.min_genes"):
        SequentialRunner().run(create_pipeline(), catalog)
    assert not catalog["processed"].exists()
