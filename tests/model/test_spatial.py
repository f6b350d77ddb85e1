"""Spatial data: spots' neighbours in the tissue (``model.context_graph``), positions kept in the output."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scgapfill.graph.spatial import SpotPositions, check_graph, positions_of, spatial_graph, union_graph
from scgapfill.model import GapFill

SIDE, N_GENES, N_PATTERN = 24, 64, 16


def planted_spots(seed: int = 0) -> tuple[ad.AnnData, np.ndarray]:
    """A SIDE x SIDE grid of spots, two sections side by side; ``N_PATTERN`` genes whose rate varies
    smoothly over the grid (each its own wave), the others flat. Sparse Poisson counts (~1 count per
    entry of a pattern gene at its peak). Returns the spots and the planted rates of the pattern genes."""
    rng = np.random.default_rng(seed)
    y, x = np.divmod(np.arange(SIDE * SIDE), SIDE)
    rates = np.empty((SIDE * SIDE, N_GENES))
    for g in range(N_PATTERN):
        angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        wave = np.sin((np.cos(angle) * x + np.sin(angle) * y) * 2 * np.pi / (SIDE * 0.9) + phase)
        rates[:, g] = 0.6 * np.exp(1.2 * wave)
    rates[:, N_PATTERN:] = rng.gamma(2.0, 0.4, size=N_GENES - N_PATTERN)
    counts = sp.csr_matrix(rng.poisson(rates).astype(np.float32))
    library = np.where(x < SIDE // 2, "left", "right")
    obs = pd.DataFrame({"library_id": pd.Categorical(library)}, index=[f"spot{i}" for i in range(SIDE * SIDE)])
    spots = ad.AnnData(counts, obs=obs, var=pd.DataFrame(index=[f"gene{j:02d}" for j in range(N_GENES)]))
    # Each section on its own frame, as Visium slides are: their coordinates overlap.
    spots.obsm["spatial"] = np.column_stack([x % (SIDE // 2), y]).astype(float) * 100
    spots.uns["spatial"] = {lib: {"images": {"hires": np.zeros((8, 8, 3), dtype=np.float32)},
                                  "scalefactors": {"tissue_hires_scalef": 0.08, "spot_diameter_fullres": 80.0}}
                            for lib in ("left", "right")}
    return spots, rates[:, :N_PATTERN]


MODEL = dict(depth=1, base_channels=4, context_k=8, context_n_pcs=8, context_steps=1, context_residual=True)
TRAIN = dict(max_epochs=6, patience=6, batch_size=32, seed=0, accelerator="cpu", devices=1,
             enable_progress_bar=False, num_threads=1)


def _pattern_recovery(spots: ad.AnnData, rates: np.ndarray, graph: str) -> float:
    """Mean over the pattern genes of the Pearson correlation, across spots, of the imputed layer with the
    log of the planted rate."""
    # The model's own estimate of every entry (the observed counts are not kept), to see what it learned.
    model = GapFill(model={**MODEL, "context_graph": graph}, train=TRAIN, layout={"strategy": "given"},
                    impute={"fill_only_zeros": False})
    imputed = model.fit(spots).impute(spots, inplace=False).layers["imputed"][:, :N_PATTERN]
    return float(np.mean([np.corrcoef(imputed[:, g], np.log1p(rates[:, g]))[0, 1] for g in range(N_PATTERN)]))


def test_spatial_context_recovers_a_planted_spatial_pattern_better_than_expression_context():
    spots, rates = planted_spots()
    expression = _pattern_recovery(spots, rates, "expression")
    spatial = _pattern_recovery(spots, rates, "spatial")
    observed = np.mean([np.corrcoef(np.log1p(spots.X[:, g].toarray().ravel()), np.log1p(rates[:, g]))[0, 1]
                        for g in range(N_PATTERN)])
    print(f"pattern r: observed {observed:.3f}, expression context {expression:.3f}, spatial context {spatial:.3f}")
    assert spatial > expression + 0.15
    assert spatial > observed + 0.15


def test_spatial_neighbours_are_the_nearest_spots_and_never_cross_sections():
    coords = np.array([[0, 0], [1, 0], [5, 0], [0, 0], [1, 0], [9, 0]], dtype=float)
    graph = spatial_graph(SpotPositions(coords, np.array(["a", "a", "a", "b", "b", "b"])), k=1).toarray()
    assert graph[0].nonzero()[0].tolist() == [1] and graph[2].nonzero()[0].tolist() == [1]
    assert graph[3].nonzero()[0].tolist() == [4] and graph[5].nonzero()[0].tolist() == [4]
    np.testing.assert_allclose(graph.sum(axis=1), 1.0)
    assert not np.diag(graph).any()
    # one section: the nearest spot of either
    assert spatial_graph(SpotPositions(coords), k=1).toarray()[3].nonzero()[0].tolist() in ([0], [1])


def test_both_is_the_union_of_the_two_neighbour_sets_with_equal_weights():
    a = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0], [1, 0, 0]], dtype=float))
    b = sp.csr_matrix(np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float))
    np.testing.assert_allclose(union_graph(a, b).toarray(), [[0, 0.5, 0.5], [1, 0, 0], [0.5, 0.5, 0]])


def test_spatial_without_coordinates_fails_in_one_line_naming_the_fix():
    spots, _ = planted_spots()
    del spots.obsm["spatial"]
    with pytest.raises(ValueError, match=r"needs spot coordinates in adata.obsm\['spatial'\].*context_graph=expression"):
        GapFill(model={**MODEL, "context_graph": "spatial"}, train=TRAIN).fit(spots)
    assert positions_of(spots) is None
    with pytest.raises(ValueError, match="obsm"):
        check_graph("both", None)
    check_graph("expression", None)  # nothing needed


def test_the_imputed_spots_keep_their_positions_and_images_and_scanpy_draws_them(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    spots, _ = planted_spots()
    model = GapFill(model={**MODEL, "context_graph": "both"}, train={**TRAIN, "max_epochs": 1},
                    layout={"strategy": "given"}).fit(spots)
    out = model.impute(spots, inplace=False)
    np.testing.assert_array_equal(out.obsm["spatial"], spots.obsm["spatial"])
    assert set(out.uns["spatial"]) == {"left", "right"}
    section = out[out.obs["library_id"] == "left"].copy()
    axes = sc.pl.spatial(section, color="gene00", layer="imputed", library_id="left", show=False)
    assert axes
    # The graph choice is saved with the model and used again when it imputes after loading.
    model.save(tmp_path)
    loaded = GapFill.load(tmp_path)
    assert loaded.bundle.model.context_graph == "both"
    np.testing.assert_allclose(loaded.impute(spots, inplace=False).layers["imputed"], out.layers["imputed"], atol=1e-5)


def test_the_unet_of_the_denoising_protocol_reads_the_positions_of_the_spots_each_split_kept():
    from scgapfill.eval.benchmark import unet_denoiser

    spots, _ = planted_spots()
    parameters = {"model": {**MODEL, "context_graph": "spatial"}, "train": {**TRAIN, "max_epochs": 1},
                  "layout": {"strategy": "given"}, "hvg": {"n_top_genes": 48}}
    kept = np.arange(1, spots.n_obs)  # the protocol dropped spot 0
    denoise = unet_denoiser(parameters, positions_of(spots))
    assert denoise.takes_cells
    out = denoise(spots.X[kept], list(spots.var_names), 0, cells=kept)
    assert out.shape == (len(kept), N_GENES) and np.isfinite(out).all()
    with pytest.raises(ValueError, match=r"obsm\['spatial'\]"):
        unet_denoiser(parameters)(spots.X, list(spots.var_names), 0)


def test_the_inference_pipeline_imputes_spots_with_their_tissue_neighbours_as_in_memory(tmp_path):
    from scgapfill.glue.datasets import AnnDataDataset
    from scgapfill.pipelines.inference.nodes import impute_new, load_aligned_counts

    spots, _ = planted_spots()
    model = GapFill(model={**MODEL, "context_graph": "spatial"}, train={**TRAIN, "max_epochs": 1},
                    layout={"strategy": "given"}, impute={"batch_size": 32}).fit(spots)
    expected = model.impute(spots, inplace=False).layers["imputed"]
    path = tmp_path / "spots.h5ad"
    spots.write_h5ad(path)
    for chunk_size in (96, 0):  # backed, a multiple of the batch (the same batches), and in memory
        settings = {"chunk_size": chunk_size}
        aligned, report = load_aligned_counts({"path": str(path)}, model, settings)
        out = tmp_path / f"imputed_{chunk_size}.h5ad"
        AnnDataDataset(filepath=str(out)).save(impute_new(model, aligned, report, settings))
        result = ad.read_h5ad(out)
        np.testing.assert_allclose(result.layers["imputed"], expected, atol=1e-5)
        np.testing.assert_array_equal(result.obsm["spatial"], spots.obsm["spatial"])
        assert set(result.uns["spatial"]) == {"left", "right"}
    # Without the tissue's neighbours the numbers are not those: the positions were used, not only carried.
    shuffled = spots.copy()
    shuffled.obsm["spatial"] = np.random.default_rng(1).permutation(spots.obsm["spatial"])
    shuffled.write_h5ad(path)
    aligned, report = load_aligned_counts({"path": str(path)}, model, {"chunk_size": 96})
    assert not np.allclose(impute_new(model, aligned, report, {"chunk_size": 96}).to_memory().layers["imputed"],
                           expected, atol=1e-3)


def test_inference_of_a_spatial_model_without_positions_or_above_the_reference_size_fails_in_one_line(tmp_path):
    from scgapfill.pipelines.inference.nodes import impute_new, load_aligned_counts

    spots, _ = planted_spots()
    model = GapFill(model={**MODEL, "context_graph": "both"}, train={**TRAIN, "max_epochs": 1},
                    layout={"strategy": "given"}).fit(spots)
    bare = spots.copy()
    del bare.obsm["spatial"]
    path = tmp_path / "bare.h5ad"
    bare.write_h5ad(path)
    aligned, report = load_aligned_counts({"path": str(path)}, model, {"chunk_size": 96})
    with pytest.raises(ValueError, match=r"needs spot coordinates in adata.obsm\['spatial'\]"):
        impute_new(model, aligned, report, {"chunk_size": 96})
    spots.write_h5ad(path)
    with pytest.raises(ValueError, match=r"above inference.reference_cells=100.*reads no spot positions"):
        load_aligned_counts({"path": str(path)}, model, {"chunk_size": 96, "reference_cells": 100})
