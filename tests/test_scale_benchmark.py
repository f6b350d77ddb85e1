"""Smoke test of benchmarks/scale.py: one tiny size, the U-Net and kNN, and one chunked inference.

Only the shape of the output and finite quality figures are checked, never timings.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

METHODS = ["unet", "knn"]
QUALITY = ["held-out r", "per-gene r", "per-gene r given depth", "truth-mean RMSE"]


def _table(stdout: str, first_header: str) -> pd.DataFrame:
    """The markdown table of ``stdout`` whose first column is ``first_header`` and whose rows follow it."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return pd.DataFrame(rows, columns=header)


def test_scale_benchmark_tiny_run(tmp_path: Path, run_script) -> None:
    out = tmp_path / "scale.csv"
    # 200 genes: QC's min_genes must come down for cells to pass it; one training thread keeps it quick.
    proc = run_script("scale.py", "--sizes", "300", "--genes", "200", "--baselines", "knn",
                         "--set", "train.max_epochs=1", "train.num_threads=1", "qc.min_genes=10",
                         "--inference-sizes", "400", "--out", out, "--tmpdir", tmp_path, cwd=tmp_path, timeout=240)

    table = _table(proc.stdout, "cells")
    assert list(table["method"]) == METHODS
    assert set(table["cells"]) == {"300"}
    assert {"seconds", "graph/context s", "training s", "smoothing s", "peak RSS (MB)", "× MAGIC", *QUALITY} <= set(
        table.columns)
    for column in QUALITY:
        assert all(math.isfinite(float(value)) for value in table[column]), (column, list(table[column]))
    # No MAGIC in this run: there is no time to divide by.
    assert set(table["× MAGIC"]) == {"–"}

    runs = pd.read_csv(out)
    assert len(runs) == 1 * len(METHODS)
    assert sorted(runs["method"]) == sorted(METHODS)
    assert runs[["heldout_pearson", "heldout_gene_pearson_median", "heldout_gene_pearson_given_depth",
                 "truth_mean_rmse"]].notna().all().all()

    inference = _table(proc.stdout, "cells | genes | chunk size")
    assert list(inference["cells"]) == ["400"]
    assert float(inference["peak RSS (MB)"].iloc[0]) > 0
    assert len(pd.read_csv(tmp_path / "scale_inference.csv")) == 1
    # Temporary data go in --tmpdir and are removed at the end.
    assert not list(tmp_path.glob("scgapfill-scale-*"))
