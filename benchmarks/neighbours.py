"""Exact against approximate neighbour search at growing cell counts: where the cell graph switches.

Usage::

    python benchmarks/neighbours.py [--cells 10000 20000 50000 100000] [--dims 30] [--k 15]

Cells are drawn around 20 cluster centres in ``--dims`` dimensions (a PCA embedding's shape).
For each size the table gives the seconds of the exact search (scikit-learn) and of the
approximate one (pynndescent, as ``scgapfill.graph.cellgraph.nearest_neighbours`` runs it above
``EXACT_MAX_CELLS``), and the approximate search's recall of the exact neighbours. pynndescent
compiles its kernels on first use in every process: a warm-up on 2,000 cells runs before the
timings, and its seconds (the compilation, nearly all of it) are printed first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from _common import machine_line  # noqa: E402
from scgapfill.graph.cellgraph import EXACT_MAX_CELLS, nearest_neighbours  # noqa: E402


def clustered(n_cells: int, n_dims: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(20, n_dims))
    return (centres[rng.integers(20, size=n_cells)] + rng.normal(size=(n_cells, n_dims))).astype(np.float32)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[10_000, 20_000, 50_000, 100_000])
    parser.add_argument("--dims", type=int, default=30)
    parser.add_argument("--k", type=int, default=15)
    args = parser.parse_args(argv)

    _, compile_s = timed(lambda: nearest_neighbours(clustered(2_000, args.dims), args.k, exact_max_cells=0))
    print(machine_line(f"{args.dims} dims, k={args.k}; EXACT_MAX_CELLS={EXACT_MAX_CELLS}"))
    print(f"pynndescent's first search in this process (2,000 cells; compiles its kernels): {compile_s:.1f} s")
    print("| cells | exact s | approximate s | exact / approximate | recall |")
    print("|---|---|---|---|---|")
    for n_cells in args.cells:
        X = clustered(n_cells, args.dims)
        (exact, _), exact_s = timed(lambda: nearest_neighbours(X, args.k, exact_max_cells=n_cells))
        (approx, _), approx_s = timed(lambda: nearest_neighbours(X, args.k, exact_max_cells=0))
        recall = np.mean([np.intersect1d(a, e).size / e.size for a, e in zip(approx, exact)])
        print(f"| {n_cells} | {exact_s:.1f} | {approx_s:.1f} | {exact_s / approx_s:.2f} | {recall:.3f} |", flush=True)


if __name__ == "__main__":
    main()
