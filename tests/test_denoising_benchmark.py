"""Smoke test of benchmarks/denoising.py: a tiny simulation, both splits, no denoising, kNN and the U-Net.

The rows, the table and what the deliverable carries are checked, never timings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd



def test_denoising_benchmark_tiny_run(tmp_path: Path, run_script) -> None:
    out = tmp_path / "runs.csv"
    # 60 of the 300 genes modelled: the deliverable fills the rest from the neighbours.
    settings = ["input.simulation.n_cells=200", "input.simulation.n_genes=300", "qc.min_genes=20",
                "hvg.n_top_genes=60", "train.max_epochs=1", "train.batch_size=32"]
    result = run_script("denoising.py", "--datasets", "simulated", "--seeds", "0", "--methods", "unet", "knn",
                           "none", "--out", out, "--set", *settings)
    runs = pd.read_csv(out)
    assert sorted(runs["split"].unique()) == ["downsampled", "molecules"]
    # no denoising runs first on each split, so every row has the share of its MSE removed
    assert runs.groupby("split")["method"].first().eq("none").all()
    assert (runs.loc[runs["method"] == "none", "mse_removed"] == 0).all()
    assert np.isfinite(runs[["mse", "poisson", "mse_removed"]].to_numpy()).all()
    down = runs[runs["split"] == "downsampled"]
    assert np.isfinite(down[["gene_pearson", "ari"]].to_numpy()).all()
    # every gene that passed QC is scored, not only the 60 the U-Net models
    assert (runs["n_genes"] > 60).all()
    assert "### simulated, molecules" in result.stdout and "| unet |" in result.stdout
    assert result.stdout.count("machine: ") == 2
