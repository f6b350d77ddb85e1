"""The LightningModule: dynamic training masks (or molecule splits) per batch, loss on what was hidden."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch

from scgapfill.data.masks import MOLECULE_MODES, sample_training_mask, split_training_molecules
from scgapfill.nn import build_unet, gapfill_loss, network_input
from scgapfill.train.data import GridScatter

if TYPE_CHECKING:
    from scgapfill.params import ModelParams, TrainParams

# Different streams for the training and validation masks, and per DDP rank.
_VAL_SEED_OFFSET = 1_000_003
_RANK_SEED_STRIDE = 7_919


class GapFillModule(L.LightningModule):
    """Trains a :class:`~scgapfill.nn.UNet` to restore entries hidden by a random mask.

    Parameters
    ----------
    model_params
        The network (:class:`~scgapfill.params.ModelParams`).
    train_params
        Training (:class:`~scgapfill.params.TrainParams`): lr, seed, lr_schedule, loss, training_mask.

    Notes
    -----
    Inputs are ``[masked values, observed, context?]`` (:func:`scgapfill.nn.network_input`).
    Masks are drawn over every valid entry, zeros included: masking only nonzeros
    teaches the network that every zero is a hidden nonzero, and it then fills
    true zeros too. The validation mask comes from a fixed seed, re-seeded every
    validation epoch, so ``val_loss`` is comparable across epochs.

    ``training_mask.mode: molecules`` hides molecules instead of entries (molecular
    cross-validation's split, Noise2Self's training): each cell's counts, recovered from its
    scaled values and size factor, are split binomially into input and target molecules
    (:func:`~scgapfill.data.masks.split_training_molecules`, the target a fraction in
    ``[min_rate, max_rate]`` per cell). The network sees the input part normalised at its own
    depth, as values are made from counts (``log1p(count / depth * 1e4) / gene_scale``, clipped
    to [0, 1]), with nothing hidden; the count terms of the loss score the target molecules on
    every valid entry, the prediction taken to the target's expected depth ``(1 - p) x`` the
    cell's. The neighbour context is left as made beforehand from the neighbours' full counts (the
    cell's own molecules are never in it). Imputation is unchanged: the network sees full counts.
    """

    def __init__(self, model_params: ModelParams, train_params: TrainParams, gene_scale: torch.Tensor | None = None,
                 layout: dict | None = None) -> None:
        super().__init__()
        # Plain dicts in the checkpoint: it is read back with weights_only loading.
        self.save_hyperparameters({"model_params": model_params.model_dump(),
                                   "train_params": train_params.model_dump()})
        self.model_params = model_params
        self.train_params = train_params
        self.use_context = model_params.context_channel
        self.net = build_unet(model_params)
        # Batches of gene rows (GeneCollate) become grids on the batch's device; grids pass as they are.
        self.to_grid = None if layout is None else GridScatter(layout)
        # (1, 1, H, W) per-gene scale of the sigmoid output, for the Poisson term; not part of the weights.
        self.register_buffer("gene_scale", gene_scale if gene_scale is not None else torch.ones(()), persistent=False)
        # Per-gene log inverse dispersion of the nb loss term: a training-only parameter, the
        # imputation uses the mean alone. Starts at theta = 10 (moderate over-dispersion).
        self.log_theta = None
        if train_params.loss.nb:
            self.log_theta = torch.nn.Parameter(torch.full(tuple(self.gene_scale.shape), float(np.log(10.0))))
        # Dropout curve of the zip loss term, logit = a + b*log(mean): training-only like log_theta.
        # Starts flat at 5% dropout, so the data alone decide how dropout falls with the mean.
        self.dropout_curve = None
        if train_params.loss.zip:
            self.dropout_curve = torch.nn.Parameter(torch.tensor([float(np.log(0.05 / 0.95)), 0.0]))
        # Generators live on the batch's device and are made lazily (a CPU generator
        # cannot draw CUDA tensors; a torch.Generator cannot be pickled for ddp_spawn).
        self._train_generator: torch.Generator | None = None
        self._val_generator: torch.Generator | None = None

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        if self.to_grid is None or batch["values"].dim() == 4:
            return batch
        grids = {key: self.to_grid(batch[key]) for key in ("values", "context") if key in batch}
        return {**batch, **grids, "valid": self.to_grid.valid}

    def forward(self, values: torch.Tensor, hidden: torch.Tensor | None = None, context: torch.Tensor | None = None):
        return self.net(network_input(values, hidden, context))

    def _generator(self, device: torch.device, offset: int) -> torch.Generator:
        seed = self.train_params.seed + offset + _RANK_SEED_STRIDE * int(self.global_rank)
        return torch.Generator(device=device).manual_seed(seed)

    def _molecule_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """The loss of one batch under ``training_mask.mode: molecules`` (the class notes)."""
        if "size_factor" not in batch:
            raise ValueError("training_mask.mode: molecules needs the cells' size factors in the batch "
                             "(the counts are recovered from the values with them)")
        values = batch["values"]
        valid = batch["valid"].expand_as(values)
        scale = self.gene_scale.float()
        depth = batch["size_factor"].float()
        # The inverse of how the values were made: scaled value -> log1p(count / sf * 1e4) -> count.
        counts = torch.round(torch.expm1(values.float() * scale) * depth / 1e4) * valid
        mask_params = self.train_params.training_mask
        inputs, target, input_fraction = split_training_molecules(
            counts, valid, mask_params.min_rate, mask_params.max_rate, generator=generator
        )
        # The input's own depth: the cell's depth times its share of the molecules on the grid
        # (the size factor counts the modelled genes, so this is the input's total on them).
        totals = counts.sum(dim=(1, 2, 3), keepdim=True)
        input_depth = (depth * inputs.sum(dim=(1, 2, 3), keepdim=True) / totals.clamp(min=1.0)).clamp(min=1e-6)
        target_depth = ((1.0 - input_fraction) * depth).clamp(min=1e-6)

        def scaled(part: torch.Tensor, part_depth: torch.Tensor) -> torch.Tensor:
            return (torch.log1p(part / part_depth * 1e4) / scale).clamp(0.0, 1.0) * valid

        def target_counts(grid: torch.Tensor) -> torch.Tensor:
            # scaled value -> level per 1e4 -> expected count at the target's depth
            return torch.expm1(grid.float() * self.gene_scale) * target_depth / 1e4

        network_values = scaled(inputs, input_depth).to(values.dtype)
        pred = self(network_values, None, batch.get("context") if self.use_context else None)
        return gapfill_loss(pred, scaled(target, target_depth), valid, valid, self.train_params.loss, target_counts,
                            self.log_theta, self.dropout_curve, target_counts=target)

    def _step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        mask_params = self.train_params.training_mask
        if mask_params.mode in MOLECULE_MODES:
            return self._molecule_step(batch, generator)
        values = batch["values"]
        valid = batch["valid"].expand_as(values)
        hidden = sample_training_mask(
            values,
            valid,
            min_rate=mask_params.min_rate,
            max_rate=mask_params.max_rate,
            mode=mask_params.mode,
            generator=generator,
        )
        pred = self(values, hidden, batch.get("context") if self.use_context else None)
        to_counts = None
        if "size_factor" in batch:
            size_factor = batch["size_factor"]

            def expected_counts(grid: torch.Tensor) -> torch.Tensor:
                # scaled value -> log1p(count / sf * 1e4) -> expected count
                return torch.expm1(grid.float() * self.gene_scale) * size_factor / 1e4

            to_counts = expected_counts

        return gapfill_loss(pred, values, hidden, valid, self.train_params.loss, to_counts, self.log_theta,
                            self.dropout_curve)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self._train_generator is None:
            self._train_generator = self._generator(batch["values"].device, 0)
        loss = self._step(batch, self._train_generator)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch["values"].shape[0], sync_dist=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_generator = self._generator(self.device, _VAL_SEED_OFFSET)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self._val_generator is None:
            self._val_generator = self._generator(batch["values"].device, _VAL_SEED_OFFSET)
        loss = self._step(batch, self._val_generator)
        # sync_dist: every DDP rank must see the same val_loss, or early stopping diverges and hangs.
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch["values"].shape[0], sync_dist=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        lr = self.train_params.lr
        groups = [{"params": list(self.net.parameters())}]
        if self.log_theta is not None:
            groups.append({"params": [self.log_theta]})
        if self.dropout_curve is not None:
            # Two numbers shared by every entry: at the network's rate they would take most of
            # training to settle, and the network's estimate of the mean waits for them.
            groups.append({"params": [self.dropout_curve], "lr": lr * 10})
        optimizer = torch.optim.Adam(groups, lr=lr)
        if self.train_params.lr_schedule == "constant":
            return optimizer
        # The horizon Lightning plans for (max_epochs x limit_train_batches); early stopping may end
        # the run before the rate reaches 0.
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}

    def __getstate__(self) -> dict[str, Any]:
        # Lightning's own drops the trainer (locks, process groups): the weight average deep-copies the module.
        state = super().__getstate__()
        state["_train_generator"] = None
        state["_val_generator"] = None
        return state
