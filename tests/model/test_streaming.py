"""Chunked inference: backed .h5ad in, imputed layer written chunk by chunk, same numbers as in memory."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scgapfill.glue.datasets import AnnDataDataset
from scgapfill.infer import streaming
from scgapfill.infer.imputation import align_genes, impute_counts, imputed_chunks
from scgapfill.params import ImputeParams
from scgapfill.pipelines.inference.nodes import load_aligned_counts
from scgapfill.train.fit import fit_gapfill

PARAMS = ImputeParams(batch_size=16, form="level", fill_only_zeros=True)


@pytest.fixture(scope="module")
def bundle(counts, layout, model_params, train_params):
    return fit_gapfill(counts, layout, model_params, train_params)


@pytest.fixture()
def new_file(bundle, counts, tmp_path):
    """The model's genes in another order, 10 of them missing, two extra genes."""
    genes = list(bundle.gene_names)
    rng = np.random.default_rng(3)
    kept = list(rng.permutation(len(genes))[10:])
    extra = sp.csr_matrix(rng.poisson(1.0, size=(counts.shape[0], 2)).astype(np.float32))
    matrix = sp.hstack([counts[:, kept], extra]).tocsr().astype(np.float32)
    adata = ad.AnnData(X=matrix, obs=pd.DataFrame(index=[f"cell{i}" for i in range(counts.shape[0])]))
    adata.var_names = [genes[i] for i in kept] + ["EXTRA1", "EXTRA2"]
    path = tmp_path / "new.h5ad"
    adata.write_h5ad(path)
    return path, adata


@pytest.mark.parametrize("smoothing", [(0.0, "input"), (0.5, "input"), (0.5, "imputed")])
@pytest.mark.parametrize("chunk_size", [1, 7, 48, 10_000])
def test_chunks_give_the_in_memory_imputation(bundle, counts, chunk_size, smoothing):
    # Smoothing needs every cell's estimate before any chunk is final: the two-pass path.
    weight, neighbours = smoothing
    params = ImputeParams(batch_size=16, fill_only_zeros=True, output_smoothing=weight, smoothing_neighbours=neighbours)
    whole = impute_counts(bundle, counts, params)
    starts = []
    for rows, values in imputed_chunks(bundle, counts, params, chunk_size=chunk_size):
        starts.append(rows.start)
        assert values.shape[0] <= chunk_size
        if chunk_size % 16 == 0 and (weight == 0 or chunk_size >= counts.shape[0]):
            # Chunks made of whole batches: the network sees the very same batches.
            np.testing.assert_array_equal(values, whole[rows])
        elif chunk_size % 16 == 0:
            # The same estimates; each cell's neighbour sum is added up chunk by chunk here and in one
            # product over the whole array in memory, so float32 rounding may differ in the last place.
            np.testing.assert_allclose(values, whole[rows], rtol=1e-6, atol=0)
        else:
            # Other batch sizes may pick other convolution kernels: float rounding only.
            np.testing.assert_allclose(values, whole[rows], rtol=1e-5, atol=1e-6)
    assert starts == list(range(0, counts.shape[0], chunk_size))


def test_backed_reading_in_chunks_equals_reading_whole(bundle, new_file):
    path, adata = new_file
    before = path.read_bytes()
    counts, obs, report = streaming.read_aligned_counts_backed(path, bundle.gene_names, chunk_size=7)
    expected, expected_report = align_genes(adata.X, list(adata.var_names), bundle.gene_names)
    assert (counts != expected).nnz == 0 and counts.shape == (adata.n_obs, len(bundle.gene_names))
    assert report == expected_report and report["n_missing"] == 10 and report["n_extra"] == 2
    assert list(obs.index) == list(adata.obs_names)
    assert path.read_bytes() == before, "the input file must only be read"


def test_backed_reading_refuses_non_counts_and_other_formats(bundle, new_file, tmp_path):
    path, adata = new_file
    logged = adata.copy()
    logged.X = logged.X.multiply(0.37).tocsr()
    bad = tmp_path / "lognorm.h5ad"
    logged.write_h5ad(bad)
    with pytest.raises(ValueError, match="inference.chunk_size=0"):
        streaming.read_aligned_counts_backed(bad, bundle.gene_names, chunk_size=50)
    with pytest.raises(ValueError, match="chunked inference reads a .h5ad"):
        streaming.read_aligned_counts_backed(tmp_path / "counts.h5", bundle.gene_names, chunk_size=50)


def test_backed_reading_names_input_path_for_a_missing_damaged_or_empty_file(bundle, tmp_path):
    missing = tmp_path / "nowhere.h5ad"
    with pytest.raises(FileNotFoundError, match=r"input.path=.*nowhere.h5ad. does not exist"):
        streaming.read_aligned_counts_backed(missing, bundle.gene_names, chunk_size=50)
    damaged = tmp_path / "damaged.h5ad"
    damaged.write_text("not HDF5")
    with pytest.raises(ValueError, match=r"could not be read as \.h5ad \(the file is truncated or not HDF5"):
        streaming.read_aligned_counts_backed(damaged, bundle.gene_names, chunk_size=50)
    no_cells = tmp_path / "no_cells.h5ad"
    ad.AnnData(X=sp.csr_matrix((0, 5), dtype=np.float32)).write_h5ad(no_cells)
    with pytest.raises(ValueError, match=r"has no cells \(0 cells x 5 genes\)"):
        streaming.read_aligned_counts_backed(no_cells, bundle.gene_names, chunk_size=50)


def test_streamed_result_written_through_the_catalog_dataset(bundle, new_file, tmp_path):
    path, _ = new_file
    aligned, report = load_aligned_counts({"path": str(path)}, bundle, {"chunk_size": 32})
    in_memory, same_report = load_aligned_counts({"path": str(path)}, bundle, {"chunk_size": 0})
    assert report == same_report and (aligned["counts"] != in_memory["counts"]).nnz == 0

    result = streaming.StreamedImputation(bundle, aligned["counts"], aligned["obs"], PARAMS, chunk_size=32, report=report)
    target = tmp_path / "out" / "imputed.h5ad"
    AnnDataDataset(filepath=str(target), save_args={"compression": "gzip"}).save(result)
    out = ad.read_h5ad(target)
    expected = impute_counts(bundle, aligned["counts"], PARAMS)
    # Float32 rounding of the smoothing's sums only: chunk by chunk here, one product in memory.
    np.testing.assert_allclose(out.layers["imputed"], expected, rtol=1e-6, atol=0)
    assert out.layers["imputed"].dtype == np.float32
    assert (out.layers["counts"] != aligned["counts"]).nnz == 0
    assert list(out.var_names) == list(bundle.gene_names) and list(out.obs_names) == list(aligned["obs"].index)
    np.testing.assert_allclose(out.obs["size_factor"], np.asarray(aligned["counts"].sum(axis=1)).ravel())
    assert out.uns["gapfill"]["chunk_size"] == 32
    assert out.uns["gapfill"]["missing_gene_share"] == pytest.approx(10 / len(bundle.gene_names))
    np.testing.assert_array_equal(result.to_memory().layers["imputed"], expected)


def test_a_failure_midway_leaves_the_previous_output_untouched(bundle, counts, tmp_path, monkeypatch):
    target = tmp_path / "imputed.h5ad"
    target.write_bytes(b"previous result")
    obs = pd.DataFrame(index=[f"c{i}" for i in range(counts.shape[0])])
    result = streaming.StreamedImputation(bundle, counts, obs, PARAMS, chunk_size=10)

    def failing_chunks(*args, **kwargs):
        for n, item in enumerate(imputed_chunks(*args, **kwargs)):
            if n == 2:
                raise RuntimeError("disk full")
            yield item

    monkeypatch.setattr(streaming, "imputed_chunks", failing_chunks)
    with pytest.raises(Exception, match="disk full"):
        AnnDataDataset(filepath=str(target)).save(result)
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["imputed.h5ad"], "no temporary file may be left behind"


def test_impute_counts_beyond_one_chunk_gives_the_one_chunk_numbers(bundle, counts, monkeypatch):
    params = ImputeParams(batch_size=16, output_smoothing=0.5)
    whole = np.vstack([values for _, values in imputed_chunks(bundle, counts, params, chunk_size=None)])
    from scgapfill.infer import imputation

    monkeypatch.setattr(imputation, "IN_MEMORY_CHUNK_CELLS", 40)  # rounded up to 48: three batches
    np.testing.assert_array_equal(impute_counts(bundle, counts, params), whole)
