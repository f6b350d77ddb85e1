"""Held-out entries stay hidden from everything that trains or imputes.

Three layers of proof: (1) in the composed training pipeline, the nodes that lay out,
train and impute for scoring read only the masked data sets, and the deliverable (which
reads every processed count) feeds nothing that scores; (2) those data sets hold no held-out
value and no truth; (3) tests/model/test_train.py shows that changing the held-out
values leaves the trained weights and the imputation bit-identical.
"""

import numpy as np
import scipy.sparse as sp

from scgapfill import simulate
from scgapfill.data.preprocessing import normalize, quality_control, select_genes
from scgapfill.pipeline_registry import register_pipelines
from scgapfill.pipelines.masking.nodes import make_heldout_mask, mask_counts, split_molecules

MODEL_SIDE_NODES = {"compute_gene_layout_node", "train_model_node", "impute_masked_node", "denoise_mcv_train_node",
                    "loss_curve_figure_node", "log_model_node"}
DELIVERABLE_NODE = "impute_all_node"
ALLOWED_INPUTS = {"masked", "mcv_train", "gene_layout", "gapfill_model"}


def test_model_side_nodes_read_only_masked_data():
    training = register_pipelines()["training"]
    by_name = {node.name: node for node in training.nodes}
    assert MODEL_SIDE_NODES <= set(by_name), "the training pipeline lost a modeling node"
    for name in MODEL_SIDE_NODES:
        data_inputs = {i for i in by_name[name].inputs if not i.startswith("params:")}
        assert data_inputs <= ALLOWED_INPUTS, f"{name} reads {data_inputs - ALLOWED_INPUTS}"


def test_only_evaluation_reads_the_heldout_values():
    training = register_pipelines()["training"]
    readers = {node.name for node in training.nodes if {"heldout_mask", "mcv_test", "processed"} & set(node.inputs)}
    assert readers == {"make_heldout_mask_node", "mask_counts_node", "prepare_evaluation_node"}


def test_the_deliverable_reads_every_count_and_feeds_no_score():
    training = register_pipelines()["training"]
    by_name = {node.name: node for node in training.nodes}
    all_counts_readers = {node.name for node in training.nodes if "normalized" in node.inputs}
    assert all_counts_readers == {"select_genes_node", DELIVERABLE_NODE}
    deliverable = by_name[DELIVERABLE_NODE]
    assert {i for i in deliverable.inputs if not i.startswith("params:")} == {"gapfill_model", "normalized"}
    assert deliverable.outputs == ["imputed"]
    # Nothing downstream of it: evaluation scores the masked copy's imputation.
    assert not [node.name for node in training.nodes if set(deliverable.outputs) & set(node.inputs)]
    assert "imputed_masked" in by_name["score_methods_node"].inputs


def _processed():
    adata = simulate(n_cells=80, n_genes=60, n_groups=2, seed=4)
    adata = quality_control(adata, {"min_genes": 5, "min_cells": 1})
    return select_genes(normalize(adata, {}), {"n_top_genes": 2000})


def test_masked_data_holds_no_heldout_value_and_no_truth():
    processed = _processed()
    mask = make_heldout_mask(processed, {"fraction": 0.2, "seed": 0})
    masked = mask_counts(processed, mask, {})
    rows, cols = mask.nonzero()
    assert np.all(np.asarray(masked.layers["counts"][rows, cols]) == 0)
    assert np.all(np.asarray(masked.X[rows, cols]) == 0)
    assert set(masked.layers) == {"counts"}, "truth layers must not reach the model"
    # size factors are recomputed from what the model sees, not the unmasked totals
    np.testing.assert_allclose(masked.obs["size_factor"], np.asarray(masked.layers["counts"].sum(1)).ravel())
    assert "total_counts" not in masked.obs
    # every other count is kept
    full = sp.csr_matrix(processed.layers["counts"])
    assert masked.layers["counts"].sum() == full.sum() - full[rows, cols].sum()

    train, test = split_molecules(masked, {"train_fraction": 0.9, "seed": 0}, {})
    assert np.all(np.asarray(train.layers["counts"][rows, cols]) == 0)
    assert abs(train.layers["counts"] + test - masked.layers["counts"]).sum() == 0
    assert set(train.layers) == {"counts"}
