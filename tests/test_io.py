"""Input loading: the embedded data, a simulation and the user file formats."""

from __future__ import annotations

import gzip
import logging
import re
import shutil
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from scgapfill.data import io


@pytest.fixture(scope="module")
def pbmc() -> ad.AnnData:
    return io.pbmc68k_counts()


@pytest.fixture
def counts_adata(small_adata: ad.AnnData) -> ad.AnnData:
    """Tiny simulated counts with 10x-like names (barcodes, gene symbols)."""
    adata = ad.AnnData(X=sp.csr_matrix(small_adata.X, dtype=np.float32))
    adata.obs_names = [f"AAAC{i:04d}-1" for i in range(adata.n_obs)]
    adata.var_names = [f"GENE{j}" for j in range(adata.n_vars)]
    adata.obs["cell_type"] = small_adata.obs["group"].to_numpy()
    return adata


# --- embedded data -----------------------------------------------------------


def test_pbmc68k_counts_are_recovered_integers(pbmc: ad.AnnData) -> None:
    import scanpy as sc

    full = sc.datasets.pbmc68k_reduced()
    raw = full.raw.to_adata()
    raw_x = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    expected = np.expm1(raw_x.astype(np.float64)) * full.obs["n_counts"].to_numpy()[:, None] / 1e4

    counts = pbmc.X.toarray().astype(np.float64)
    assert pbmc.shape == (700, 765)
    assert list(pbmc.var_names) == list(raw.var_names)
    np.testing.assert_array_equal(counts, np.rint(counts))
    assert counts.min() >= 0
    deviation = np.abs(counts - expected)
    assert (deviation < 0.05).mean() >= 0.9999
    assert deviation.max() < 0.1
    # Not a trivial reconstruction: real counts, with cells of different depth.
    assert counts.max() > 10 and np.unique(counts.sum(axis=1)).size > 100
    assert pbmc.obs["bulk_labels"].cat.categories.size == 10


def test_load_input_defaults_to_embedded_counts(pbmc: ad.AnnData) -> None:
    adata = io.load_input({})
    assert adata.shape == (700, 765)
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    assert _same(adata.X, pbmc.X)
    assert adata.uns["label_key"] == "bulk_labels"


def test_load_input_simulated() -> None:
    adata = io.load_input({"path": "simulated", "simulation": {"n_cells": 30, "n_genes": 20, "seed": 3}})
    assert adata.shape == (30, 20)
    assert adata.uns["label_key"] == "group"
    x = adata.X.toarray()
    np.testing.assert_array_equal(x, np.rint(x))


# --- user files ----------------------------------------------------------------


def _same(a, b) -> bool:
    return a.shape == b.shape and (sp.csr_matrix(a) != sp.csr_matrix(b)).nnz == 0


def _gzip(path: Path) -> None:
    with path.open("rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()


def write_10x_mtx(adata: ad.AnnData, folder: Path, v3: bool = True) -> Path:
    """CellRanger matrix folder: v3 gzipped with features.tsv, v2 plain with genes.tsv."""
    folder.mkdir(parents=True)
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(adata.X.T.astype(np.int64)))
    ids = [f"ENSG{j:011d}" for j in range(adata.n_vars)]
    if v3:
        features = pd.DataFrame({"id": ids, "symbol": adata.var_names, "type": "Gene Expression"})
        features.to_csv(folder / "features.tsv", sep="\t", header=False, index=False)
    else:
        pd.DataFrame({"id": ids, "symbol": adata.var_names}).to_csv(
            folder / "genes.tsv", sep="\t", header=False, index=False
        )
    pd.Series(adata.obs_names).to_csv(folder / "barcodes.tsv", header=False, index=False)
    if v3:
        for name in ("matrix.mtx", "features.tsv", "barcodes.tsv"):
            _gzip(folder / name)
    return folder


def write_10x_h5(adata: ad.AnnData, path: Path) -> Path:
    """CellRanger v3 HDF5 layout: a CSC genes x cells matrix stored as cells' columns."""
    matrix = sp.csc_matrix(adata.X.T.astype(np.int32))  # genes x cells; each cell is a column
    n_genes = adata.n_vars
    with h5py.File(path, "w") as f:
        group = f.create_group("matrix")
        group.create_dataset("data", data=matrix.data.astype(np.int32))
        group.create_dataset("indices", data=matrix.indices.astype(np.int64))
        group.create_dataset("indptr", data=matrix.indptr.astype(np.int64))
        group.create_dataset("shape", data=np.array(matrix.shape, dtype=np.int32))
        group.create_dataset("barcodes", data=np.array(adata.obs_names, dtype="S"))
        features = group.create_group("features")
        features.create_dataset("id", data=np.array([f"ENSG{j:011d}" for j in range(n_genes)], dtype="S"))
        features.create_dataset("name", data=np.array(adata.var_names, dtype="S"))
        features.create_dataset("feature_type", data=np.array(["Gene Expression"] * n_genes, dtype="S"))
        features.create_dataset("genome", data=np.array(["GRCh38"] * n_genes, dtype="S"))
        features.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
    return path


@pytest.mark.parametrize("fmt", ["h5ad", "mtx_v3_gz", "mtx_v2", "h5"])
def test_user_formats_give_the_same_counts(tmp_path: Path, counts_adata: ad.AnnData, fmt: str) -> None:
    if fmt == "h5ad":
        path = tmp_path / "counts.h5ad"
        counts_adata.write_h5ad(path)
    elif fmt == "mtx_v3_gz":
        path = write_10x_mtx(counts_adata, tmp_path / "filtered_feature_bc_matrix", v3=True)
    elif fmt == "mtx_v2":
        path = write_10x_mtx(counts_adata, tmp_path / "filtered_gene_bc_matrices", v3=False)
    else:
        path = write_10x_h5(counts_adata, tmp_path / "filtered_feature_bc_matrix.h5")

    adata = io.load_input({"path": str(path)})
    assert adata.shape == counts_adata.shape
    assert list(adata.obs_names) == list(counts_adata.obs_names)
    assert list(adata.var_names) == list(counts_adata.var_names)
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    assert _same(adata.X, counts_adata.X)
    assert adata.uns["source"] == str(path)
    assert adata.uns["label_key"] == ""


def test_relative_path_is_resolved_from_the_working_directory(workdir: Path, counts_adata: ad.AnnData) -> None:
    (workdir / "inputs").mkdir()
    counts_adata.write_h5ad(workdir / "inputs" / "counts.h5ad")
    adata = io.load_input({"path": "inputs/counts.h5ad", "label_key": "cell_type"})
    assert _same(adata.X, counts_adata.X)
    assert list(adata.obs["cell_type"]) == list(counts_adata.obs["cell_type"])


def test_read_counts_file_rejects_unknown_suffix_and_bare_folder(tmp_path: Path) -> None:
    csv = tmp_path / "counts.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="unknown format"):
        io.read_counts_file(csv)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="matrix.mtx"):
        io.read_counts_file(empty)


def test_log_normalised_x_with_counts_layer_uses_the_layer(
    tmp_path: Path, counts_adata: ad.AnnData, caplog: pytest.LogCaptureFixture
) -> None:
    logged = counts_adata.copy()
    logged.layers["counts"] = logged.X.copy()
    sums = np.asarray(logged.X.sum(axis=1)).ravel()
    logged.X = sp.csr_matrix(np.log1p(logged.X.toarray() / sums[:, None] * 1e4).astype(np.float32))
    path = tmp_path / "logged.h5ad"
    logged.write_h5ad(path)

    with caplog.at_level(logging.INFO, logger="scgapfill.data.io"):
        adata = io.load_input({"path": str(path), "label_key": "cell_type"})
    assert _same(adata.X, counts_adata.X)
    assert adata.uns["label_key"] == "cell_type"
    assert "layers['counts']" in caplog.text


def test_only_log_values_raise(tmp_path: Path, counts_adata: ad.AnnData) -> None:
    logged = counts_adata.copy()
    logged.X = sp.csr_matrix(np.log1p(logged.X.toarray()).astype(np.float32))
    path = tmp_path / "logged.h5ad"
    logged.write_h5ad(path)
    with pytest.raises(ValueError, match=r"layers\['counts'\]"):
        io.load_input({"path": str(path)})


def test_negative_values_raise(tmp_path: Path, counts_adata: ad.AnnData) -> None:
    scaled = counts_adata.copy()
    scaled.X = -scaled.X  # integers, but negative: not counts
    path = tmp_path / "negative.h5ad"
    scaled.write_h5ad(path)
    with pytest.raises(ValueError, match="raw UMI counts"):
        io.load_input({"path": str(path)})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0, 2.5])
def test_every_stored_value_is_checked_and_the_first_bad_entry_named(tmp_path: Path, bad: float) -> None:
    # 300k stored values: the bad one sits past the first 200k, where a sampled check stopped looking.
    rng = np.random.default_rng(0)
    X = sp.random(3_000, 200, density=0.5, format="csr", random_state=rng, data_rvs=lambda n: rng.integers(1, 9, n))
    X.data = X.data.astype(np.float32)
    row = 2_500
    position = X.indptr[row] + 3
    X.data[position] = bad
    adata = ad.AnnData(X=X, obs=pd.DataFrame(index=[f"cell{i}" for i in range(3_000)]),
                       var=pd.DataFrame(index=[f"g{j}" for j in range(200)]))
    assert X.indptr[row] > 200_000
    found_row, found_column, value, n_bad = io.first_non_count(X)
    assert (found_row, found_column, n_bad) == (row, int(X.indices[position]), 1)
    np.testing.assert_equal(value, float(np.float32(bad)))
    path = tmp_path / "bad.h5ad"
    adata.write_h5ad(path)
    gene = f"g{X.indices[position]}"
    with pytest.raises(ValueError, match=rf"input.path=.*bad.h5ad.*1 value\(s\).*cell 'cell2500', gene '{gene}'"):
        io.load_input({"path": str(path)})


def test_duplicate_cell_names_are_made_unique_with_a_warning(
    tmp_path: Path, counts_adata: ad.AnnData, caplog: pytest.LogCaptureFixture
) -> None:
    twins = counts_adata.copy()
    names = list(twins.obs_names)
    names[1] = names[0]
    twins.obs_names = names
    path = tmp_path / "twins.h5ad"
    twins.write_h5ad(path)
    with caplog.at_level(logging.WARNING, logger="scgapfill.data.io"):
        adata = io.load_input({"path": str(path)})
    assert adata.obs_names.is_unique and adata.obs_names[1] == f"{names[0]}-1"
    assert list(adata.obs_names[2:]) == names[2:]
    assert (f"input.path={str(path)!r} has 1 duplicate cell names (e.g. [{names[0]!r}]): the repeats are told "
            f"apart as '{names[0]}-1', '{names[0]}-2', ...; the outputs carry the unique names") in caplog.text


def test_the_count_check_is_chunked_and_handles_every_layout(monkeypatch) -> None:
    monkeypatch.setattr(io, "_CHECK_CHUNK", 7)  # many steps over a small matrix
    dense = np.arange(60, dtype=float).reshape(6, 10)
    dense[4, 3], dense[5, 9] = 0.5, -2.0
    for matrix in (dense, sp.csr_matrix(dense), sp.csc_matrix(dense), sp.coo_matrix(dense)):
        assert io.first_non_count(matrix) == (4, 3, 0.5, 2)
    assert io.is_integer_counts(np.rint(np.abs(dense)))


def test_missing_path_raises_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "counts.h5ad"
    with pytest.raises(FileNotFoundError) as info:
        io.load_input({"path": str(missing)})
    assert str(missing) in str(info.value)
    assert "input.path" in str(info.value)


def test_bad_label_key_lists_columns(tmp_path: Path, counts_adata: ad.AnnData) -> None:
    path = tmp_path / "counts.h5ad"
    counts_adata.write_h5ad(path)
    with pytest.raises(KeyError) as info:
        io.load_input({"path": str(path), "label_key": "celltype_typo"})
    message = str(info.value)
    assert "input.label_key" in message and "celltype_typo" in message
    assert "cell_type" in message


def test_bad_label_key_for_embedded_data_lists_its_columns() -> None:
    with pytest.raises(KeyError, match="bulk_labels"):
        io.load_input({"label_key": "louvain_typo"})


def test_reading_does_not_modify_the_file(tmp_path: Path, counts_adata: ad.AnnData) -> None:
    path = tmp_path / "counts.h5ad"
    counts_adata.write_h5ad(path)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    adata = io.load_input({"path": str(path)})
    adata.X.data[:] = 0  # the returned object is independent of the file
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


# --- files that cannot be read: one line naming input.path, the cause and the fix ----------------


def _one_line_error(path: Path) -> str:
    """The ValueError that loading ``path`` raises: one line naming input.path; the file left as it was."""
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(ValueError) as info:
        io.load_input({"path": str(path)})
    message = str(info.value)
    assert "\n" not in message and f"input.path={str(path)!r}" in message
    if before is not None:
        assert path.read_bytes() == before, "the input file must only be read"
    if "could not be read" in message:
        assert info.value.__cause__ is not None, "the reader's own error stays chained"
    return message


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        ("truncated", r"the file is truncated or not HDF5: OSError: .*truncated file"),
        ("text", r"the file is truncated or not HDF5: OSError: .*file signature not found"),
        ("empty", r"the file is empty, 0 bytes"),
        ("not_anndata", r"an HDF5 file, but not laid out as \.h5ad"),
    ],
)
def test_an_unreadable_h5ad_names_input_path_the_cause_and_the_fix(
    tmp_path: Path, counts_adata: ad.AnnData, damage: str, cause: str
) -> None:
    path = tmp_path / "counts.h5ad"
    if damage == "truncated":
        counts_adata.write_h5ad(path)
        _truncated(path)
    elif damage == "text":
        path.write_text("cell,GENE0\nAAAC0000-1,3\n")
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a 10x .h5 renamed .h5ad: HDF5, other layout
        write_10x_h5(counts_adata, path)
    message = _one_line_error(path)
    fix = r"re-export it with adata\.write_h5ad\(path\)"
    assert re.search(rf"could not be read as \.h5ad \({cause}.*\); {fix}$", message)


def test_an_unreadable_10x_file_or_folder_names_input_path_and_the_fix(
    tmp_path: Path, counts_adata: ad.AnnData
) -> None:
    h5 = write_10x_h5(counts_adata, tmp_path / "filtered_feature_bc_matrix.h5")
    _truncated(h5)
    message = _one_line_error(h5)
    assert "could not be read as a 10x .h5 (the file is truncated or not HDF5" in message
    assert message.endswith("copy CellRanger's filtered_feature_bc_matrix.h5 again")

    folder = write_10x_mtx(counts_adata, tmp_path / "filtered_feature_bc_matrix")
    _truncated(folder / "matrix.mtx.gz")
    message = _one_line_error(folder)
    assert "could not be read as a 10x matrix folder (a file in it is truncated or malformed" in message


def test_a_folder_that_is_not_a_10x_folder_names_what_it_lacks(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "counts.csv").write_text("a,b\n1,2\n")
    message = _one_line_error(folder)
    assert "folder without matrix.mtx[.gz]" in message and "give a 10x matrix folder" in message


@pytest.mark.parametrize(("shape", "what"), [((0, 20), "no cells"), ((30, 0), "no genes")])
def test_a_file_without_cells_or_genes_says_so_not_qc(tmp_path: Path, shape: tuple, what: str) -> None:
    path = tmp_path / "empty_selection.h5ad"
    ad.AnnData(X=sp.csr_matrix(shape, dtype=np.float32)).write_h5ad(path)
    message = _one_line_error(path)
    assert f"has {what} ({shape[0]} cells x {shape[1]} genes)" in message
    assert "qc." not in message
