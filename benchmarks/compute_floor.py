"""The least time the U-Net's arithmetic takes on this machine: a floor under any speed-up of the code.

    python benchmarks/compute_floor.py [--grid 48 48] [--train-cells 32000] [--val-cells 16384] \\
        [--impute-cells 50000] [--reference-seconds 75] [--matmul-size 4096]

Counts the network's floating-point operations per cell with ``torch.utils.flop_counter`` (the
convolutions; forward for a validation or imputed cell, forward and backward for a training cell) at
the default ``model`` parameters, measures the machine's float32 rate on a 4,096 x 4,096 matrix product
(the densest work a CPU does; a convolution of these sizes runs below it), and measures the network's own
rate on a training step of ``train.batch_size`` cells. It prints both per-cell costs, both rates, and the
seconds the given work takes at each rate: training cells (``train.max_steps`` x ``train.batch_size``),
validation cells (every epoch's validation) and imputed cells. The defaults are the cosine step budget of
docs/performance.md at 50,000 cells (2,000 steps of 16 cells, 4,096 per epoch, 8 epochs of 2,048
validation cells). ``--reference-seconds`` (another method's measured time, e.g. MAGIC's in
benchmarks/scale.py) adds the ratio of each floor to it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
from _common import machine_line  # noqa: E402


def network_flops(grid: tuple[int, int], batch_size: int) -> tuple[float, float]:
    """FLOPs per cell of the default network on ``grid``: (forward, forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    net, inputs = _network(grid, batch_size)
    with FlopCounterMode(display=False) as forward:
        net(inputs)
    with FlopCounterMode(display=False) as step:
        net(inputs).sum().backward()
    return forward.get_total_flops() / batch_size, step.get_total_flops() / batch_size


def _network(grid: tuple[int, int], batch_size: int) -> tuple[torch.nn.Module, torch.Tensor]:
    from scgapfill.nn import build_unet
    from scgapfill.params import ModelParams

    params = ModelParams()
    net = build_unet(params)
    inputs = torch.rand(batch_size, net.in_channels, *grid)
    if params.channels_last:
        net, inputs = net.to(memory_format=torch.channels_last), inputs.to(memory_format=torch.channels_last)
    return net, inputs


def matmul_rate(size: int = 4096, repeats: int = 5) -> float:
    """float32 FLOP/s of the median of ``repeats`` products of two ``size`` x ``size`` matrices."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    a @ b  # warm-up: thread pool, page faults
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / sorted(times)[len(times) // 2]


def training_step_rate(grid: tuple[int, int], batch_size: int, step_flops: float, repeats: int = 10) -> float:
    """FLOP/s the network reaches on forward + backward of one batch (median of ``repeats``), no optimiser."""
    net, inputs = _network(grid, batch_size)
    net.train()
    net(inputs).sum().backward()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        net(inputs).sum().backward()
        times.append(time.perf_counter() - start)
    return step_flops * batch_size / sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=int, nargs=2, default=[48, 48])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-cells", type=int, default=2000 * 16)
    parser.add_argument("--val-cells", type=int, default=8 * 2048)
    parser.add_argument("--impute-cells", type=int, default=50_000)
    parser.add_argument("--reference-seconds", type=float, default=None)
    parser.add_argument("--matmul-size", type=int, default=4096)
    args = parser.parse_args(argv)
    grid = tuple(args.grid)

    forward, step = network_flops(grid, args.batch_size)
    peak = matmul_rate(args.matmul_size)
    achieved = training_step_rate(grid, args.batch_size, step)
    work = args.train_cells * step + (args.val_cells + args.impute_cells) * forward
    print(machine_line(torch=True))
    print(f"network: default model parameters on a {grid[0]}x{grid[1]} grid; {forward / 1e6:.0f} MFLOP per cell "
          f"forward, {step / 1e6:.0f} MFLOP per training cell (forward + backward)")
    print(f"work: {args.train_cells:,} training cells, {args.val_cells:,} validation cells, "
          f"{args.impute_cells:,} imputed cells: {work / 1e12:.1f} TFLOP\n")
    print("| rate | GFLOP/s | seconds for the work | x reference |")
    print("|---|---|---|---|")
    for name, rate in ((f"float32 matrix product, {args.matmul_size} x {args.matmul_size} (the machine's best)", peak),
                       (f"the network's training step, batch {args.batch_size}", achieved)):
        seconds = work / rate
        ratio = f"{seconds / args.reference_seconds:.3g}" if args.reference_seconds else "–"
        print(f"| {name} | {rate / 1e9:.1f} | {seconds:.4g} | {ratio} |")


if __name__ == "__main__":
    main()
