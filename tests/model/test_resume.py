"""Resuming a stopped training run from its last checkpoint (``train.checkpoint_dir``, ``train.resume``)."""

from __future__ import annotations

import lightning as L
import pytest

from scgapfill.train.fit import fit_gapfill
from scgapfill.train.resume import LAST_CHECKPOINT


class StopAfter(L.Callback):
    """Dies as a kill would, once the checkpoints of ``epoch`` are written (at the next epoch's start)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch + 1:
            raise RuntimeError("killed")


class EpochsRun(L.Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append(trainer.current_epoch)


@pytest.fixture
def params(train_params, tmp_path):
    return train_params.model_copy(update={"max_epochs": 4, "patience": 10, "checkpoint_dir": str(tmp_path / "ckpt")})


def stop_after_first_epoch(masked_counts, layout, model_params, params) -> None:
    with pytest.raises(RuntimeError, match="killed"):
        fit_gapfill(masked_counts, layout, model_params, params, callbacks=[StopAfter(0)])


def test_a_stopped_run_resumes_from_its_last_epoch(counts, layout, model_params, params, tmp_path):
    stop_after_first_epoch(counts, layout, model_params, params)
    assert len(list((tmp_path / "ckpt").glob(f"*/{LAST_CHECKPOINT}"))) == 1
    seen = EpochsRun()
    bundle = fit_gapfill(counts, layout, model_params, params, callbacks=[seen])
    assert seen.epochs == [1, 2, 3]  # the first epoch is not trained again
    assert bundle.history["epoch"].tolist() == [0, 1, 2, 3]  # its history carries over
    assert list((tmp_path / "ckpt").iterdir()) == []  # nothing left to resume once it has finished


def test_resume_never_starts_again(counts, layout, model_params, params):
    stop_after_first_epoch(counts, layout, model_params, params)
    seen = EpochsRun()
    fit_gapfill(counts, layout, model_params, params.model_copy(update={"resume": "never"}), callbacks=[seen])
    assert seen.epochs == [0, 1, 2, 3]


def test_other_data_or_parameters_do_not_resume(counts, layout, model_params, params):
    stop_after_first_epoch(counts, layout, model_params, params)
    for changed in (params.model_copy(update={"lr": params.lr / 2}),):
        seen = EpochsRun()
        fit_gapfill(counts, layout, model_params, changed, callbacks=[seen])
        assert seen.epochs == [0, 1, 2, 3]
    other = counts.copy()
    other.data = other.data + 1
    seen = EpochsRun()
    fit_gapfill(other, layout, model_params, params, callbacks=[seen])
    assert seen.epochs == [0, 1, 2, 3]
