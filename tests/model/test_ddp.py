"""Two-process DDP training on CPU (gloo) in a subprocess: one bundle comes back, and it loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scgapfill.nn.bundle import GapFillBundle

SCRIPT = Path(__file__).with_name("ddp_script.py")
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.ddp
# ddp_spawn / ddp_fork: the safe choices inside Kedro; ddp: Lightning relaunches this script for rank 1,
# whose fit_gapfill returns None, so still exactly one bundle.
@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork", "ddp"])
def test_two_process_training_writes_exactly_one_bundle(tmp_path, strategy):
    env = dict(os.environ)
    # The package may be installed or not: make src/ importable in the child either way.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")  # two ranks on two cores: no thread oversubscription
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), strategy],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    bundles = sorted(tmp_path.glob("*.pt"))
    assert len(bundles) == 1, f"expected one bundle, found {[b.name for b in bundles]}"
    bundle = GapFillBundle.load(bundles[0])
    assert len(bundle.history) == 2
    assert bundle.info["strategy"] == strategy
    assert bundle.state_dict
