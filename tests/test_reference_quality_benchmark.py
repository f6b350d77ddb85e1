"""Smoke test of benchmarks/reference_quality.py: one tiny simulation, the graph over every cell and one reference.

Only the shape of the output and finite quality figures are checked, never timings or which graph wins.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd



def test_reference_quality_tiny_run(tmp_path: Path, run_script) -> None:
    out = tmp_path / "reference.csv"
    proc = run_script("reference_quality.py", "--cells", "500", "--genes", "200", "--references", "200", "100000",
                         "--set", "train.max_epochs=1", "train.num_threads=1", "qc.min_genes=10",
                         "--out", out, "--tmpdir", tmp_path, cwd=tmp_path, timeout=240)

    runs = pd.read_csv(out)
    # A reference larger than the data is no reference: that size is left out.
    assert list(runs["graph"]) == ["every cell", "reference"]
    assert list(runs["reference_cells"]) == [runs["cells"][0], 200]
    for column in ("heldout_pearson", "heldout_gene_pearson_median", "truth_mean_rmse"):
        assert all(math.isfinite(value) for value in runs[column]), (column, list(runs[column]))
    assert "| cell graph | reference cells |" in proc.stdout
