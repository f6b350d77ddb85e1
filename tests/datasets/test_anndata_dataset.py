"""AnnDataDataset: round trip, existence, versioning, atomic save, errors, permissions."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from kedro.io.core import DatasetError, Version

from scgapfill.glue.datasets import AnnDataDataset


@pytest.fixture
def rich_adata(small_adata: ad.AnnData) -> ad.AnnData:
    """The tiny simulation with a bit of everything an AnnData can carry."""
    adata = small_adata.copy()
    adata.obs["n_genes"] = np.asarray((adata.X > 0).sum(axis=1)).ravel().astype(np.int64)
    adata.var["is_de"] = adata.var["de_groups"] != ""
    adata.layers["dense_log"] = np.log1p(adata.X.toarray()).astype(np.float32)
    adata.uns["nested"] = {"label_key": "group", "numbers": np.arange(4), "scale": 2.5}
    return adata


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _same_sparse(a, b) -> bool:
    return a.shape == b.shape and (sp.csr_matrix(a) != sp.csr_matrix(b)).nnz == 0


def test_round_trip_keeps_everything(tmp_path: Path, rich_adata: ad.AnnData) -> None:
    ds = AnnDataDataset(filepath=str(tmp_path / "a.h5ad"), save_args={"compression": "gzip"})
    ds.save(rich_adata)
    loaded = ds.load()

    assert sp.issparse(loaded.X)
    assert _same_sparse(loaded.X, rich_adata.X)
    pd.testing.assert_frame_equal(loaded.obs, rich_adata.obs)
    pd.testing.assert_frame_equal(loaded.var, rich_adata.var)
    assert set(loaded.layers) == {"true_counts", "true_mean", "dense_log"}
    assert sp.issparse(loaded.layers["true_counts"])
    assert _same_sparse(loaded.layers["true_counts"], rich_adata.layers["true_counts"])
    np.testing.assert_array_equal(loaded.layers["true_mean"], rich_adata.layers["true_mean"])
    np.testing.assert_array_equal(loaded.layers["dense_log"], rich_adata.layers["dense_log"])
    assert loaded.uns["nested"]["label_key"] == "group"
    assert loaded.uns["nested"]["scale"] == 2.5
    np.testing.assert_array_equal(loaded.uns["nested"]["numbers"], np.arange(4))
    assert loaded.uns["simulation"]["seed"] == rich_adata.uns["simulation"]["seed"]


def test_load_args_are_passed_to_read_h5ad(tmp_path: Path, small_adata: ad.AnnData) -> None:
    path = tmp_path / "a.h5ad"
    AnnDataDataset(filepath=str(path)).save(small_adata)
    backed = AnnDataDataset(filepath=str(path), load_args={"backed": "r"}).load()
    try:
        assert backed.isbacked
        assert backed.shape == small_adata.shape
    finally:
        backed.file.close()


def test_exists_false_then_true(tmp_path: Path, small_adata: ad.AnnData) -> None:
    ds = AnnDataDataset(filepath=str(tmp_path / "sub" / "a.h5ad"))
    assert not ds.exists()
    ds.save(small_adata)  # creates the missing parent folder
    assert ds.exists()


def test_describe_and_repr_name_the_filepath(tmp_path: Path) -> None:
    path = tmp_path / "described.h5ad"
    ds = AnnDataDataset(filepath=str(path), save_args={"compression": "gzip"})
    assert ds._describe()["filepath"] == path.as_posix()
    assert ds._describe()["save_args"] == {"compression": "gzip"}
    assert path.as_posix() in repr(ds)
    assert path.as_posix() in str(ds)


def test_remote_filepath_is_refused() -> None:
    with pytest.raises(DatasetError, match="local files only"):
        AnnDataDataset(filepath="s3://bucket/a.h5ad")


def test_versioned_saves_under_timestamp_and_loads_latest(tmp_path: Path, small_adata: ad.AnnData) -> None:
    path = tmp_path / "v.h5ad"
    first = small_adata[:10].copy()
    second = small_adata[:20].copy()

    ds1 = AnnDataDataset(filepath=str(path), version=Version(None, None))
    assert not ds1.exists()
    ds1.save(first)
    time.sleep(0.01)  # version timestamps have millisecond resolution
    AnnDataDataset(filepath=str(path), version=Version(None, None)).save(second)

    assert path.is_dir()
    versions = sorted(p.name for p in path.iterdir())
    assert len(versions) == 2
    for version in versions:
        assert (path / version / "v.h5ad").is_file()
        assert not list((path / version).glob(".*"))  # no temporary file left beside it

    latest = AnnDataDataset(filepath=str(path), version=Version(None, None))
    assert latest.exists()
    assert latest.load().n_obs == 20
    # An explicit load version still reaches the older one.
    assert AnnDataDataset(filepath=str(path), version=Version(versions[0], None)).load().n_obs == 10


def test_failed_save_keeps_previous_file_and_leaves_no_temp(
    tmp_path: Path, small_adata: ad.AnnData, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "atomic"
    path = folder / "a.h5ad"
    ds = AnnDataDataset(filepath=str(path))
    ds.save(small_adata)
    before = path.read_bytes()

    written_to: list[Path] = []

    def crash(self, filename, **kwargs):
        Path(filename).write_bytes(b"half a file")
        written_to.append(Path(filename))
        raise RuntimeError("disk full")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", crash)
    with pytest.raises(DatasetError, match="disk full"):
        ds.save(small_adata[:5].copy())
    monkeypatch.undo()

    # The crash really wrote somewhere, and not into the target itself.
    assert written_to and written_to[0] != path and written_to[0].parent == folder
    assert path.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["a.h5ad"]
    assert ds.load().n_obs == small_adata.n_obs


def test_saving_non_anndata_raises(tmp_path: Path) -> None:
    path = tmp_path / "a.h5ad"
    ds = AnnDataDataset(filepath=str(path))
    with pytest.raises(DatasetError, match="AnnData"):
        ds.save(pd.DataFrame({"a": [1, 2]}))
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_saved_file_has_normal_permissions(tmp_path: Path, small_adata: ad.AnnData, umask_022) -> None:
    path = tmp_path / "a.h5ad"
    AnnDataDataset(filepath=str(path)).save(small_adata)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o644, oct(mode)
