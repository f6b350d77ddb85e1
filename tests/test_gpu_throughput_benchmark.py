"""Smoke test of benchmarks/gpu_throughput.py on the CPU: the script a GPU session runs once must run.

Tiny sizes, two variants; checks the table's rows, that the rates are positive and the validation
losses finite, and which rows time the imputation (never a timing's value).
"""

from __future__ import annotations

import math
from pathlib import Path



def test_gpu_throughput_script_runs_on_the_cpu(tmp_path: Path, run_script) -> None:
    proc = run_script("gpu_throughput.py", "--cells", "600", "--genes", "200", "--batch-sizes", "16", "32",
                         "--steps", "6", "--workers", "0", "--variants", "channels-last", "contiguous", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("machine:") and "device cpu" in lines[0]
    assert "600 cells x 200 genes" in proc.stdout
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines
            if line.startswith("| channels-last |") or line.startswith("| contiguous |")]
    assert [(row[0], row[1]) for row in rows] == [
        ("channels-last", "16"), ("contiguous", "16"), ("channels-last", "32"), ("contiguous", "32")]
    for row in rows:
        assert row[2] == "32-true"
        assert float(row[3]) > 0 and float(row[4]) > 0 and math.isfinite(float(row[7]))
    # Imputation is timed at the first batch size only; the layouts train the same network alike.
    assert [math.isnan(float(row[5])) for row in rows] == [False, False, True, True]
    assert abs(float(rows[0][7]) - float(rows[1][7])) < 1e-3
