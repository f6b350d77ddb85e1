"""Training data at scale: one batch densified at a time, the context per batch, the grid on the device."""

from __future__ import annotations

import tracemalloc

import numpy as np
import scipy.sparse as sp
import torch

from scgapfill.data.layout import to_grid
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.graph.cellgraph import neighbour_context
from scgapfill.params import ModelParams, TrainParams
from scgapfill.train.data import GeneScaler, GridScatter
from scgapfill.train.fit import _loaders, training_data


def test_per_batch_context_equals_the_whole_data_context(counts, model_params, train_params):
    data = training_data(counts, model_params, train_params)
    values = lognorm(counts, size_factors(counts))
    whole = data.scaler.transform(neighbour_context(values, model_params.context_k, model_params.context_n_pcs,
                                                    train_params.seed, model_params.context_steps,
                                                    model_params.context_space))
    cells = np.array([5, 0, 77, 3])
    np.testing.assert_array_equal(data.context(cells), whole[cells])
    np.testing.assert_array_equal(data.context(np.arange(counts.shape[0])), whole)


def test_the_grid_scatter_on_the_device_matches_the_layout(counts, layout):
    rows = np.random.default_rng(0).random((7, counts.shape[1])).astype(np.float32)
    scatter = GridScatter(layout)
    np.testing.assert_array_equal(scatter(torch.from_numpy(rows)).numpy(), to_grid(rows, layout))
    assert scatter.valid.dtype == torch.bool and int(scatter.valid.sum()) == counts.shape[1]
    # Buffers follow the module to its device; "meta" stands in for a GPU on a CPU-only machine.
    moved = scatter.to("meta")
    assert moved.positions.device.type == "meta" and moved(torch.empty(7, counts.shape[1], device="meta")).shape \
        == (7, 1, *layout["shape"])


def test_no_dense_cells_by_genes_array_of_the_whole_data_is_made():
    n_cells, n_genes = 20_000, 2_500  # dense float32: 200 MB; sparse at 2% density: ~12 MB
    rng = np.random.default_rng(0)
    counts = sp.random(n_cells, n_genes, density=0.02, format="csr", random_state=rng,
                       data_rvs=lambda n: rng.integers(1, 6, n)).astype(np.float64)
    counts[:, 0] = 1.0  # no empty cell
    model_params = ModelParams(depth=2, base_channels=4, context_k=10, context_n_pcs=10)
    train_params = TrainParams(batch_size=64, accelerator="cpu", devices=1)
    dense_bytes = n_cells * n_genes * 4
    tracemalloc.start()
    try:
        data = training_data(counts, model_params, train_params)
        train_loader, _ = _loaders(data, n_genes, train_params)
        batches = [batch for batch, _ in zip(train_loader, range(3))]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert batches[0]["values"].shape == batches[0]["context"].shape == (64, n_genes)
    # One dense float32 copy of the whole data alone would exceed this bound.
    assert peak < dense_bytes / 2, f"peak {peak / 1e6:.0f} MB against {dense_bytes / 1e6:.0f} MB dense"
    assert isinstance(data.scaler, GeneScaler)


def test_the_gpu_settings_train_and_impute_on_the_cpu(counts, layout, model_params):
    """bf16 mixed precision and loader workers, as a GPU run uses them, on the CPU: the same code path
    up to the device (pinned memory alone needs CUDA)."""
    from scgapfill.infer.imputation import impute_counts
    from scgapfill.params import ImputeParams
    from scgapfill.train.fit import fit_gapfill

    params = TrainParams(max_epochs=2, patience=2, batch_size=16, accelerator="cpu", devices=1, num_workers=2,
                         precision="bf16-mixed", enable_progress_bar=False)
    bundle = fit_gapfill(counts, layout, model_params, params)
    assert bundle.info["precision"] == "bf16-mixed"
    assert np.isfinite(bundle.history["val_loss"]).all() and len(bundle.history) == 2
    out = impute_counts(bundle, counts, ImputeParams())
    assert out.shape == counts.shape and np.isfinite(out).all()
