"""Training speed of the gap-filling U-Net on the embedded pbmc68k_reduced data set.

Usage::

    python benchmarks/train_speed.py [--epochs 5] [--batch-size 16] [--no-context]
        [--depth 2] [--base-channels 16] [--patience N] [--min-delta D]
        [--accelerator auto] [--threads N] [--precision P] [--contiguous]
        [--simulated-genes G] [--contention | --compare | --impute-batch-sizes B [B ...]]

Trains for a fixed number of epochs (early stopping effectively off unless
``--patience`` is given) and prints one table: machine, data size, grid,
seconds per epoch, cells per second and peak resident memory.

``--contention`` instead trains four times, with ``train.num_threads`` auto and 1, each alone and
beside one competing BLAS job (a numpy matmul loop in a subprocess), and prints cells/s for each:
torch's threads fight the other job's for the same cores.

``--compare`` trains once for each of 32-bit and bf16 mixed precision, each with the network
contiguous (NCHW) and channels-last (NHWC), and prints training cells/s (median epoch), imputation
cells/s and the best validation loss of each. ``--simulated-genes 2000`` uses the project's simulation
(3,000 cells, 2,000 genes: the 48x48 grid of real data) instead of pbmc68k_reduced.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def pbmc68k_counts() -> tuple[sp.csr_matrix, list[str]]:
    """Counts reconstructed from pbmc68k_reduced: ``round(expm1(raw.X) * n_counts / 1e4)``."""
    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced()
    raw = adata.raw.X.toarray() if sp.issparse(adata.raw.X) else np.asarray(adata.raw.X)
    counts = np.rint(np.expm1(raw) * adata.obs["n_counts"].to_numpy()[:, None] / 1e4)
    matrix = sp.csr_matrix(counts)
    matrix.eliminate_zeros()
    return matrix, [str(g) for g in adata.raw.var_names]


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# One BLAS job of the kind that shares a machine with training (MAGIC, PCA): numpy's default threads.
BLAS_JOB = "import numpy as np\na = np.random.default_rng(0).random((1500, 1500))\nwhile True:\n    a @ a"


@contextmanager
def competing_blas_job(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    job = subprocess.Popen([sys.executable, "-c", BLAS_JOB])
    try:
        time.sleep(2)  # numpy imported and multiplying before training starts
        yield
    finally:
        job.terminate()
        job.wait()


def median_cells_per_s(bundle) -> float:
    # The median epoch: the first one carries Lightning's and torch's warm-up.
    return bundle.info["n_train_cells"] / float(np.median(bundle.info["epoch_seconds"]))


def print_machine(machine_rows: list[tuple[str, str]]) -> None:
    for name, value in machine_rows:
        print(f"{name}: {value}")


def contention(counts, layout, model, train, machine_rows: list[tuple[str, str]]) -> None:
    """cells/s with num_threads auto and 1, alone and beside one BLAS job; one table."""
    from scgapfill.train.fit import fit_gapfill
    from scgapfill.train.trainer import resolve_num_threads

    results = []
    for threads in (0, 1):
        for busy in (False, True):
            with competing_blas_job(busy):
                bundle = fit_gapfill(counts, layout, model, train.model_copy(update={"num_threads": threads}))
            label = f"auto ({resolve_num_threads(0)})" if threads == 0 else str(threads)
            results.append((label, "yes" if busy else "no", median_cells_per_s(bundle),
                            float(np.median(bundle.info["epoch_seconds"]))))
    print_machine(machine_rows)
    print("\n| num_threads | beside one BLAS job | cells/s (median epoch) | s/epoch |\n|---|---|---|---|")
    for label, busy, cells_per_s, seconds in results:
        print(f"| {label} | {busy} | {cells_per_s:.0f} | {seconds:.2f} |")


def simulated_counts(n_genes: int) -> tuple[sp.csr_matrix, list[str]]:
    from scgapfill.data.simulate import simulate

    adata = simulate(n_cells=3000, n_genes=n_genes, truth=False)
    return sp.csr_matrix(adata.X), [str(g) for g in adata.var_names]


def imputation_cells_per_s(bundle, counts, repeats: int = 3, batch_size: int = 64) -> float:
    """Cells/s of the network's pass alone: no output smoothing (its neighbour search is not the network)."""
    from scgapfill.infer.imputation import impute_counts

    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        impute_counts(bundle, counts, {"output_smoothing": 0.0, "batch_size": batch_size})
        seconds.append(time.perf_counter() - start)
    return counts.shape[0] / float(np.median(seconds))


def compare(counts, layout, model, train, machine_rows: list[tuple[str, str]]) -> None:
    """Training and imputation cells/s for 32-bit / bf16 x contiguous / channels-last; one table."""
    from scgapfill.train.fit import fit_gapfill

    results = []
    for precision in ("32-true", "bf16-mixed"):
        for channels_last in (False, True):
            bundle = fit_gapfill(counts, layout, model.model_copy(update={"channels_last": channels_last}),
                                 train.model_copy(update={"precision": precision}))
            results.append((precision, "channels-last" if channels_last else "contiguous",
                            median_cells_per_s(bundle), imputation_cells_per_s(bundle, counts),
                            bundle.info["best_val_loss"]))
    print_machine(machine_rows)
    print("\n| precision | layout | training cells/s (median epoch) | imputation cells/s (median of 3) "
          "| best val_loss |\n|---|---|---|---|---|")
    for precision, layout_name, train_rate, impute_rate, val_loss in results:
        print(f"| {precision} | {layout_name} | {train_rate:.0f} | {impute_rate:.0f} | {val_loss:.5f} |")


def impute_batches(bundle, counts, batch_sizes: list[int], machine_rows: list[tuple[str, str]]) -> None:
    """Imputation cells/s for each batch size, twice in turn (A B A B: the machine drifts)."""
    rates: dict[int, list[float]] = {b: [] for b in batch_sizes}
    for _ in range(2):
        for batch_size in batch_sizes:
            rates[batch_size].append(imputation_cells_per_s(bundle, counts, batch_size=batch_size))
    print_machine(machine_rows)
    print("\n| impute.batch_size | imputation cells/s (median of 3, two rounds) |\n|---|---|")
    for batch_size, values in rates.items():
        print(f"| {batch_size} | {' / '.join(f'{v:.0f}' for v in values)} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--no-context", action="store_true")
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: off)")
    parser.add_argument("--min-delta", type=float, default=0.0, help="early-stopping min_delta")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--threads", type=int, default=0,
                        help="train.num_threads: torch intra-op threads while training (default 0: auto)")
    parser.add_argument("--precision", default=None, help="train.precision (default: bf16-mixed on a GPU, 32-true on CPU)")
    parser.add_argument("--contiguous", action="store_true", help="model.channels_last: false")
    parser.add_argument("--simulated-genes", type=int, default=0,
                        help="the project's simulation, 3,000 cells x this many genes, instead of pbmc68k_reduced")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--contention", action="store_true",
                      help="cells/s with threads auto and 1, alone and beside one BLAS job")
    mode.add_argument("--compare", action="store_true",
                      help="cells/s for 32-bit and bf16, each contiguous and channels-last")
    mode.add_argument("--impute-batch-sizes", type=int, nargs="+", default=None,
                      help="train once, then imputation cells/s for each impute.batch_size")
    args = parser.parse_args(argv)

    import torch

    from scgapfill.data.layout import compute_layout
    from scgapfill.data.normalization import lognorm, size_factors
    from scgapfill.params import ModelParams, TrainParams
    from scgapfill.train.fit import fit_gapfill
    from scgapfill.train.trainer import resolve_precision, uses_cuda

    counts, genes = simulated_counts(args.simulated_genes) if args.simulated_genes else pbmc68k_counts()
    data_name = f"simulation (3000 x {args.simulated_genes})" if args.simulated_genes else "pbmc68k_reduced"
    start = time.perf_counter()
    layout = compute_layout(lognorm(counts, size_factors(counts)), genes, "correlation", divisor=2**args.depth)
    layout_s = time.perf_counter() - start
    model = ModelParams(depth=args.depth, base_channels=args.base_channels, context_channel=not args.no_context,
                        channels_last=not args.contiguous)
    train = TrainParams(
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience or args.epochs + 1,
        min_delta=args.min_delta,
        accelerator=args.accelerator,
        enable_progress_bar=False,
        num_threads=args.threads,
        precision=args.precision,
    )
    device = torch.cuda.get_device_name(0) if uses_cuda(args.accelerator) else "cpu"
    machine = [
        ("machine", f"{platform.platform()} ({platform.machine()})"),
        ("CPU count", f"{os.cpu_count()} ({len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}"
                      " usable)"),
        ("torch", torch.__version__),
        ("device", f"{device}, precision {resolve_precision(train)}"),
        ("data", f"{data_name}, {counts.shape[0]} cells x {counts.shape[1]} genes, grid "
                 + "x".join(map(str, layout["shape"])) + f", batch {args.batch_size}, {args.epochs} epochs per fit"),
    ]
    if args.contention:
        contention(counts, layout, model, train, machine)
        return
    if args.compare:
        compare(counts, layout, model, train, machine)
        return
    if args.impute_batch_sizes:
        impute_batches(fit_gapfill(counts, layout, model, train), counts, args.impute_batch_sizes, machine)
        return
    start = time.perf_counter()
    bundle = fit_gapfill(counts, layout, model, train)
    total_s = time.perf_counter() - start

    epoch_s = bundle.info["epoch_seconds"]
    rows = [
        ("machine", f"{platform.platform()} ({platform.machine()})"),
        ("CPU count", str(os.cpu_count())),
        ("torch", f"{torch.__version__} (threads {bundle.info['num_threads']})"),
        ("device", f"{device}, precision {resolve_precision(train)}"),
        ("cells", f"{counts.shape[0]} ({bundle.info['n_train_cells']} train / {bundle.info['n_val_cells']} val)"),
        ("genes", str(counts.shape[1])),
        ("grid", "x".join(map(str, layout["shape"])) + f" (correlation layout, {layout_s:.1f} s)"),
        ("model", f"depth {args.depth}, base {args.base_channels}, context {not args.no_context}, "
                  f"batch {args.batch_size}, {'contiguous' if args.contiguous else 'channels-last'}"),
        ("epochs", f"{len(bundle.history)} (max {args.epochs}, patience {train.patience}, "
                   f"min_delta {train.min_delta})"),
        ("seconds/epoch", f"{bundle.seconds_per_epoch:.2f} mean, "
                          f"{np.median(epoch_s):.2f} median, {epoch_s[0]:.2f} first"),
        ("cells/s", f"{bundle.cells_per_s:.0f} (training cells per epoch second)"),
        ("fit_gapfill total", f"{total_s:.1f} s (incl. lognorm, PCA/kNN context, Trainer setup)"),
        ("best epoch / val_loss", f"{bundle.best_epoch} / {bundle.info['best_val_loss']:.5f}"),
        ("peak RSS", f"{peak_rss_mib():.0f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'what':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    print("\nval_loss per epoch:", ", ".join(f"{v:.5f}" for v in bundle.history["val_loss"]))


if __name__ == "__main__":
    main()
