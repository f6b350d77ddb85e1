"""SparseMatrixDataset: round trip, existence, versioning, atomic save, errors, permissions."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from kedro.io.core import DatasetError, Version

from scgapfill.glue.datasets import SparseMatrixDataset


@pytest.fixture
def matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    return sp.random(50, 30, density=0.1, format="csr", random_state=rng, dtype=np.float32)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _equal(a, b) -> bool:
    return a.shape == b.shape and (sp.csr_matrix(a) != sp.csr_matrix(b)).nnz == 0


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_round_trip_returns_equal_csr(tmp_path: Path, matrix: sp.csr_matrix, fmt: str) -> None:
    ds = SparseMatrixDataset(filepath=str(tmp_path / "m.npz"))
    ds.save(matrix.asformat(fmt))
    loaded = ds.load()
    assert sp.issparse(loaded) and loaded.format == "csr"
    assert loaded.dtype == np.float32
    assert _equal(loaded, matrix)


def test_boolean_mask_round_trip(tmp_path: Path) -> None:
    mask = sp.csr_matrix(np.eye(6, dtype=bool))
    ds = SparseMatrixDataset(filepath=str(tmp_path / "mask.npz"))
    ds.save(mask)
    loaded = ds.load()
    assert loaded.dtype == bool
    np.testing.assert_array_equal(loaded.toarray(), np.eye(6, dtype=bool))


def test_exists_false_then_true(tmp_path: Path, matrix: sp.csr_matrix) -> None:
    ds = SparseMatrixDataset(filepath=str(tmp_path / "sub" / "m.npz"))
    assert not ds.exists()
    ds.save(matrix)
    assert ds.exists()


def test_describe_and_repr_name_the_filepath(tmp_path: Path) -> None:
    path = tmp_path / "described.npz"
    ds = SparseMatrixDataset(filepath=str(path))
    assert ds._describe()["filepath"] == path.as_posix()
    assert path.as_posix() in repr(ds)


def test_remote_filepath_is_refused() -> None:
    with pytest.raises(DatasetError, match="local files only"):
        SparseMatrixDataset(filepath="gcs://bucket/m.npz")


def test_versioned_saves_under_timestamp_and_loads_latest(tmp_path: Path, matrix: sp.csr_matrix) -> None:
    path = tmp_path / "m.npz"
    ds1 = SparseMatrixDataset(filepath=str(path), version=Version(None, None))
    assert not ds1.exists()
    ds1.save(matrix)
    time.sleep(0.01)
    SparseMatrixDataset(filepath=str(path), version=Version(None, None)).save(matrix * 2)

    versions = sorted(p.name for p in path.iterdir())
    assert len(versions) == 2
    assert all(sorted(q.name for q in (path / v).iterdir()) == ["m.npz"] for v in versions)
    assert _equal(SparseMatrixDataset(filepath=str(path), version=Version(None, None)).load(), matrix * 2)
    assert _equal(SparseMatrixDataset(filepath=str(path), version=Version(versions[0], None)).load(), matrix)


def test_failed_save_keeps_previous_file_and_leaves_no_temp(
    tmp_path: Path, matrix: sp.csr_matrix, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.npz"
    ds = SparseMatrixDataset(filepath=str(path))
    ds.save(matrix)
    before = path.read_bytes()
    written_to: list[Path] = []

    def crash(file, matrix, compressed=True):
        Path(file).write_bytes(b"PK\x03\x04 half")
        written_to.append(Path(file))
        raise OSError("disk full")

    monkeypatch.setattr(sp, "save_npz", crash)
    with pytest.raises(DatasetError, match="disk full"):
        ds.save(matrix * 3)
    monkeypatch.undo()

    assert written_to and written_to[0] != path
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    assert _equal(ds.load(), matrix)


@pytest.mark.parametrize("bad", [np.eye(3), [[1, 0], [0, 1]]])
def test_saving_dense_raises(tmp_path: Path, bad) -> None:
    path = tmp_path / "m.npz"
    with pytest.raises(DatasetError, match="sparse"):
        SparseMatrixDataset(filepath=str(path)).save(bad)
    assert not path.exists()


def test_saved_file_has_normal_permissions(tmp_path: Path, matrix: sp.csr_matrix, umask_022) -> None:
    path = tmp_path / "m.npz"
    SparseMatrixDataset(filepath=str(path)).save(matrix)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o644, oct(mode)
