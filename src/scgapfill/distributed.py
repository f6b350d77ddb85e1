"""Training on several GPUs or nodes, outside Kedro: one process per device, launched by torchrun or SLURM.

One node, 4 GPUs::

    torchrun --standalone --nproc_per_node=4 -m scgapfill.distributed \\
        data/03_primary/processed.h5ad model.pt --set train.devices=4

Two nodes of 4 GPUs under SLURM (``#SBATCH --nodes=2 --ntasks-per-node=4 --gpus-per-node=4``)::

    srun python -m scgapfill.distributed data/03_primary/processed.h5ad model.pt \\
        --set train.devices=4 train.num_nodes=2

Lightning reads the launcher's environment (torchrun's ``RANK``/``WORLD_SIZE``, SLURM's
``SLURM_PROCID``/``SLURM_NTASKS``) and joins the processes with plain ``ddp``; nothing is relaunched.
Every rank reads the counts and computes the same gene layout and neighbour context (each cell's
context spans all cells, so no rank can do with only its own), then trains on its own shard of the
cells (Lightning's distributed sampler). The counts are held sparse, so a rank holds about the size
of the file's count matrix, not a dense cells x genes array. Rank 0 alone writes the model, a bundle
that ``inference.uri`` and :meth:`scgapfill.GapFill.load` read.

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
    parser.add_argument("counts", type=Path, help="an .h5ad with raw counts (layers['counts'] or X)")
    parser.add_argument("model", type=Path, help="where rank 0 writes the trained bundle (.pt)")
    parser.add_argument("--layer", default="counts", help="layer of raw counts; 'X' reads X (default: counts)")
    parser.add_argument("--conf", type=Path, default=CONF, help="folder of parameters*.yml (default: conf/base)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="parameter overrides, e.g. train.devices=4 train.num_nodes=2")
    args = parser.parse_args(argv)

    import anndata as ad

    from .model import GapFill
    from .params import ParameterError, dotted_overrides, merged, read_parameter_files

    try:
        params = merged(read_parameter_files(args.conf), dotted_overrides(args.set))
    except ParameterError as err:
        parser.error(str(err))
    train = dict(params.get("train", {}))
    strategy = str(train.get("strategy", "auto"))
    if strategy.startswith("ddp_"):
        # ddp_spawn/ddp_fork would start more processes under each one the launcher started.
        parser.error(f"train.strategy={strategy}: under torchrun or srun use ddp (or leave it auto)")
    train["strategy"] = "ddp" if strategy == "auto" else strategy
    adata = ad.read_h5ad(args.counts)
    layer = None if args.layer == "X" else args.layer
    gapfill = GapFill(params.get("model"), train, params.get("layout"), params.get("impute"))
    gapfill.fit(adata, layer=layer)
    if gapfill.is_fitted:  # rank 0 only
        gapfill.save(args.model)
        print(f"wrote {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
