"""Training launched by torchrun outside Kedro: two CPU ranks (gloo), one bundle written by rank 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from scgapfill.glue.distributed import main
from scgapfill.nn.bundle import GapFillBundle

from ddp_script import torchrun_distributed  # tests/model is on sys.path (pytest rootdir import mode)


ROOT = Path(__file__).resolve().parents[2]
TINY = ["model.depth=1", "model.base_channels=4", "model.context_k=3", "model.context_n_pcs=4",
        "train.max_epochs=2", "train.patience=2", "train.batch_size=8", "train.accelerator=cpu",
        "train.enable_progress_bar=false", "train.checkpoint_dir=''"]


@pytest.mark.ddp
def test_torchrun_two_ranks_write_one_loadable_bundle(counts_file, tmp_path):
    out = tmp_path / "model.pt"
    result = torchrun_distributed([str(counts_file), str(out), "--conf", str(ROOT / "conf" / "base"),
                                   "--set", *TINY, "train.devices=2"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote ") == 1  # rank 0 alone
    bundle = GapFillBundle.load(out)
    assert bundle.info["strategy"] == "ddp" and len(bundle.history) == 2
    assert [p.name for p in tmp_path.glob("*.pt")] == ["model.pt"]


def test_spawning_strategies_are_refused_under_a_launcher(counts_file, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(counts_file), str(tmp_path / "m.pt"), "--conf", str(ROOT / "conf" / "base"),
              "--set", "train.strategy=ddp_spawn"])
    assert "use ddp" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_a_malformed_override_names_the_fix(counts_file, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(counts_file), str(tmp_path / "m.pt"), "--set", "devices4"])
    assert "section.key=value" in capsys.readouterr().err
