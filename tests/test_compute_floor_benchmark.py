"""benchmarks/compute_floor.py: the network's FLOP count it rests on, and the script's table at a tiny size."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))


def test_flops_grow_with_the_grid_and_a_training_cell_costs_about_three_forward_passes() -> None:
    from compute_floor import network_flops

    small_forward, small_step = network_flops((8, 8), batch_size=2)
    large_forward, large_step = network_flops((16, 16), batch_size=2)
    # Convolutions only: their cost is per pixel, so four times the pixels is four times the FLOPs.
    assert large_forward == 4 * small_forward and large_step == 4 * small_step
    # Backward: the gradients of the weights and of each layer's input, less the first layer's input.
    assert 2.5 * small_forward < small_step <= 3 * small_forward


def test_compute_floor_prints_the_work_and_both_rates(tmp_path: Path, run_script) -> None:
    proc = run_script("compute_floor.py", "--grid", "8", "8", "--train-cells", "100", "--val-cells", "10",
                         "--impute-cells", "50", "--reference-seconds", "1", "--matmul-size", "256",
                         cwd=tmp_path, timeout=300)
    assert proc.stdout.startswith("machine:") and "8x8 grid" in proc.stdout and "100 training cells" in proc.stdout
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in proc.stdout.splitlines()
            if line.startswith("| float32") or line.startswith("| the network")]
    assert len(rows) == 2
    for _, rate, seconds, ratio in rows:
        assert float(rate) > 0 and float(seconds) > 0 and float(ratio) == pytest.approx(float(seconds), rel=1e-2)  # reference: 1 s
