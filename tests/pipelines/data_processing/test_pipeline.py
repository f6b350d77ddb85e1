"""The data_processing pipeline run with SequentialRunner on an in-memory catalog."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from scgapfill.pipeline_registry import register_pipelines
from scgapfill.pipelines.data_processing import create_pipeline

PARAM_SECTIONS = ("input", "qc", "normalize", "hvg")


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, to inspect an intermediate result after the run."""

    def _release(self) -> None:
        pass


def _catalog(params: dict, **datasets) -> DataCatalog:
    entries = {f"params:{name}": MemoryDataset(params[name]) for name in PARAM_SECTIONS}
    entries["processed"] = KeptDataset()
    entries["normalized"] = KeptDataset()
    entries.update(datasets)
    return DataCatalog(datasets=entries)


def _check(processed: ad.AnnData, normalized: ad.AnnData, n_top_genes: int) -> None:
    assert "counts" in processed.layers
    assert "size_factor" in processed.obs
    counts = processed.layers["counts"].toarray()
    np.testing.assert_array_equal(counts, np.rint(counts))
    assert processed.n_vars == n_top_genes
    # The selected genes are a subset of every QC'd gene, on the same cells in the same order.
    assert set(processed.var_names) <= set(normalized.var_names)
    assert list(processed.obs_names) == list(normalized.obs_names)


def test_pipeline_structure() -> None:
    pipeline = create_pipeline()
    assert pipeline.inputs() == {f"params:{name}" for name in PARAM_SECTIONS}
    assert pipeline.outputs() == {"processed"}
    assert {n.name for n in pipeline.nodes} == {
        "load_counts_node", "quality_control_node", "normalize_node", "select_genes_node",
    }
    assert all("data_processing" in n.tags for n in pipeline.nodes)


def test_registry_has_data_processing_and_training() -> None:
    pipelines = register_pipelines()
    assert {"data_processing", "training", "__default__"} <= set(pipelines)
    data_nodes = {n.name for n in pipelines["data_processing"].nodes}
    assert data_nodes <= {n.name for n in pipelines["training"].nodes}
    # The layout is the modeling pipeline's, learned from the masked counts: no rewiring.
    layout = {n.name: n for n in pipelines["training"].nodes}["compute_gene_layout_node"]
    assert "modeling" in layout.tags and "masked" in layout.inputs


def test_pipeline_runs_on_a_simulation(tiny_params: dict) -> None:
    catalog = _catalog(tiny_params)
    outputs = SequentialRunner().run(create_pipeline(), catalog)

    # Kedro 1.x returns the output datasets, not their data.
    assert set(outputs) == {"processed"}
    processed = catalog["processed"].load()
    _check(processed, catalog["normalized"].load(), tiny_params["hvg"]["n_top_genes"])
    assert processed.uns["label_key"] == "group"


def test_pipeline_from_prefilled_counts(tiny_params: dict, small_adata: ad.AnnData) -> None:
    pipeline = create_pipeline().from_inputs("input_counts")
    assert "load_counts_node" not in {n.name for n in pipeline.nodes}
    params = {**tiny_params, "hvg": {"n_top_genes": 1000}}
    catalog = _catalog(params, input_counts=MemoryDataset(small_adata))
    SequentialRunner().run(pipeline, catalog)

    processed = catalog["processed"].load()
    # All genes seen in >= 3 cells are kept when n_top_genes exceeds them.
    n_expected = int(((small_adata.X > 0).sum(axis=0) >= tiny_params["qc"]["min_cells"]).sum())
    _check(processed, catalog["normalized"].load(), n_expected)


def test_pipeline_stops_on_bad_parameters(tiny_params: dict) -> None:
    params = {**tiny_params, "qc": {**tiny_params["qc"], "min_genes": 10_000}}
    catalog = _catalog(params)
    with pytest.raises(ValueError, match=r"qc\.min_genes"):
        SequentialRunner().run(create_pipeline(), catalog)
    assert not catalog["processed"].exists()
