"""Cells dealt once into shard files, so that each training rank reads only its own.

Prepare on one machine (it reads the whole count matrix once, held sparse)::

    python -m scgapfill.train.shards data/03_primary/processed.h5ad shards/ --shards 8

then train with one process per device, each reading the metadata and only its shards::

    torchrun --standalone --nproc_per_node=8 -m scgapfill.glue.distributed --shards shards/ model.pt \\
        --set train.devices=8

The preparation computes everything that needs all the cells exactly as :meth:`GapFill.fit
<scgapfill.GapFill.fit>` does: the gene layout, the size factors, the log-normalisation, the
training/validation split, the per-gene scaler and the neighbour context, a walk over every cell's
neighbours among all cells, which is why no rank could compute its cells' context from its shard
alone. The context is computed a chunk of cells at a time (:class:`~scgapfill.train.data.ContextRows`),
so no dense cells x genes array of the whole data is held. Each shard file (``shard_00000.h5ad``, ...)
holds its cells' scaled values (``X``, CSR), their context (``layers["context"]``, dense float32), size
factors, which are validation cells, and their row in the input (``obs["cell"]``); ``shards.json``
holds the layout, the scaler, the parameters and the shard sizes. Cells are dealt at random (seeded
by ``train.seed``), training and validation cells separately, so every shard has both.

Every file is written to a temporary beside it and renamed, and ``shards.json`` is written last:
a folder without it is an unfinished preparation, which training refuses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from scgapfill.data.atomic import atomic_path

META_FILE = "shards.json"
FORMAT = "scgapfill.train.shards"
FORMAT_VERSION = 1
# Cells whose context is computed at once: bounds the dense work to this many rows.
CONTEXT_CHUNK_CELLS = 4096
# Parameters the preparation has used up: training from the shards cannot change them.
FIXED_TRAIN_KEYS = ("seed", "val_fraction", "max_val_cells")
CONF = Path("conf/base")


class ShardError(ValueError):
    """Shards that cannot be prepared or trained from; the message names the problem and the fix."""


def shard_file(index: int) -> str:
    return f"shard_{index:05d}.h5ad"


def deal_cells(train_cells: np.ndarray, val_cells: np.ndarray, n_shards: int, seed: int) -> list[np.ndarray]:
    """The sorted input rows of each shard: training and validation cells each dealt at random, evenly.

    Dealing the two kinds apart gives every shard at least one of each (given ``n_shards`` of
    each), and shard sizes that differ by at most one cell of each kind.
    """
    rng = np.random.default_rng([seed, n_shards])
    parts = [np.array_split(rng.permutation(cells), n_shards) for cells in (train_cells, val_cells)]
    return [np.sort(np.concatenate([train, val])) for train, val in zip(*parts)]


def check_shard_count(n_shards: int, n_train: int, n_val: int) -> None:
    if n_shards < 1:
        raise ShardError(f"--shards {n_shards}: give at least 1 shard")
    if n_shards > min(n_train, n_val):
        raise ShardError(
            f"--shards {n_shards}: more shards than the {n_val} validation (and {n_train} training) cells, "
            "so a shard would lack one kind; give fewer shards or raise train.val_fraction / train.max_val_cells"
        )


def _existing_shards(shard_dir: Path) -> None:
    if (shard_dir / META_FILE).exists():
        raise ShardError(
            f"{shard_dir} already holds prepared shards ({META_FILE}); give an empty folder or remove them"
        )
    leftovers = sorted(shard_dir.glob("shard_*.h5ad"))
    if leftovers:
        raise ShardError(
            f"{shard_dir} already holds shard files ({leftovers[0].name}, ...) of an unfinished preparation; "
            "give an empty folder or remove them"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def prepare_shards(counts: Any, genes: list[str], shard_dir: str | Path, n_shards: int,
                   params: dict | None = None) -> dict:
    """Write ``n_shards`` shard files and ``shards.json`` into ``shard_dir``; return the metadata.

    ``counts`` are the raw counts (cells x ``genes``), ``params`` the parameter sections
    (``model``, ``train``, ``layout``, ``impute``; missing ones take the defaults).
    """
    import anndata as ad
    import pandas as pd

    from scgapfill.data.layout import laid_out
    from scgapfill.params import parse
    from scgapfill.train.fit import check_layout, split_cells, training_data
    from scgapfill.train.data import as_counts_matrix
    from scgapfill.graph.cellgraph import counts_digest
    from scgapfill.train.resume import run_fingerprint

    params = params or {}
    shard_dir = Path(shard_dir)
    _existing_shards(shard_dir)
    model_params, train_params = parse("model", params.get("model")), parse("train", params.get("train"))
    layout_params, impute_params = parse("layout", params.get("layout")), parse("impute", params.get("impute"))
    n_cells = counts.shape[0]
    # The split is cheap: refuse a wrong shard count before the layout and the neighbour search.
    n_train, n_val = (len(part) for part in split_cells(n_cells, train_params.val_fraction, train_params.seed,
                                                           train_params.max_val_cells))
    check_shard_count(n_shards, n_train, n_val)

    # The same steps, in the same order, as GapFill.fit -> fit_gapfill on a new model.
    counts, layout = laid_out(sp.csr_matrix(counts), genes, layout_params, model_params.depth)
    counts = as_counts_matrix(counts, "prepare_shards")
    check_layout(counts, layout, model_params)
    digest = counts_digest(counts)  # hashed once for the run's fingerprint and the graph's key
    data = training_data(counts, model_params, train_params, digest=digest)
    is_val = np.zeros(n_cells, dtype=bool)
    is_val[data.val_cells] = True
    gene_names = [str(g) for g in layout["genes"]]
    fingerprint = run_fingerprint(counts, layout, model_params, train_params, digest)

    shards = []
    for index, cells in enumerate(deal_cells(data.train_cells, data.val_cells, n_shards, train_params.seed)):
        shard = ad.AnnData(
            X=data.scaled[cells],
            obs=pd.DataFrame({"cell": cells.astype(np.int64), "size_factor": data.cell_sizes[cells],
                              "validation": is_val[cells]}, index=[str(c) for c in cells]),
            var=pd.DataFrame(index=gene_names),
            # Tells training which preparation and place the file belongs to, should files be mixed up.
            uns={"fingerprint": fingerprint, "shard": index},
        )
        if data.context is not None:
            shard.layers["context"] = _context_rows(data.context, cells, len(gene_names))
        name = shard_file(index)
        with atomic_path(shard_dir / name, ".h5ad") as tmp:
            shard.write_h5ad(tmp)
        shards.append({"file": name, "n_cells": int(cells.size), "n_train": int((~is_val[cells]).sum()),
                       "n_val": int(is_val[cells].sum())})

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "n_cells": int(n_cells),
        "n_genes": len(gene_names),
        "n_train_cells": int(len(data.train_cells)),
        "n_val_cells": int(len(data.val_cells)),
        "layout": _jsonable(dict(layout)),
        "scaler": data.scaler.to_dict(),
        "params": {"model": model_params.model_dump(), "train": train_params.model_dump(),
                   "layout": layout_params.model_dump(), "impute": impute_params.model_dump()},
        "shards": shards,
    }
    # Last, and whole or absent: its presence is what says the shards are complete.
    with atomic_path(shard_dir / META_FILE, ".json") as tmp:
        tmp.write_text(json.dumps(_jsonable(meta), indent=1))
    return meta


def _context_rows(context: Any, cells: np.ndarray, n_genes: int) -> np.ndarray:
    """``context(cells)``, a chunk of cells at a time, into one float32 array of the shard's rows."""
    out = np.empty((cells.size, n_genes), dtype=np.float32)
    for start in range(0, cells.size, CONTEXT_CHUNK_CELLS):
        out[start : start + CONTEXT_CHUNK_CELLS] = context(cells[start : start + CONTEXT_CHUNK_CELLS])
    return out


def read_metadata(shard_dir: str | Path) -> dict:
    """``shards.json`` of a finished preparation."""
    path = Path(shard_dir) / META_FILE
    if not path.is_file():
        what = "holds no shards" if not list(Path(shard_dir).glob("shard_*.h5ad")) else \
            "holds an unfinished preparation"
        raise ShardError(f"{shard_dir} {what} (no {META_FILE}); prepare it with python -m scgapfill.train.shards "
                         f"COUNTS.h5ad {shard_dir} --shards N")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ShardError(f"{path} is not {FORMAT} version {FORMAT_VERSION}; prepare the shards again")
    return meta


def rank_shards(n_shards: int, rank: int, world_size: int) -> list[int]:
    """The shards rank ``rank`` of ``world_size`` reads: ``rank``, ``rank + world_size``, ..."""
    if world_size < 1 or n_shards % world_size:
        raise ShardError(
            f"{n_shards} shards cannot be shared evenly by {world_size} ranks; start a number of ranks that "
            f"divides {n_shards}, or prepare a multiple of {world_size} shards (--shards)"
        )
    return list(range(rank, n_shards, world_size))


def batch_limits(meta: dict, world_size: int, batch_size: int) -> tuple[int, int]:
    """The (training, validation) batches per epoch every rank has: the fewest of any rank."""
    per_rank = [[meta["shards"][i] for i in rank_shards(len(meta["shards"]), rank, world_size)]
                for rank in range(world_size)]
    train = min(-(-sum(s["n_train"] for s in shards) // batch_size) for shards in per_rank)
    val = min(-(-sum(s["n_val"] for s in shards) // batch_size) for shards in per_rank)
    return train, val


class ContextArray:
    """The precomputed context of a shard's cells: called like :class:`~scgapfill.train.data.ContextRows`
    with row indices, it returns those rows."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = np.ascontiguousarray(rows, dtype=np.float32)

    def __call__(self, cells: Any) -> np.ndarray:
        return self.rows[np.asarray(cells)]


def read_shards(shard_dir: str | Path, meta: dict, indices: list[int]) -> Any:
    """This rank's shards as one :class:`~scgapfill.train.fit.TrainingData` (rows in shard order).

    Each file must come from this preparation: its fingerprint is checked against ``shards.json``.
    """
    import anndata as ad

    from scgapfill.train.data import GeneScaler
    from scgapfill.train.fit import TrainingData

    parts = []
    for index in indices:
        path = Path(shard_dir) / meta["shards"][index]["file"]
        part = ad.read_h5ad(path)
        if str(part.uns.get("fingerprint")) != meta["fingerprint"] or int(part.uns.get("shard", -1)) != index:
            raise ShardError(f"{path} is not shard {index} of the preparation in {META_FILE}; prepare the shards "
                             "again into an empty folder")
        parts.append(part)
    scaled = sp.vstack([sp.csr_matrix(p.X, dtype=np.float32) for p in parts], format="csr")
    is_val = np.concatenate([p.obs["validation"].to_numpy(dtype=bool) for p in parts])
    context = None
    if meta["params"]["model"]["context_channel"]:
        context = ContextArray(np.concatenate([np.asarray(p.layers["context"]) for p in parts]))
    return TrainingData(
        scaled=scaled,
        context=context,
        cell_sizes=np.concatenate([p.obs["size_factor"].to_numpy(dtype=np.float64) for p in parts]),
        train_cells=np.flatnonzero(~is_val),
        val_cells=np.flatnonzero(is_val),
        scaler=GeneScaler.from_dict(meta["scaler"]),
        all_cells=(int(meta["n_train_cells"]), int(meta["n_val_cells"])),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("counts", type=Path, help="an .h5ad with raw counts (layers['counts'] or X)")
    parser.add_argument("shard_dir", type=Path, help="an empty (or new) folder for the shard files")
    parser.add_argument("--shards", type=int, required=True, metavar="N",
                        help="how many shard files (a multiple of the ranks that will train)")
    parser.add_argument("--layer", default="counts", help="layer of raw counts; 'X' reads X (default: counts)")
    parser.add_argument("--conf", type=Path, default=CONF, help="folder of parameters*.yml (default: conf/base)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="parameter overrides, e.g. train.seed=1 model.context_k=30")
    args = parser.parse_args(argv)

    import anndata as ad

    from scgapfill.data.io import counts_of
    from scgapfill.params import ParameterError, dotted_overrides, merged, read_parameter_files

    try:
        params = merged(read_parameter_files(args.conf), dotted_overrides(args.set))
        if args.shard_dir.exists():
            _existing_shards(args.shard_dir)  # before reading what may be a large file
        counts, genes = counts_of(ad.read_h5ad(args.counts), None if args.layer == "X" else args.layer)
        meta = prepare_shards(counts, genes, args.shard_dir, args.shards, params)
    except (ParameterError, ShardError) as err:
        parser.error(str(err))
    print(f"wrote {len(meta['shards'])} shards of {meta['n_cells']} cells to {args.shard_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
