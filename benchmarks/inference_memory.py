"""Peak memory and time of inference: the whole data set in memory against chunked (backed .h5ad).

    python benchmarks/inference_memory.py --cells 40000 --genes 1000 --chunk-size 10240

Trains a throw-away model for one epoch on a small simulation (the figures are about memory, not
quality), writes a larger simulation as .h5ad (block by block, without truth layers), then runs
each inference mode in a fresh process and prints a table with the machine, the data size, the
seconds and the peak RSS of that process.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine_line


def prepare(workdir: Path, cells: int, genes: int) -> None:
    train_throwaway_model(workdir, genes)
    write_new_data(workdir, cells, genes)


def train_throwaway_model(workdir: Path, genes: int, num_threads: int = 0) -> None:
    """``workdir/model.pt``: one epoch on 400 simulated cells, enough to have weights to run
    (``num_threads``: train.num_threads, 0 = auto)."""
    from scgapfill.model import GapFill
    from scgapfill.data.simulate import simulate

    small = simulate({"n_cells": 400, "n_genes": genes, "seed": 1})
    train = {"max_epochs": 1, "enable_progress_bar": False, "num_threads": num_threads}
    GapFill(train=train).fit(small, layer=None).save(workdir / "model.pt")


def write_new_data(workdir: Path, cells: int, genes: int, chunk_cells: int = 10000) -> Path:
    """``workdir/new.h5ad``: the simulation written block by block, without truth layers, so the
    writer's memory stays bounded at a million cells and the file holds only what inference reads."""
    from scgapfill.data.simulate import write_simulation

    return write_simulation(workdir / "new.h5ad", n_cells=cells, n_genes=genes, seed=2, chunk_cells=chunk_cells,
                            truth=False)


def run_mode(workdir: Path, mode: str, chunk_size: int, reference_cells: int | None = None) -> None:
    """One inference in this process; prints seconds and peak RSS."""
    from scgapfill.glue.datasets import AnnDataDataset
    from scgapfill.pipelines.inference.nodes import impute_new, load_aligned_counts, load_model

    start = time.perf_counter()
    model = load_model({"uri": str(workdir / "model.pt")}, {"fill_only_zeros": True, "batch_size": 256})
    chunk = chunk_size if mode == "chunked" else 0
    settings = {"chunk_size": chunk}
    if reference_cells is not None:  # otherwise conf/base's inference.reference_cells
        settings["reference_cells"] = reference_cells
    aligned, report = load_aligned_counts({"path": str(workdir / "new.h5ad")}, model, settings)
    result = impute_new(model, aligned, report, settings)
    if mode == "in-memory":
        result = result.to_memory()  # the dense layer built whole, as before chunking existed
    AnnDataDataset(filepath=str(workdir / f"out_{mode}.h5ad")).save(result)
    seconds = time.perf_counter() - start
    print(f"{seconds:.1f} {peak_rss_mb():.0f}")


def peak_rss_mb() -> float:
    """High-water RSS of this process image. getrusage's ru_maxrss survives exec on Linux, so a
    child forked from a large parent would report the parent's peak; VmHWM starts afresh."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=40000)
    parser.add_argument("--genes", type=int, default=1000)
    parser.add_argument("--chunk-size", type=int, default=10240)
    parser.add_argument("--reference-cells", type=int, default=None,
                        help="inference.reference_cells of the chunked mode (default: the parameter's default)")
    parser.add_argument("--_mode", help=argparse.SUPPRESS)
    parser.add_argument("--_workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._mode:
        run_mode(Path(args._workdir), args._mode, args.chunk_size, args.reference_cells)
        return
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        prepare(workdir, args.cells, args.genes)
        dense_mb = args.cells * args.genes * 4 / 2**20
        print(machine_line(torch=True))
        print(f"data: {args.cells} cells x {args.genes} genes (dense float32 result {dense_mb:.0f} MB), "
              f"input {(workdir / 'new.h5ad').stat().st_size / 2**20:.0f} MB on disk\n")
        print("| mode | chunk size | seconds | peak RSS (MB) |")
        print("|---|---|---|---|")
        for mode in ("in-memory", "chunked"):
            out = subprocess.run(
                [sys.executable, __file__, "--_mode", mode, "--_workdir", str(workdir),
                 "--chunk-size", str(args.chunk_size)],
                check=True, capture_output=True, text=True,
            ).stdout.split()
            chunk = args.chunk_size if mode == "chunked" else args.cells
            print(f"| {mode} | {chunk} | {out[-2]} | {out[-1]} |", flush=True)


if __name__ == "__main__":
    main()
