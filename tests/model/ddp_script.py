"""Train on tiny data with 2 CPU processes (gloo) and save the bundle; launched by test_ddp.py.

Usage: python ddp_script.py OUT_DIR [STRATEGY]   (ddp_spawn (default), ddp_fork or ddp)

Every process that gets a bundle back from fit_gapfill saves it under its own
pid, so the test can count how many processes returned one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

SRC = Path(__file__).resolve().parents[2] / "src"


def torchrun_distributed(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m scgapfill.glue.distributed ARGS``: two gloo ranks, one thread each."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "scgapfill.glue.distributed", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def tiny_counts(n_cells: int = 64, n_genes: int = 36, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, size=n_cells)
    means = rng.gamma(0.8, 2.0, size=(2, n_genes))
    counts = rng.poisson(means[group]).astype(np.float64)
    counts[:, 0] += 1
    return sp.csr_matrix(counts)


def main() -> None:
    out_dir = Path(sys.argv[1])
    strategy = sys.argv[2] if len(sys.argv) > 2 else "ddp_spawn"
    from scgapfill.data.layout import compute_layout
    from scgapfill.params import ModelParams, TrainParams
    from scgapfill.train.fit import fit_gapfill

    counts = tiny_counts()
    genes = [f"g{i}" for i in range(counts.shape[1])]
    layout = compute_layout(counts, genes, "given", divisor=2)
    bundle = fit_gapfill(
        counts,
        layout,
        ModelParams(depth=1, base_channels=4, context_k=3, context_n_pcs=4),
        TrainParams(
            max_epochs=2,
            patience=2,
            batch_size=8,
            accelerator="cpu",
            devices=2,
            strategy=strategy,
            enable_progress_bar=False,
        ),
    )
    if bundle is not None:
        bundle.save(out_dir / f"bundle-{os.getpid()}.pt")


if __name__ == "__main__":
    main()
