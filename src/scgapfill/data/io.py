"""Read the input counts: the embedded data set, a simulation, or a user's file.

``input.path`` selects the source and is the same for every pipeline:

- ``""`` (empty): the embedded ``pbmc68k_reduced`` data that ships inside scanpy;
- ``"simulated"``: :func:`scgapfill.data.simulate.simulate` with ``input.simulation``;
- a ``.h5ad`` file, a 10x ``.h5`` file, or a 10x matrix folder (``matrix.mtx[.gz]``).

Whatever the source, the result is an AnnData whose ``X`` holds raw integer counts.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scgapfill.params import InputParams, parse

log = logging.getLogger(__name__)

EMBEDDED = "pbmc68k_reduced"
SIMULATED = "simulated"


def pbmc68k_counts() -> ad.AnnData:
    """The embedded real data as integer counts.

    scanpy ships ``pbmc68k_reduced`` with ``.raw`` log-normalised as
    ``log1p(counts / n_counts * 1e4)``; the counts are recovered as
    ``round(expm1(raw.X) * n_counts / 1e4)`` (within 0.05 of an integer for
    essentially every entry; tests/test_io.py checks it).
    """
    import scanpy as sc

    full = sc.datasets.pbmc68k_reduced()
    raw = full.raw.to_adata()
    values = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    counts = np.rint(np.expm1(values.astype(np.float64)) * full.obs["n_counts"].to_numpy()[:, None] / 1e4)
    adata = ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)),
        obs=full.obs[["bulk_labels", "n_counts", "percent_mito"]].copy(),
        var=raw.var[[]].copy(),
    )
    adata.obs = adata.obs.rename(columns={"n_counts": "n_counts_original"})
    adata.uns["source"] = EMBEDDED
    return adata


def read_counts_file(path: str | Path) -> ad.AnnData:
    """Read counts from ``.h5ad``, a 10x ``.h5`` or a 10x matrix folder. The file is only read."""
    import scanpy as sc

    path = Path(path)
    if not path.exists():
        raise missing_input(path)
    if path.is_dir():
        if not any((path / name).exists() for name in ("matrix.mtx", "matrix.mtx.gz")):
            raise ValueError(
                f"input.path={str(path)!r} is a folder without matrix.mtx[.gz]; give a 10x matrix folder "
                "(matrix.mtx[.gz], features.tsv[.gz] or genes.tsv, barcodes.tsv[.gz]), a .h5ad or a 10x .h5 file"
            )
        with readable(path, "a 10x matrix folder"):
            adata = sc.read_10x_mtx(path, var_names="gene_symbols", make_unique=True)
    elif path.suffix == ".h5ad":
        with readable(path, ".h5ad"):
            adata = ad.read_h5ad(path)
    elif path.suffix == ".h5":
        with readable(path, "a 10x .h5"):
            adata = sc.read_10x_h5(path)
        adata.var_names_make_unique()
    else:
        raise ValueError(f"input.path={str(path)!r}: unknown format {path.suffix!r}; use .h5ad, 10x .h5 or a 10x matrix folder")
    adata.uns["source"] = str(path)
    return adata


def missing_input(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"input.path={str(path)!r} does not exist; give a .h5ad, a 10x .h5 or a 10x matrix folder, "
        f"or leave input.path empty for the embedded {EMBEDDED} data"
    )


# How to get a readable copy of each input format: the fix named when one cannot be read.
_REEXPORT = {
    ".h5ad": "re-export it with adata.write_h5ad(path)",
    "a 10x .h5": "copy CellRanger's filtered_feature_bc_matrix.h5 again",
    "a 10x matrix folder": "copy CellRanger's filtered_feature_bc_matrix folder again (matrix.mtx.gz, "
                           "features.tsv.gz, barcodes.tsv.gz)",
}


def _first_line(err: BaseException, limit: int = 160) -> str:
    """The exception as one short line: the messages of h5py and anndata run over several."""
    text = f"{type(err).__name__}: {str(err).strip()}".strip(": ").splitlines()[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unreadable(path: Path, kind: str, err: BaseException) -> ValueError:
    """The one-line error for an input file that exists but cannot be parsed as ``kind``."""
    if path.is_file() and path.stat().st_size == 0:
        cause = "the file is empty, 0 bytes"
    elif kind == "a 10x matrix folder":
        cause = f"a file in it is truncated or malformed: {_first_line(err)}"
    elif _opens_as_hdf5(path):
        cause = f"an HDF5 file, but not laid out as {kind}: {_first_line(err)}"
    else:
        cause = f"the file is truncated or not HDF5: {_first_line(err)}"
    return ValueError(f"input.path={str(path)!r} could not be read as {kind} ({cause}); {_REEXPORT[kind]}")


def _opens_as_hdf5(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r"):
            return True
    except OSError:
        return False


@contextmanager
def readable(path: Path, kind: str) -> Iterator[None]:
    """Turn a reader's failure on a damaged file into :func:`unreadable`'s one line, the cause chained.

    The readers raise many types for a damaged file (h5py's OSError, anndata's registry errors,
    KeyError for a missing group, gzip and parser errors), so every ``Exception`` is caught here,
    around the reading call only.
    """
    try:
        yield
    except Exception as err:
        raise unreadable(path, kind, err) from err


def check_not_empty(n_cells: int, n_genes: int, source: str) -> None:
    """Refuse data without cells or genes: nothing downstream (QC, the model) means anything on it."""
    if n_cells and n_genes:
        return
    what = "no cells" if not n_cells else "no genes"
    raise ValueError(
        f"input.path={source!r} has {what} ({n_cells} cells x {n_genes} genes); "
        "check that it is the file you meant: an export from an empty selection holds nothing to impute"
    )


# Values checked per step: bounds the temporary arrays of the check on a large matrix.
_CHECK_CHUNK = 1 << 24


def _not_counts(values: np.ndarray) -> np.ndarray:
    return ~np.isfinite(values) | (values < 0) | (values != np.rint(values))


def first_non_count(matrix: Any) -> tuple[int, int, float, int] | None:
    """``(row, column, value, n_bad)`` of the first stored value that is not a raw count (a finite,
    non-negative integer) and how many there are; ``None`` when every value is one. Every value is
    checked, in steps of ``_CHECK_CHUNK`` so that the check stays small on a million cells."""
    data = matrix.data if sp.issparse(matrix) else np.asarray(matrix).ravel()
    first, n_bad = -1, 0
    for start in range(0, data.size, _CHECK_CHUNK):
        bad = _not_counts(data[start : start + _CHECK_CHUNK])
        found = int(bad.sum())
        if found and first < 0:
            first = start + int(np.argmax(bad))
        n_bad += found
    if first < 0:
        return None
    if sp.issparse(matrix):
        csr = matrix if matrix.format == "csr" else sp.csr_matrix(matrix)
        if csr is not matrix:  # positions of another format's .data differ: find the entry in CSR
            return first_non_count(csr)
        row, column = int(np.searchsorted(csr.indptr, first, side="right") - 1), int(csr.indices[first])
    else:
        row, column = (int(i) for i in np.unravel_index(first, np.shape(matrix)))
    return row, column, float(data[first]), n_bad


def is_integer_counts(matrix: Any) -> bool:
    """True if every stored value is a finite, non-negative integer (see :func:`first_non_count`)."""
    return first_non_count(matrix) is None


# ``layer=AUTO``: the counts are where scanpy users keep them: layers['counts'] when there is one, else X.
AUTO = "auto"
COUNTS_LAYER = "counts"
# The fix named when no raw counts are found, for each kind of caller.
_PUT_COUNTS = {
    "pipeline": "store raw UMI counts in X or in layers['counts']",
    "api": "put the raw UMI counts in adata.layers['counts'] (or in X), or name the layer that holds them "
           "with layer= (layer=None: X)",
}


@dataclass
class InputCounts:
    """What :func:`checked_counts` found: the raw counts and the names to use with them.

    ``obs_names``/``var_names`` are unique (duplicates get ``-1``, ``-2``, ... as
    ``AnnData.obs_names_make_unique`` gives them); ``cells_with_counts`` and ``genes_with_counts``
    tell the cells and genes that hold at least one count. Neither the pipeline nor the model
    fills an all-zero gene (nothing to learn it from) or imputes an all-zero cell (no depth).
    """

    counts: sp.csr_matrix  # float32
    where: str  # "X" or "layers['counts']"
    obs_names: pd.Index
    var_names: pd.Index
    cells_with_counts: np.ndarray
    genes_with_counts: np.ndarray

    @property
    def n_empty_cells(self) -> int:
        return int((~self.cells_with_counts).sum())

    @property
    def n_unseen_genes(self) -> int:
        return int((~self.genes_with_counts).sum())


def checked_counts(adata: ad.AnnData, layer: str | None = AUTO, source: str | None = None) -> InputCounts:
    """The raw counts of ``adata``, checked the same way for the pipeline and the Python API.

    ``layer``: ``"auto"`` reads ``layers['counts']`` when there is one, else ``X``; a layer's name
    reads that layer; ``None`` reads ``X``. Whichever is read must hold raw counts (finite,
    non-negative integers; every stored value is checked) or one ``ValueError`` names the first bad
    value and where to put the counts. ``source`` names the pipeline's input
    (``"input.path='P'"``); ``None`` is a Python caller's ``adata``. Duplicate cell or gene names
    are made unique with a warning; ``adata`` itself is not changed.
    """
    label = source or "adata"
    if layer is not None and layer != AUTO and layer not in adata.layers:
        raise KeyError(f"{label} has no layer {layer!r} (layers: {list(adata.layers)}); "
                       "name the layer that holds the raw counts with layer=, or layer=None for X")
    auto = layer == AUTO
    if auto:
        layer = COUNTS_LAYER if COUNTS_LAYER in adata.layers else None
    where = "X" if layer is None else f"layers[{layer!r}]"
    matrix = adata.X if layer is None else adata.layers[layer]
    bad = first_non_count(matrix)
    if bad is not None:
        row, column, value, n_bad = bad
        what = where if source else f"adata.{where}"
        lacking = " and there is no layers['counts'] with raw counts" if auto and layer is None else ""
        raise ValueError(
            f"{source + ': ' if source else ''}{what} is not raw counts ({n_bad} value(s) are not finite "
            f"non-negative integers, the first {value!r} at cell {adata.obs_names[row]!r}, gene "
            f"{adata.var_names[column]!r}){lacking}; {_PUT_COUNTS['pipeline' if source else 'api']}"
        )
    log.info("%s: raw counts read from %s", label, where)
    kept = ("the outputs carry the unique names" if source else
            "adata's names are left as they are and every layer is written row for row, column for column")
    counts = sp.csr_matrix(matrix, dtype=np.float32)
    return InputCounts(
        counts=counts, where=where,
        obs_names=unique_names(adata.obs_names, "cell", label, kept),
        var_names=unique_names(adata.var_names, "gene", label, kept),
        # Counts are non-negative: a positive sum is a count somewhere.
        cells_with_counts=np.asarray(counts.sum(axis=1)).ravel() > 0,
        genes_with_counts=np.asarray(counts.sum(axis=0)).ravel() > 0,
    )


def unique_names(names: pd.Index, what: str, label: str, kept: str) -> pd.Index:
    """``names`` made unique as ``AnnData.obs_names_make_unique`` does (``-1``, ``-2``, ... appended
    to the repeats), with a warning naming the duplicates and ``kept``, what becomes of the names;
    ``names`` itself when they are unique already."""
    if names.is_unique:
        return names
    duplicated = names[names.duplicated()].unique()
    log.warning("%s has %d duplicate %s names (e.g. %s): the repeats are told apart as %r, %r, ...; %s",
                label, len(duplicated), what, list(duplicated[:3]), f"{duplicated[0]}-1", f"{duplicated[0]}-2",
                kept)
    return ad.utils.make_index_unique(pd.Index(names).astype(str))


def load_input(input_params: InputParams | dict) -> ad.AnnData:
    """Load the counts chosen by ``input.path`` and check ``input.label_key``."""
    params = parse("input", input_params)
    path = params.path.strip()
    if path == "" or path == EMBEDDED:
        adata = pbmc68k_counts()
        default_label = "bulk_labels"
    elif path == SIMULATED:
        from scgapfill.data.simulate import simulate

        adata = simulate(params.simulation)
        default_label = "group"
    else:
        adata = read_counts_file(path)
        # A file may name its own label column (the prepared real data sets do: scgapfill.data.real_data).
        default_label = str(adata.uns.get("label_key") or "") or None
    check_not_empty(adata.n_obs, adata.n_vars, path or EMBEDDED)
    found = checked_counts(adata, AUTO, f"input.path={path or EMBEDDED!r}")
    adata.X = found.counts
    adata.obs_names, adata.var_names = found.obs_names, found.var_names

    label_key = params.label_key or default_label
    if label_key is not None and label_key not in adata.obs:
        raise KeyError(
            f"input.label_key={label_key!r} is not a column of obs in {path or EMBEDDED}; "
            f"available columns: {list(adata.obs.columns)} (or leave label_key empty)"
        )
    adata.uns["label_key"] = label_key or ""
    log.info("Input %s: %d cells x %d genes, labels: %s", path or EMBEDDED, adata.n_obs, adata.n_vars, label_key)
    return adata


def counts_of(adata: ad.AnnData, layer: str | None = AUTO) -> tuple[sp.csr_matrix, list[str]]:
    """The raw counts :func:`~scgapfill.data.io.checked_counts` finds in ``adata`` (``layer``: ``"auto"``,
    a layer's name, or None for ``X``) and the gene names, made unique."""
    found = checked_counts(adata, layer)
    return found.counts, [str(g) for g in found.var_names]
