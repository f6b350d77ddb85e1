"""Smoke test of benchmarks/anomaly.py: a tiny simulation with doublets, the score against Scrublet.

The rows and the table are checked, never timings or how well either detector does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "anomaly.py"


def test_anomaly_benchmark_tiny_run(tmp_path: Path, run_script) -> None:
    out = tmp_path / "runs.csv"
    settings = ["input.simulation.n_cells=300", "input.simulation.n_genes=200", "qc.min_genes=20",
                "hvg.n_top_genes=64", "train.max_epochs=1", "train.batch_size=32"]
    result = run_script("anomaly.py", "--datasets", "simulated", "--seeds", "0", "--doublet-fraction", "0.1",
                        "--out", out, "--set", *settings)
    runs = pd.read_csv(out)
    assert len(runs) == 1 and runs["n_doublets"].iloc[0] == round(0.1 * (runs["n_cells"].iloc[0] / 1.1))
    scores = runs[["auroc_gapfill", "auroc_scrublet", "auroc_total_counts", "flagged_doublets", "flagged_singlets"]]
    assert ((scores >= 0) & (scores <= 1)).all(axis=None)
    # doublets carry two cells' molecules: their depth alone finds them, which is why it is printed
    assert runs["auroc_total_counts"].iloc[0] > 0.8
    assert "| simulated | 1 |" in result.stdout and result.stdout.startswith("machine: ")
    assert np.isfinite(runs["seconds_gapfill"]).all()
    # the simulation has no mitochondrial genes: no damaged cells, their columns empty
    assert runs["n_damaged"].iloc[0] == 0 and runs["damaged_auroc_gapfill"].isna().all()


def test_damaged_cells_keep_their_mitochondrial_molecules_and_lose_two_thirds_of_the_rest() -> None:
    import importlib.util

    import scipy.sparse as sp

    spec = importlib.util.spec_from_file_location("anomaly_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    counts = sp.csr_matrix(np.full((100, 4), 300.0))
    out, damaged = module.with_damaged(counts, np.array([True, False, True, False]), 0.1, seed=0)
    assert out.shape == (110, 4) and damaged.sum() == 10 and damaged[-10:].all()
    added = out[-10:].toarray()
    assert (added[:, [0, 2]] == 300).all()
    assert np.allclose(added[:, [1, 3]].mean(), 100, rtol=0.1)
    _, none = module.with_damaged(counts, np.zeros(4, bool), 0.1, seed=0)
    assert not none.any()
