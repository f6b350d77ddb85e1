"""Smoke test of benchmarks/reference_quality.py: one tiny simulation, the graph over every cell and one reference.

Only the shape of the output and finite quality figures are checked, never timings or which graph wins.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "reference_quality.py"


def test_reference_quality_tiny_run(tmp_path: Path) -> None:
    out = tmp_path / "reference.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(SCRIPT), "--cells", "500", "--genes", "200", "--references", "200", "100000",
               "--set", "train.max_epochs=1", "train.num_threads=1", "qc.min_genes=10",
               "--out", str(out), "--tmpdir", str(tmp_path)]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]

    runs = pd.read_csv(out)
    # A reference larger than the data is no reference: that size is left out.
    assert list(runs["graph"]) == ["every cell", "reference"]
    assert list(runs["reference_cells"]) == [runs["cells"][0], 200]
    for column in ("heldout_pearson", "heldout_gene_pearson_median", "truth_mean_rmse"):
        assert all(math.isfinite(value) for value in runs[column]), (column, list(runs[column]))
    assert "| cell graph | reference cells |" in proc.stdout
