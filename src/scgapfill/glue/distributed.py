"""Training on several GPUs or nodes, outside Kedro: one process per device, launched by torchrun or SLURM.

One node, 4 GPUs::

    torchrun --standalone --nproc_per_node=4 -m scgapfill.glue.distributed \\
        data/03_primary/processed.h5ad model.pt --set train.devices=4

Two nodes of 4 GPUs under SLURM (``#SBATCH --nodes=2 --ntasks-per-node=4 --gpus-per-node=4``)::

    srun python -m scgapfill.glue.distributed data/03_primary/processed.h5ad model.pt \\
        --set train.devices=4 train.num_nodes=2

Lightning reads the launcher's environment (torchrun's ``RANK``/``WORLD_SIZE``, SLURM's
``SLURM_PROCID``/``SLURM_NTASKS``) and joins the processes with plain ``ddp``; nothing is relaunched.
Given the counts, every rank reads them and computes the same gene layout and neighbour context (each
cell's context spans all cells, so no rank can do with only its own), then trains on its own shard of
the cells (Lightning's distributed sampler). The counts are held sparse, so a rank holds about the
size of the file's count matrix, not a dense cells x genes array.

Given ``--shards DIR`` instead, prepared once by ``python -m scgapfill.train.shards counts.h5ad DIR
--shards N`` (:mod:`scgapfill.train.shards`), each rank reads the metadata and only its own shard files
(rank ``r`` of ``W`` reads shards ``r, r+W, ...``; ``N`` must be a multiple of ``W``): its cells'
scaled values and precomputed context, never the whole matrix::

    torchrun --standalone --nproc_per_node=4 -m scgapfill.glue.distributed --shards shards/ model.pt \\
        --set train.devices=4

The parameters are then those saved with the shards, with ``--set`` ``train.*``/``impute.*`` laid over.

Either way rank 0 alone writes the model, a bundle that ``inference.uri`` and
:meth:`scgapfill.GapFill.load` read.

Inside ``kedro run`` use ``train.strategy=ddp_spawn`` (one node) instead: plain ``ddp`` there would
run the whole pipeline once per rank.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONF = Path("conf/base")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Two positionals, or one with --shards: argparse gives a lone path to ``model``.
    parser.add_argument("counts", type=Path, nargs="?", help="an .h5ad with raw counts (layers['counts'] or X)")
    parser.add_argument("model", type=Path, help="where rank 0 writes the trained bundle (.pt)")
    parser.add_argument("--shards", type=Path, metavar="SHARD_DIR",
                        help="train from shards prepared by python -m scgapfill.train.shards, instead of counts")
    parser.add_argument("--layer", default="counts", help="layer of raw counts; 'X' reads X (default: counts)")
    parser.add_argument("--conf", type=Path, help=f"folder of parameters*.yml (default: {CONF}; "
                        "not read with --shards, whose parameters were saved with them)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="parameter overrides, e.g. train.devices=4 train.num_nodes=2")
    args = parser.parse_args(argv)
    if (args.counts is None) == (args.shards is None):
        parser.error("give either COUNTS.h5ad MODEL.pt or --shards SHARD_DIR MODEL.pt")
    if args.shards is not None and args.conf is not None:
        parser.error("--conf: training from --shards uses the parameters saved with them; change training "
                     "settings with --set train.KEY=VALUE")

    from scgapfill.params import ParameterError, dotted_overrides, merged, read_parameter_files
    from scgapfill.train.shards import ShardError, read_metadata

    try:
        overrides = dotted_overrides(args.set)
        if args.shards is not None:
            from scgapfill.train.sharded import shard_parameters

            meta = read_metadata(args.shards)
            params = shard_parameters(meta, overrides)
        else:
            params = merged(read_parameter_files(args.conf or CONF), overrides)
    except (ParameterError, ShardError) as err:
        parser.error(str(err))
    train = dict(params.get("train", {}))
    strategy = str(train.get("strategy", "auto"))
    if strategy.startswith("ddp_"):
        # ddp_spawn/ddp_fork would start more processes under each one the launcher started.
        parser.error(f"train.strategy={strategy}: under torchrun or srun use ddp (or leave it auto)")
    train["strategy"] = "ddp" if strategy == "auto" else strategy
    if args.shards is not None:
        bundle = _fit_from_shards(parser, args.shards, meta, {**params, "train": train})
        if bundle is not None:  # rank 0 only
            bundle.save(args.model)
            print(f"wrote {args.model}")
        return 0

    import anndata as ad

    from scgapfill.model import GapFill

    adata = ad.read_h5ad(args.counts)
    layer = None if args.layer == "X" else args.layer
    gapfill = GapFill(params.get("model"), train, params.get("layout"), params.get("impute"))
    gapfill.fit(adata, layer=layer)
    if gapfill.is_fitted:  # rank 0 only
        gapfill.save(args.model)
        print(f"wrote {args.model}")
    return 0


def _fit_from_shards(parser: argparse.ArgumentParser, shard_dir: Path, meta: dict, params: dict):
    """This rank's training from its shards; a wrong rank count stops every rank before any reading."""
    from scgapfill.params import ParameterError, parse
    from scgapfill.train.shards import ShardError, rank_shards
    from scgapfill.train.sharded import check_world_size, fit_from_shards, launcher_rank

    rank, world_size = launcher_rank()
    try:
        check_world_size(parse("train", params["train"]), world_size)
        files = [meta["shards"][i]["file"] for i in rank_shards(len(meta["shards"]), rank, world_size)]
    except (ParameterError, ShardError) as err:
        parser.error(str(err))
    print(f"rank {rank} of {world_size} reads {' '.join(files)}", flush=True)
    return fit_from_shards(shard_dir, meta, params, rank, world_size)


if __name__ == "__main__":
    sys.exit(main())
