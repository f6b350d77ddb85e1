"""Training: runs on CPU, reproducible, round-trips through a file, never sees held-out values."""

from __future__ import annotations

import inspect
import logging
import math
import os
import sys

import lightning as L
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from lightning.pytorch.callbacks import Callback

from scgapfill.data import masks
from scgapfill.graph.cellgraph import neighbour_context
from scgapfill.infer.imputation import impute_counts
from scgapfill.nn.bundle import GapFillBundle
from scgapfill.train.data import GeneScaler
from scgapfill.train.fit import fit_gapfill, split_cells


@pytest.fixture(scope="module")
def heldout(counts):
    return masks.heldout_mask(counts, fraction=0.1, seed=0)


@pytest.fixture(scope="module")
def masked(counts, heldout):
    return masks.apply_mask(counts, heldout)


@pytest.fixture(scope="module")
def bundle(masked, layout, model_params, train_params):
    return fit_gapfill(masked, layout, model_params, train_params)


def assert_same_weights(a: GapFillBundle, b: GapFillBundle) -> None:
    assert a.state_dict.keys() == b.state_dict.keys()
    for key in a.state_dict:
        assert torch.equal(a.state_dict[key], b.state_dict[key]), key


def test_training_runs_on_cpu_and_records_history(bundle, train_params, counts):
    history = bundle.history
    assert list(history.columns) == ["epoch", "train_loss", "val_loss"]
    assert history["epoch"].tolist() == list(range(train_params.max_epochs))
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    # Three epochs of a 4-channel net: too short to demand a decrease, but the kept epoch is the best one.
    assert history["val_loss"].min() <= history["val_loss"].iloc[0]
    assert bundle.best_epoch == int(history["val_loss"].idxmin())
    assert bundle.seconds_per_epoch > 0 and bundle.cells_per_s > 0
    assert bundle.info["n_train_cells"] + bundle.info["n_val_cells"] == counts.shape[0]
    assert all(t.device.type == "cpu" for t in bundle.state_dict.values())


def test_fit_frees_the_training_data_before_it_returns(masked, layout, model_params, train_params):
    """Lightning's trainer, module and loaders form reference cycles that hold the training matrix;
    fit collects them, so imputation after fit does not run beside a second copy of the data."""
    import gc

    from scgapfill.train.data import CellDataset

    gc.collect()
    gc.disable()  # only fit's own collection may free them
    try:
        fit_gapfill(masked, layout, model_params, train_params)
        alive = [o for o in gc.get_objects() if isinstance(o, CellDataset)]
    finally:
        gc.enable()
    assert alive == []


def test_same_seed_gives_identical_weights_and_imputation(bundle, masked, layout, model_params, train_params):
    again = fit_gapfill(masked, layout, model_params, train_params)
    assert_same_weights(bundle, again)
    np.testing.assert_array_equal(impute_counts(bundle, masked), impute_counts(again, masked))


def test_save_load_round_trip_gives_identical_imputation(bundle, masked, tmp_path):
    path = bundle.save(tmp_path / "model" / "unet.pt")
    assert [p.name for p in path.parent.iterdir()] == ["unet.pt"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open() writes it, not mkstemp's 0600
    torch.load(path, weights_only=True)  # loadable without unpickling code
    loaded = GapFillBundle.load(path)
    assert_same_weights(bundle, loaded)
    assert loaded.layout == bundle.layout and loaded.gene_names == bundle.gene_names
    assert loaded.history.equals(bundle.history)
    np.testing.assert_array_equal(impute_counts(loaded, masked), impute_counts(bundle, masked))


def test_heldout_values_are_never_read(bundle, counts, heldout, masked, layout, model_params, train_params):
    rows, cols, _ = masks.masked_values(counts, heldout)
    altered = counts.tolil(copy=True)
    altered[rows, cols] = np.asarray(counts[rows, cols]).ravel() * 7 + 3
    altered = altered.tocsr()
    assert not np.array_equal(altered.toarray(), counts.toarray())
    masked_altered = masks.apply_mask(altered, heldout)
    other = fit_gapfill(masked_altered, layout, model_params, train_params)
    assert_same_weights(bundle, other)
    np.testing.assert_array_equal(impute_counts(other, masked_altered), impute_counts(bundle, masked))


def test_entry_points_take_only_the_matrix_they_may_see(masked, layout, model_params, train_params, bundle):
    import anndata as ad

    # positions: the spots' coordinates of spatial data (model.context_graph), never anything of the counts.
    assert list(inspect.signature(fit_gapfill).parameters) == [
        "counts_csr", "layout", "model_params", "train_params", "logger", "callbacks", "start_from", "positions"
    ]
    assert list(inspect.signature(impute_counts).parameters) == ["bundle", "counts_csr", "params", "device",
                                                                 "positions"]
    adata = ad.AnnData(masked)
    with pytest.raises(TypeError, match="counts matrix"):
        fit_gapfill(adata, layout, model_params, train_params)
    with pytest.raises(TypeError, match="counts matrix"):
        impute_counts(bundle, adata)


def test_layout_must_fit_the_model_depth_and_genes(masked, layout, model_params, train_params):
    with pytest.raises(ValueError, match="2\\*\\*model.depth=16"):
        fit_gapfill(masked, layout, model_params.model_copy(update={"depth": 4}), train_params)
    with pytest.raises(ValueError, match="genes"):
        fit_gapfill(masked[:, :10], layout, model_params, train_params)


def test_neighbour_context_excludes_the_cell_itself():
    X = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0], [5.0, 5.0, 5.0]]))
    ctx = neighbour_context(X, k=2, n_pcs=2, seed=0)
    dense = X.toarray()
    for i in range(3):
        np.testing.assert_allclose(ctx[i], np.delete(dense, i, axis=0).mean(axis=0), rtol=1e-6)


def test_neighbour_context_excludes_self_among_duplicates():
    X = np.array([[1.0, 1.0], [1.0, 1.0], [9.0, 0.0], [9.0, 0.5]])
    ctx = neighbour_context(X, k=1, n_pcs=1, seed=0)
    np.testing.assert_allclose(ctx[:2], X[:2])  # the twin, not itself (same values either way) ...
    np.testing.assert_allclose(ctx[2], X[3])  # ... and never itself where values differ
    np.testing.assert_allclose(ctx[3], X[2])


def test_gene_scaler_uses_only_the_given_cells_and_round_trips(counts):
    train, _ = split_cells(counts.shape[0], 0.2, 0)
    lognormed = np.log1p(counts.toarray())
    scaler = GeneScaler.fit(sp.csr_matrix(lognormed[train]))
    np.testing.assert_allclose(scaler.scale, np.where(lognormed[train].max(0) > 0, lognormed[train].max(0), 1.0))
    scaled = scaler.transform(sp.csr_matrix(lognormed))
    assert scaled.min() >= 0 and scaled.max() <= 1
    np.testing.assert_allclose(scaler.inverse(scaler.transform(lognormed[train])), lognormed[train], rtol=1e-5)
    again = GeneScaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(again.scale, scaler.scale)
    q = GeneScaler.fit(lognormed[train], quantile=0.9)
    assert np.all(q.scale <= scaler.scale)


def test_diffused_context_never_returns_the_cells_own_values():
    # Each cell carries a marker gene nobody else has; PCA ignores it (tiny variance next to the rest).
    rng = np.random.default_rng(0)
    base = rng.poisson(3.0, size=(40, 20)).astype(float) * 10
    markers = np.eye(40) * 1e-3
    X = np.hstack([base, markers])
    for steps in (1, 2, 3):
        ctx = neighbour_context(X, k=5, n_pcs=5, seed=0, steps=steps)
        own = ctx[np.arange(40), 20 + np.arange(40)]
        assert np.all(own == 0), f"steps={steps}: a cell's own marker came back through the context"
        np.testing.assert_allclose(ctx.sum(axis=1), X[:, :20].sum(axis=1).mean(), rtol=0.5)
    wider = neighbour_context(X, k=5, n_pcs=5, seed=0, steps=3)[:, 20:]
    assert (wider > 0).sum(axis=1).mean() > (neighbour_context(X, k=5, n_pcs=5, seed=0)[:, 20:] > 0).sum(axis=1).mean()
    with pytest.raises(ValueError, match="context_steps"):
        neighbour_context(X, k=5, n_pcs=5, steps=0)


def test_neighbour_walk_is_row_stochastic_without_self_and_gives_the_context():
    from scgapfill.graph.cellgraph import neighbour_walk

    rng = np.random.default_rng(1)
    X = sp.csr_matrix(rng.poisson(2.0, size=(30, 12)).astype(float))
    for steps in (1, 2):
        walk = neighbour_walk(X, k=4, n_pcs=5, seed=0, steps=steps)[:]
        assert walk.shape == (30, 30)
        np.testing.assert_allclose(np.asarray(walk.sum(axis=1)).ravel(), 1.0)
        assert np.all(walk.diagonal() == 0)
        np.testing.assert_allclose(walk @ X.toarray(), neighbour_context(X, k=4, n_pcs=5, seed=0, steps=steps),
                                   rtol=1e-5)
    assert (neighbour_walk(X, k=4, n_pcs=5, steps=1)[:] > 0).sum(axis=1).max() == 4


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_walk_rows_computed_on_demand_equal_the_whole_walk_bit_for_bit(steps):
    from scgapfill.graph.cellgraph import diffuse, neighbour_graph, neighbour_walk

    rng = np.random.default_rng(3)
    X = sp.csr_matrix(rng.poisson(2.0, size=(60, 12)).astype(float))
    graph = neighbour_graph(X, k=5, n_pcs=5, seed=0)
    # The whole walk the way it was built before rows were computed on demand.
    whole = graph
    for _ in range(steps - 1):
        whole = whole @ graph
        whole.setdiag(0.0)
        whole.eliminate_zeros()
        whole = sp.csr_matrix(sp.diags(1.0 / np.asarray(whole.sum(axis=1)).ravel()) @ whole)
    whole = whole.toarray()
    walk = neighbour_walk(X, k=5, n_pcs=5, seed=0, steps=steps)
    assert np.array_equal(diffuse(graph, steps).toarray(), whole)
    for rows in (slice(0, 7), slice(7, 60), np.array([41, 3, 3, 59])):
        assert np.array_equal(walk[rows].toarray(), whole[rows])
    # Only the one-step graph is held: k entries per cell, not up to k**steps.
    assert walk.weights.nnz == 60 * 5


def test_nb_loss_trains_its_dispersions_alongside_the_network(masked, layout, model_params, train_params):
    from scgapfill.params import TrainParams

    params = TrainParams(**{**train_params.model_dump(), "max_epochs": 1,
                            "loss": {**train_params.loss.model_dump(), "poisson": 0.0, "nb": 1.0, "zip": 0.0}})
    nb_bundle = fit_gapfill(masked, layout, model_params, params)
    assert np.isfinite(nb_bundle.history["val_loss"]).all()
    # The dispersions belong to training only: the saved network is the same shape as without them.
    assert not any("theta" in key for key in nb_bundle.state_dict)


def test_zip_loss_trains_its_dropout_curve_alongside_the_network(masked, layout, model_params, train_params):
    from scgapfill.params import TrainParams
    from scgapfill.train.module import GapFillModule

    loss = {**train_params.loss.model_dump(), "poisson": 0.0, "zip": 1.0}
    # A constant rate: the module's optimiser is then built without a Trainer's step count.
    params = TrainParams(**{**train_params.model_dump(), "max_epochs": 1, "loss": loss, "lr_schedule": "constant"})
    module = GapFillModule(model_params, params)
    assert module.dropout_curve is not None and module.dropout_curve.requires_grad
    # The curve is an optimiser parameter, with a faster rate than the network's.
    groups = module.configure_optimizers().param_groups
    assert any(g["params"][0] is module.dropout_curve and g["lr"] > params.lr for g in groups)
    zip_bundle = fit_gapfill(masked, layout, model_params, params)
    assert np.isfinite(zip_bundle.history["val_loss"]).all()
    # Training-only, like the dispersions: the saved network is the same shape as without it.
    assert not any("curve" in key for key in zip_bundle.state_dict)
    # ... but the fitted curve is reported, moved from its flat 5% start.
    assert zip_bundle.info["dropout_curve_intercept"] != pytest.approx(np.log(0.05 / 0.95))
    assert np.isfinite(zip_bundle.info["dropout_curve_slope"])


def test_weight_averaging_saves_the_averaged_weights_it_validated(masked, layout, model_params, train_params):
    from lightning.pytorch.callbacks import Callback

    from scgapfill.params import TrainParams

    class ValidatedWeights(Callback):
        """The network as validation sees it, per epoch (EMA swaps its average in before validating)."""

        def __init__(self) -> None:
            self.by_epoch: dict[int, dict] = {}

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            if batch_idx == 0 and not trainer.sanity_checking:
                self.by_epoch[trainer.current_epoch] = {
                    k: v.detach().clone() for k, v in pl_module.net.state_dict().items()
                }

    params = TrainParams(**{**train_params.model_dump(), "ema_decay": 0.9})
    seen = ValidatedWeights()
    averaged = fit_gapfill(masked, layout, model_params, params, callbacks=[seen])
    plain = fit_gapfill(masked, layout, model_params, TrainParams(**{**train_params.model_dump(), "ema_decay": 0.0}))
    best = seen.by_epoch[averaged.best_epoch]
    # The kept weights are the average that won validation, not the optimiser's last iterate.
    for key, value in averaged.state_dict.items():
        torch.testing.assert_close(value, best[key])
    assert any(not torch.equal(averaged.state_dict[k], plain.state_dict[k]) for k in plain.state_dict)
    assert len(averaged.history) == len(plain.history)


def test_counts_space_context_is_the_log_of_the_neighbours_mean_count():
    from scgapfill.graph.cellgraph import context_source, neighbour_walk, walk_mean

    rng = np.random.default_rng(2)
    X = sp.csr_matrix(np.log1p(rng.poisson(1.5, size=(30, 12)).astype(float) * 100))
    walk = neighbour_walk(X, k=4, n_pcs=5, seed=0, steps=2)[:]
    counts_space = neighbour_context(X, k=4, n_pcs=5, seed=0, steps=2, space="counts")
    np.testing.assert_allclose(counts_space, np.log1p(walk @ np.expm1(X.toarray())), rtol=1e-5)
    np.testing.assert_allclose(walk_mean(walk, context_source(X, "counts"), "counts"), counts_space)
    # Jensen: the log of a mean is at least the mean of the logs, strictly where neighbours differ.
    log_space = neighbour_context(X, k=4, n_pcs=5, seed=0, steps=2)
    assert np.all(counts_space >= log_space - 1e-5) and (counts_space > log_space + 1e-3).any()
    with pytest.raises(ValueError, match="context_space"):
        walk_mean(walk, X, "linear")
    with pytest.raises(ValueError, match="context_space"):
        context_source(X, "linear")


def test_counts_context_from_the_counts_equals_the_made_source():
    """The context imputation averages straight from the counts (no source matrix) is the made source's."""
    from scgapfill.graph.cellgraph import CountsPerTarget, context_source, neighbour_walk, walk_mean
    from scgapfill.data.normalization import lognorm, size_factors

    rng = np.random.default_rng(3)
    counts = sp.csr_matrix(rng.poisson(0.8, size=(40, 15)).astype(np.float32))
    counts = counts[np.asarray(counts.sum(axis=1)).ravel() > 0]
    sf = size_factors(counts)
    X = lognorm(counts, sf)
    walk = neighbour_walk(X, k=4, n_pcs=5, seed=0, steps=2)[:]
    made = walk_mean(walk, context_source(X, "counts"), "counts")
    source = CountsPerTarget(counts, sf)
    assert source.averaged(walk).dtype == np.float32  # float32 counts are never copied to float64
    np.testing.assert_allclose(walk_mean(walk, source, "counts"), made, rtol=1e-5, atol=1e-6)
    # float64 counts give the same context, bit for bit
    np.testing.assert_array_equal(walk_mean(walk, CountsPerTarget(counts.astype(np.float64), sf), "counts"),
                                  walk_mean(walk, source, "counts"))
    with pytest.raises(ValueError, match="'counts' context only"):
        walk_mean(walk, source, "log")


def test_imputation_uses_the_context_space_the_model_was_trained_with(masked, layout, model_params, train_params):
    from scgapfill.params import ModelParams, TrainParams

    params = TrainParams(**{**train_params.model_dump(), "max_epochs": 1})
    counts_bundle = fit_gapfill(masked, layout, ModelParams(**{**model_params.model_dump(), "context_space": "counts"}),
                                params)
    assert counts_bundle.model_params.context_space == "counts"
    as_trained = impute_counts(counts_bundle, masked)
    counts_bundle.model_params = counts_bundle.model_params.model_copy(update={"context_space": "log"})
    assert not np.allclose(impute_counts(counts_bundle, masked), as_trained)
    # Bundles saved before the option have no key and were trained on the log-space context.
    payload = counts_bundle.to_dict()
    del payload["model_params"]["context_space"]
    old = GapFillBundle.from_dict(payload)
    assert old.model.context_space == "log"
    np.testing.assert_array_equal(impute_counts(old, masked), impute_counts(counts_bundle, masked))


class _Seen(Callback):
    """What the trainer looked like while training: the progress bar and torch's thread count."""

    def on_train_epoch_start(self, trainer, pl_module):
        self.progress_bar = trainer.progress_bar_callback
        self.threads = torch.get_num_threads()


def test_off_a_terminal_the_bar_is_off_and_each_epoch_logs_one_line(
    masked, layout, model_params, train_params, caplog, monkeypatch
):
    from scgapfill.params import TrainParams

    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    params = TrainParams(**{**train_params.model_dump(), "max_epochs": 2, "enable_progress_bar": "auto"})
    seen = _Seen()
    with caplog.at_level(logging.INFO, logger="scgapfill.train.callbacks"):
        fit_gapfill(masked, layout, model_params, params, callbacks=[seen])
    assert seen.progress_bar is None
    lines = [r.getMessage() for r in caplog.records if r.name == "scgapfill.train.callbacks"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("Epoch 1/2: train_loss ") and lines[1].startswith("Epoch 2/2: ")
    assert "val_loss " in lines[0] and lines[0].endswith(" cells/s") and "nan" not in lines[0]


def test_progress_bar_setting_auto_follows_the_terminal(monkeypatch):
    from scgapfill.train.trainer import progress_bar_on

    for tty in (True, False):
        monkeypatch.setattr(sys.stdout, "isatty", lambda tty=tty: tty, raising=False)
        assert progress_bar_on(None) is tty
        assert progress_bar_on(True) is True and progress_bar_on(False) is False


def test_training_uses_the_requested_torch_threads_and_gives_them_back(
    masked, layout, model_params, train_params
):
    from scgapfill.params import TrainParams

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        seen = _Seen()
        bundle = fit_gapfill(masked, layout, model_params,
                             TrainParams(**{**train_params.model_dump(), "max_epochs": 1, "num_threads": 2}),
                             callbacks=[seen])
        assert seen.threads == 2 and bundle.info["num_threads"] == 2
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_auto_threads_are_the_cpus_this_process_may_use():
    from scgapfill.train.trainer import resolve_num_threads

    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert resolve_num_threads(0) == expected
    assert resolve_num_threads(3) == 3


class BatchCounter(L.Callback):
    def __init__(self) -> None:
        self.per_epoch: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.per_epoch.append(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.per_epoch[-1] += 1


def test_cells_per_epoch_and_max_steps_bound_the_training_cost(counts, layout, model_params, train_params):
    # 96 training cells at batch 16: 6 batches an epoch when every cell trains.
    counter = BatchCounter()
    bundle = fit_gapfill(counts, layout, model_params, train_params.model_copy(update={"cells_per_epoch": 20}),
                         callbacks=[counter])
    assert counter.per_epoch == [2, 2, 2]  # 20 cells, rounded up to whole batches
    assert bundle.cells_per_s == pytest.approx(32 / bundle.seconds_per_epoch)
    counter = BatchCounter()
    bundle = fit_gapfill(counts, layout, model_params, train_params.model_copy(update={"max_steps": 8}),
                         callbacks=[counter])
    assert counter.per_epoch == [6, 6]  # whole epochs, so that the last one is validated
    assert len(bundle.history) == 2


def test_max_val_cells_caps_the_validation_cells_and_trains_the_rest():
    train, val = split_cells(1000, 0.2, 0, max_val_cells=50)
    assert len(val) == 50 and len(train) == 950 and not set(train) & set(val)
    assert [len(part) for part in split_cells(1000, 0.2, 0)] == [800, 200]
    assert [len(part) for part in split_cells(1000, 0.2, 0, max_val_cells=500)] == [800, 200]


class LearningRates(L.Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_cosine_schedule_falls_to_zero_over_the_step_budget(counts, layout, model_params, train_params):
    budget = train_params.model_copy(update={"max_steps": 8, "patience": 10, "lr_schedule": "cosine"})
    rates = LearningRates()
    fit_gapfill(counts, layout, model_params, budget, callbacks=[rates])
    # 6 batches an epoch, 8 steps rounded up to 2 whole epochs: a half cosine over 12 steps.
    expected = [0.5 * budget.lr * (1 + math.cos(math.pi * step / 12)) for step in range(12)]
    assert rates.rates == pytest.approx(expected)
    constant = LearningRates()
    fit_gapfill(counts, layout, model_params, train_params.model_copy(update={"max_steps": 8, "lr_schedule": "constant"}),
                callbacks=[constant])
    assert constant.rates == [train_params.lr] * 12


def test_the_budget_sets_the_training_length_and_a_value_given_wins():
    from scgapfill.params import TRAINING_BUDGETS, TrainParams, parse

    def settings(params: TrainParams) -> dict:
        return {key: getattr(params, key) for key in TRAINING_BUDGETS["fast"]}

    assert settings(TrainParams()) == TRAINING_BUDGETS["fast"]
    assert settings(parse("train", {"cells_per_epoch": "auto", "max_steps": "auto"})) == TRAINING_BUDGETS["fast"]
    assert settings(TrainParams(budget="thorough")) == TRAINING_BUDGETS["thorough"]
    assert TrainParams(budget="thorough", max_steps=500).max_steps == 500
    assert TrainParams(max_steps=500).lr_schedule == "cosine"
    assert (TrainParams().max_epochs, TrainParams(budget="thorough").max_epochs) == (30, 100)
    with pytest.raises(Exception, match="budget"):
        parse("train", {"budget": "slow"})


def test_a_bundle_is_typed_and_older_ones_are_upgraded_as_they_are_read(bundle):
    from scgapfill.params import ImputeParams, ModelParams, TrainParams

    assert isinstance(bundle.model_params, ModelParams) and isinstance(bundle.train_params, TrainParams)
    assert isinstance(bundle.impute_params, ImputeParams)
    payload = bundle.to_dict()
    assert isinstance(payload["train_params"], dict)  # saved plain, read with weights_only
    # A bundle from before the zip term, the impute section and an option since removed.
    del payload["train_params"]["loss"]["zip"]
    for key in ("budget", "cells_per_epoch", "max_val_cells", "max_steps", "lr_schedule"):
        del payload["train_params"][key]
    payload["train_params"]["an_option_since_removed"] = 1
    del payload["impute_params"]
    payload["model_params"]["output_smoothing"] = 0.3
    old = GapFillBundle.from_dict(payload)
    assert old.train.loss.zip == 0.0  # trained without it, whatever today's default
    assert (old.train.budget, old.train.max_steps, old.train.lr_schedule) == ("thorough", -1, "constant")
    assert old.impute.output_smoothing == 0.3 and old.impute.scale == "observed_library"
    assert old.model == bundle.model


def _molecule_module(counts, layout, model_params, train_params, **loss):
    """A module in ``training_mask.mode: molecules`` and one training batch on its grid, dropout off."""
    from scgapfill.params import TrainParams
    from scgapfill.train.fit import _loaders, seeded_module, training_data

    params = TrainParams(**{**train_params.model_dump(), "training_mask": {"mode": "molecules"},
                            "loss": {**train_params.loss.model_dump(), **loss}})
    data = training_data(counts, model_params, params)
    module = seeded_module(data.scaler, layout, model_params, params).eval()
    train_loader, _ = _loaders(data, counts.shape[1], params)
    batch = module.on_after_batch_transfer(next(iter(train_loader)), 0)
    return module, batch


def _recorded_molecule_step(module, batch, monkeypatch, seed=0):
    """Run one molecule step; what the split drew, what the network saw, what the loss got."""
    import scgapfill.train.module as module_code

    seen = {}
    split = module_code.split_training_molecules
    loss = module_code.gapfill_loss

    def recorded_split(*args, **kwargs):
        seen["split"] = split(*args, **kwargs)
        return seen["split"]

    def recorded_loss(*args, **kwargs):
        seen["loss_args"], seen["loss_kwargs"] = args, kwargs
        return loss(*args, **kwargs)

    def recorded_net(channels):
        seen["channels"] = channels
        return net(channels)

    net = module.net
    monkeypatch.setattr(module_code, "split_training_molecules", recorded_split)
    monkeypatch.setattr(module_code, "gapfill_loss", recorded_loss)
    monkeypatch.setattr(module, "forward", lambda values, hidden=None, context=None: recorded_net(
        module_code.network_input(values, hidden, context)))
    with torch.no_grad():
        seen["loss"] = module._step(batch, torch.Generator().manual_seed(seed))
    return seen


def test_molecule_mode_input_carries_no_target_molecule(counts, layout, model_params, train_params, monkeypatch):
    module, batch = _molecule_module(counts, layout, model_params, train_params)
    seen = _recorded_molecule_step(module, batch, monkeypatch)
    inputs, target, fraction = seen["split"]
    valid = batch["valid"].expand_as(batch["values"])
    scale, depth = module.gene_scale, batch["size_factor"]
    # The split is of the cell's own counts, recovered from its values: all of them, nothing more.
    full = torch.round(torch.expm1(batch["values"] * scale) * depth / 1e4) * valid
    assert torch.equal(inputs + target, full)
    assert target.sum() > 0 and inputs.sum() > 0
    # The network's values are the input molecules alone, normalised at the input's own depth
    # (the size factor is the cell's total on the modelled genes, so the input's is its sum) ...
    seen_values, observed = seen["channels"][:, :1], seen["channels"][:, 1:2]
    input_depth = inputs.sum(dim=(1, 2, 3), keepdim=True)
    back = torch.round(torch.expm1(seen_values * scale) * input_depth / 1e4) * valid
    unclipped = seen_values < 1
    assert torch.equal(back[unclipped], inputs[unclipped])
    # ... so an entry whose molecules all went to the target is a zero to the network, unobserved.
    only_target = (inputs == 0) & (target > 0)
    assert only_target.any()
    assert not seen_values[only_target].any() and not observed[only_target].any()
    assert torch.equal(observed.bool(), inputs > 0)
    # The context channel is the one made beforehand, untouched by the split.
    assert torch.equal(seen["channels"][:, 2:3], batch["context"])


def test_molecule_mode_loss_is_the_target_likelihood_over_every_valid_entry(
        counts, layout, model_params, train_params, monkeypatch):
    module, batch = _molecule_module(counts, layout, model_params, train_params, poisson=1.0, zip=0.0)
    seen = _recorded_molecule_step(module, batch, monkeypatch)
    inputs, target, fraction = seen["split"]
    valid = batch["valid"].expand_as(batch["values"])
    # Every valid entry is scored, none left out as "visible", and the counts scored are the target's.
    scored = seen["loss_args"][2]
    assert torch.equal(scored.bool(), valid.bool())
    assert torch.equal(seen["loss_kwargs"]["target_counts"], target)
    # By hand: Poisson NLL of the target molecules, the prediction at the target's depth (1 - p) x the cell's.
    pred = module.net(seen["channels"])
    mu = torch.expm1(pred * module.gene_scale) * (1 - fraction) * batch["size_factor"] / 1e4
    nll = mu - target * torch.log(mu + 1e-6)
    assert seen["loss"].item() == pytest.approx(nll[valid].mean().item(), rel=1e-5)


def test_molecule_mode_loss_is_seeded(counts, layout, model_params, train_params):
    module, batch = _molecule_module(counts, layout, model_params, train_params)
    with torch.no_grad():
        a = module._step(batch, torch.Generator().manual_seed(3))
        b = module._step(batch, torch.Generator().manual_seed(3))
        c = module._step(batch, torch.Generator().manual_seed(4))
    assert torch.isfinite(a) and a.item() == b.item()
    assert a.item() != c.item()
