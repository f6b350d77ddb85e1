"""Typed parameters: every ``conf/base/parameters_*.yml`` section has a model here.

A wrong value fails before any work starts (see ``hooks.ParameterValidationHook``),
with the dotted key named, e.g. ``qc.min_genes: Input should be greater than or equal to 0``.
Nodes validate their own section again so the package can be used from a notebook.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Params(BaseModel):
    # Unknown keys are typos more often than not: refuse them.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _name_list(value: Any) -> Any:
    """Kedro's ``--params`` splits on commas, so lists come from the command line as ``a+b+c``."""
    if isinstance(value, str):
        return [item for item in value.replace("+", " ").split() if item]
    return value


def _is_auto(value: Any) -> bool:
    """``auto`` in the yml or on the command line: the value is decided on the machine at run time."""
    return isinstance(value, str) and value.strip().lower() == "auto"


class SimulationParams(_Params):
    n_cells: int = Field(1000, ge=10)
    n_genes: int = Field(1000, ge=10)
    n_groups: int = Field(5, ge=1)
    seed: int = 0
    mean_shape: float = Field(0.6, gt=0)
    mean_rate: float = Field(0.3, gt=0)
    lib_loc: float = Field(
        7.2,
        description='log library size: ~950 counts per cell, ~30% nonzero like pbmc68k_reduced',
    )
    lib_scale: float = Field(0.2, ge=0)
    de_prob: float = Field(0.1, ge=0, le=1)
    de_down_prob: float = Field(0.3, ge=0, le=1)
    de_loc: float = 0.5
    de_scale: float = Field(0.4, ge=0)
    bcv: float = Field(0.2, ge=0)
    dropout_mid: float = 0.0
    dropout_shape: float = Field(-1.0, lt=0)
    # 0: the whole data set drawn at once, the generator the documented figures were made with.
    # Above 0: cells drawn in blocks of this many, each from its own random stream, so memory is
    # bounded by one block and the data depend on the seed and chunk_cells only.
    chunk_cells: int = Field(
        0, ge=0,
        description='0: all cells drawn at once, the generator of the documented figures. >0: blocks of this many '
        'cells, each from its own random stream, so 100k-1M cells fit in bounded memory (same '
        'distribution, other draws than 0; the data depend on seed and chunk_cells only)',
    )
    # False skips layers true_counts and true_mean (true_mean is dense: 8 GB at 1M x 2000 in float32).
    truth: bool = Field(
        True,
        description='layers true_counts and true_mean (dense) for the truth metrics; false for large runs',
    )


class InputParams(_Params):
    path: str = Field(
        "",
        description='"" = the embedded pbmc68k_reduced (ships inside scanpy); "simulated" = the project\'s simulator; '
        'otherwise a .h5ad file, a 10x .h5 file or a 10x matrix folder. The file is only read, never '
        'written.',
    )
    label_key: Optional[str] = Field(
        None,
        description='obs column of known cell types, used only by evaluation (ARI). Empty: bulk_labels for the '
        'embedded data, group for simulations, none for your own file unless you name one.',
    )
    simulation: SimulationParams = SimulationParams()


class QCParams(_Params):
    min_genes: int = Field(200, ge=0, description='cells with fewer detected genes are removed')
    max_counts: Optional[float] = Field(
        30000, gt=0,
        description='cells with more total counts are removed (doublets); null disables',
    )
    max_pct_mito: Optional[float] = Field(
        None, gt=0, le=100,
        description='e.g. 20 removes cells with > 20% mitochondrial counts',
    )
    mito_prefix: str = "MT-"
    min_cells: int = Field(
        3, ge=0,
        description='genes seen in fewer cells are removed (genes seen in none, always)',
    )


class NormalizeParams(_Params):
    target_sum: float = Field(
        1e4, gt=0,
        description='X = log1p(counts / size_factor * target_sum); counts kept in layers["counts"]',
    )


class HVGParams(_Params):
    n_top_genes: int = Field(2000, ge=2, description='all genes are kept when there are fewer')
    flavor: Literal["seurat", "cell_ranger"] = "seurat"


class LayoutParams(_Params):
    strategy: Literal["given", "random", "correlation"] = Field(
        "correlation",
        description='given | random | correlation (see docs/model.md, "Why the defaults are what they are", for the '
        'measurement)',
    )
    seed: int = Field(0, description='seed of the random strategy')
    # Pixels per gene (1: the smallest grid; 2: about twice the pixels, the genes evenly apart).
    spacing: float = Field(
        1.0, ge=1.0,
        description='pixels per gene: 1 = the smallest grid; 2 = about twice the pixels, genes evenly apart',
    )


class HeldoutParams(_Params):
    fraction: float = Field(
        0.1, gt=0, lt=1,
        description='share of the nonzero counts hidden from training and imputation, scored by evaluation',
    )
    seed: int = 0


class MCVParams(_Params):
    train_fraction: float = Field(
        0.9, gt=0, lt=1,
        description='molecular cross-validation: train ~ Binomial(counts, 0.9), test = the rest',
    )
    seed: int = 0


class TrainingMaskParams(_Params):
    min_rate: float = Field(0.05, ge=0, le=1, description='least fraction hidden (molecules: moved to the target)')
    max_rate: float = Field(0.5, ge=0, le=1, description='most fraction hidden (molecules: moved to the target)')
    mode: Literal["uniform", "dropout", "molecules"] = Field(
        "molecules",
        description='uniform | dropout (low values hidden more often) | molecules (each count split binomially '
                    'into input and target molecules per cell; the loss scores the target on every entry)',
    )

    @model_validator(mode="after")
    def _ordered(self) -> "TrainingMaskParams":
        if self.min_rate > self.max_rate:
            raise ValueError(f"min_rate ({self.min_rate}) must not exceed max_rate ({self.max_rate})")
        return self


class ModelParams(_Params):
    depth: int = Field(2, ge=1, le=6, description='U-Net levels; grid sides are multiples of 2**depth')
    base_channels: int = Field(
        16, ge=1,
        description='channels of the first encoder block, doubled at each level; 8 measured ~2x faster, worse on both'
        ' real sets, every seed (docs/performance.md, "A narrower network")',
    )
    dropout: float = Field(0.2, ge=0, lt=1)
    context_channel: bool = Field(
        True,
        description="add the mean of each cell's k nearest neighbours (masked data only) as a channel",
    )
    context_k: int = Field(15, ge=1)
    context_n_pcs: int = Field(30, ge=2)
    context_steps: int = Field(
        2, ge=1, le=10,
        description='random-walk steps on the kNN graph (1 = plain neighbour mean); 2 measured best',
    )
    # Average the neighbours' log values ("log") or their normalised counts, then log ("counts").
    context_space: Literal["log", "counts"] = Field(
        "counts",
        description="neighbours' mean normalised count, then log1p (measured: pbmc held-out r 0.693 vs 0.678 for "
        '"log")',
    )
    context_graph: Literal["expression", "spatial", "both"] = Field(
        "expression",
        description='the neighbours of the context channel and of the unmodelled genes\' fill: expression = nearest '
        'cells in PCA space; spatial = nearest spots by obsm["spatial"], never across sections; both = the union '
        '(docs/howto/spatial.md)',
    )
    context_library_key: str = Field(
        "library_id",
        description='obs column naming each spot\'s section (tissue slide); spatial neighbours stay within a '
        'section. Absent column: all spots are one section',
    )
    context_residual: bool = Field(
        False,
        description="Output = sigmoid(network + logit(context)): corrections to the neighbours' estimate.",
    )
    # Weights and activations channels-last (NHWC): oneDNN's and cuDNN's fast convolution layout.
    channels_last: bool = Field(
        True,
        description='weights and activations NHWC, the fast convolution layout of oneDNN (CPU) and cuDNN (GPU); '
        'measured on 2 CPU cores: training 1.2x, imputation 1.2x the cells/s (benchmarks/train_speed.py '
        '--compare)',
    )


class LossParams(_Params):
    alpha: float = Field(0.0, ge=0, description='MSE')
    beta: float = Field(0.0, ge=0, description='MAE')
    gamma: float = Field(0.0, ge=0, description='total variation of the output grid')
    ssim: float = Field(0.0, ge=0)
    # Poisson likelihood of the hidden counts (expected count = rate x size factor): an extra term.
    poisson: float = Field(
        1.0, ge=0,
        description='Poisson NLL of the hidden counts (expected count = rate x size factor)',
    )
    # Negative binomial likelihood of the hidden counts, one dispersion per gene learned in training.
    nb: float = Field(
        0.0, ge=0,
        description='negative binomial NLL of the hidden counts, one dispersion per gene learned',
    )
    # Zero-inflated Poisson likelihood, one logistic dropout curve in the log mean learned in training:
    # the output becomes the expression level absent dropout.
    zip: float = Field(
        0.0, ge=0,
        description='zero-inflated Poisson NLL, one logistic dropout curve in log mean learned; the output is then '
        'the expression level absent dropout',
    )
    unmasked_weight: float = Field(0.0, ge=0)


# The settings each train.budget stands for (docs/performance.md, "The training budget").
TRAINING_BUDGETS: dict[str, dict[str, Any]] = {
    "fast": {"max_epochs": 30, "cells_per_epoch": 4096, "max_val_cells": 2048, "max_steps": 2000,
             "lr_schedule": "cosine"},
    "thorough": {"max_epochs": 100, "cells_per_epoch": 0, "max_val_cells": 0, "max_steps": -1,
                 "lr_schedule": "constant"},
}


class TrainParams(_Params):
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(16, ge=1)
    max_epochs: Optional[int] = Field(None, ge=1, description='epochs at most; auto: from train.budget')
    patience: int = Field(10, ge=1, description='early stopping on the validation loss')
    min_delta: float = Field(
        0.0, ge=0,
        description="Smallest val_loss improvement that resets early stopping's patience (0: any improvement).",
    )
    # Exponential moving average of the weights per optimiser step (Lightning's WeightAveraging):
    # validation, early stopping, the best checkpoint and the saved model use the average. 0 (off) by
    # default: 0.998 gained held-out r +0.002 for 38% more training (100 epochs, not 73; docs/model.md).
    ema_decay: float = Field(
        0.0, ge=0, lt=1,
        description='moving average of the weights (0: off; 0.998 averages ~500 steps). Off by default: 0.998 gave '
        'held-out r 0.702 vs 0.700 (pbmc), 0.681 vs 0.679 (simulation) for 38% more training '
        '(docs/model.md)',
    )
    val_fraction: float = Field(0.2, gt=0, lt=1, description='cells held back for early stopping')
    # How long a fit trains. "fast": every training cell each epoch for 30 epochs while that is under
    # 2,000 optimiser steps (32,000 cells at batch 16), else 2,000 steps of 4,096 cells an epoch, on a
    # cosine schedule, validated on 2,048 cells at most: the cost stops growing above ~1,000 cells;
    # "thorough": every cell every epoch at a constant rate until early stopping or 100 epochs (the
    # seed's schedule, 4-9x the time on the real sets). max_epochs and the four settings below, left at
    # auto, come from the budget; a value given for one of them wins.
    budget: Literal["fast", "thorough"] = Field(
        "fast",
        description='fast: 30 epochs or 2,000 steps, whichever is fewer, on a cosine schedule, 4,096 cells an epoch, '
        '2,048 validation cells; thorough: every cell each epoch until early stopping or 100 epochs '
        '(docs/performance.md, "The training budget")',
    )
    cells_per_epoch: Optional[int] = Field(
        None, ge=0,
        description='cells drawn at random for each epoch (0: every training cell); auto: from train.budget',
    )
    max_val_cells: Optional[int] = Field(
        None, ge=0,
        description='fixed validation cells at most (0: val_fraction of the cells, uncapped); validation drives '
        'early stopping and the kept checkpoint; auto: from train.budget',
    )
    max_steps: Optional[int] = Field(
        None, ge=-1,
        description='optimiser steps in all, rounded up to whole epochs (-1: max_epochs and early stopping end '
        'the run); auto: from train.budget',
    )
    # "cosine": the learning rate falls from lr to 0 along a half cosine over the run's optimiser steps
    # (max_epochs x the batches of an epoch, or max_steps rounded up to whole epochs), so a step budget
    # ends on small, settled steps; "constant": lr throughout, early stopping ends the run.
    lr_schedule: Optional[Literal["constant", "cosine"]] = Field(
        None,
        description="constant | cosine (lr down to 0 over the run's steps: max_epochs, or max_steps in whole "
        "epochs); auto: from train.budget",
    )
    seed: int = 0
    accelerator: str = Field("auto", description='GPU when present (bf16 mixed precision there), else CPU')
    devices: Any = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = Field(
        "auto",
        description='inside kedro use ddp_fork or ddp_spawn for several devices, never plain ddp',
    )
    precision: Optional[str] = Field(None, description='null: bf16-mixed on GPU, 32-true on CPU')
    num_workers: int = Field(0, ge=0)
    # None ("auto"): the progress bar on a terminal; elsewhere (a file, a pipe) it shows nothing until the
    # end, so one log line per epoch replaces it. Those lines are logged whenever the bar is off.
    enable_progress_bar: Optional[bool] = Field(
        None,
        description='auto: the bar on a terminal, one log line per epoch otherwise (a file, a pipe); true | false',
    )
    # torch threads while training; 0 ("auto"): one per CPU this process may run on. Fewer when other
    # jobs share the CPUs: one BLAS job beside a 2-core run cut it from 905 to 208 cells/s.
    num_threads: int = Field(
        0, ge=0,
        description='torch threads while training; auto: the CPUs this process may use. Lower it when other jobs '
        'share them: beside one BLAS job on 2 cores, 1 thread trained at 221 cells/s and auto (2) at 119 '
        '(alone: 394 and 407; benchmarks/train_speed.py --contention)',
    )
    # Folder for the checkpoints a killed run resumes from ("": a temporary folder, no resuming).
    checkpoint_dir: str = Field("", description='last.ckpt of the run in progress, removed when it ends')
    # "auto": continue from the last epoch of a killed run with the same data and parameters.
    resume: Literal["auto", "never"] = Field(
        "auto",
        description='a killed run started again with the same data and parameters continues from its last epoch '
        '(never: always from scratch)',
    )
    loss: LossParams = LossParams()
    training_mask: TrainingMaskParams = TrainingMaskParams()

    @model_validator(mode="before")
    @classmethod
    def _from_budget(cls, data: Any) -> Any:
        """The budget's settings where the four are left at auto (or not given)."""
        if not isinstance(data, dict):
            return data
        preset = TRAINING_BUDGETS.get(data.get("budget", "fast"))
        if preset is None:
            return data  # the Literal check names the unknown budget
        return {**data, **{key: value for key, value in preset.items() if data.get(key) is None or _is_auto(data[key])}}

    @field_validator("enable_progress_bar", mode="before")
    @classmethod
    def _auto_progress_bar(cls, value: Any) -> Any:
        return None if _is_auto(value) else value

    @field_validator("num_threads", mode="before")
    @classmethod
    def _auto_threads(cls, value: Any) -> Any:
        return 0 if _is_auto(value) else value


class ImputeParams(_Params):
    # What a modelled gene's entry holds. "level": log1p of the expected count per 1e4 (observed counts kept
    # where fill_only_zeros says); "expected_log": the log-normalised value a count drawn at that level
    # takes on average at the cell's own depth, on every entry (the noise-free counterpart of X, what
    # MAGIC's and kNN smoothing's averaged logs estimate).
    form: Literal["level", "expected_log"] = Field(
        "expected_log",
        description="modelled genes' entries: expected_log = the average log-normalised value at the cell's depth, "
        'every entry; level = log1p of the expected count per 1e4, observed counts kept (measured: docs/model.md)',
    )
    fill_only_zeros: bool = Field(
        True,
        description='with form level: keep observed counts, fill the zeros (measured: truth RMSE 1.11 vs 1.44 '
        'filling all)',
    )
    batch_size: int = Field(
        64, ge=1,
        description='cells per forward pass; 64 ran at least as fast as 256 on the CPU with a quarter of the '
        'activations (benchmarks/train_speed.py --impute-batch-sizes 64 256, docs/performance.md)',
    )
    # Each cell's estimated levels averaged with its k neighbours' estimates (this weight on theirs).
    output_smoothing: float = Field(
        0.5, ge=0, le=1,
        description="imputed levels averaged with the k neighbours' estimates, this weight on theirs (0: off); "
        'measured: held-out r 0.704 vs 0.700 (pbmc), 0.680 vs 0.679 (simulation), docs/model.md',
    )
    # Neighbours for that average: those of the context ("input") or found again on the estimates ("imputed").
    smoothing_neighbours: Literal["input", "imputed"] = Field(
        "imputed",
        description='neighbours for it: found on the cells\' estimates ("imputed") or the context\'s ("input"); '
        'measured: held-out r 0.682 vs 0.680 on the simulation, ARI 0.992 vs 0.984',
    )
    # "composition": after filling, each cell's levels are rescaled to sum to 1e4, so that filled
    # cells stay comparable whatever their dropout; "observed_library": levels per 1e4 of the cell's
    # observed counts, so a filled cell sums to more than 1e4 (up to 1.7x measured; docs/evaluation.md).
    scale: Literal["composition", "observed_library"] = Field(
        "composition",
        description='each filled cell rescaled to sum to 1e4 (normalize_total-like); observed_library: per 1e4 of the'
        ' observed counts, a filled cell then sums to ~1.7x more (docs/evaluation.md, docs/benchmark.md)',
    )
    # The data's genes the model was not trained on (beyond the highly variable ones): "neighbours"
    # averages each cell's log-normalised values with its nearest cells' (found on the model's
    # estimates), "observed" carries them as they are (their zeros stay zeros).
    unmodelled: Literal["neighbours", "observed"] = Field(
        "neighbours",
        description="genes beyond the modelled ones: each cell's values averaged with its nearest cells' (found on"
        " the model's estimates); observed: carried as they are (docs/benchmark.md)",
    )
    # That average: k neighbours (the cell itself included with equal weight), repeated this many times.
    unmodelled_k: int = Field(
        30, ge=1,
        description="neighbours of that average (measured with unmodelled_steps: docs/model.md)",
    )
    unmodelled_steps: int = Field(
        3, ge=1,
        description="times the average is repeated (each step reaches the neighbours' neighbours, as MAGIC's "
        "diffusion does)",
    )


    # A per-cell score of how badly the model predicts molecules hidden from the cell (infer/anomaly.py).
    anomaly: bool = Field(
        True,
        description='obs["gapfill_anomaly"]: the Poisson deviance of a tenth of each cell\'s counts hidden and '
        'predicted, depth-free, as a robust z; obs["gapfill_anomaly_flag"] at 3 or more (docs/anomaly.md)',
    )


class FinalParams(_Params):
    # Train again on every processed count (no held-out mask) before imputing the deliverable.
    refit: bool = Field(
        False,
        description='true: train again on all processed counts (nothing held out) before imputing them',
    )


# Fewer reference cells than a few neighbourhoods cannot stand for a data set's cell states.
MIN_REFERENCE_CELLS = 100


class InferenceParams(_Params):
    # An MLflow model URI (models:/..., runs:/...) or a local bundle path.
    uri: str = Field(
        "",
        description='models:/scgapfill-unet/<version>, models:/m-<id>, runs:/<run_id>/model, or a .pt bundle',
    )
    # Cells read, imputed and written per chunk; 0 reads the whole data set into memory
    # (needed for 10x files and for .h5ad files whose counts are only in layers['counts']).
    chunk_size: int = Field(
        10240, ge=0,
        description='A .h5ad input is read and the result written this many cells at a time, so memory holds one '
        "dense chunk, never the whole dense result (and, up to reference_cells cells, every cell's sparse"
        " counts). 0: read the whole input into memory (10x files, or counts only in layers['counts']). a"
        ' multiple of impute.batch_size: with the graph over every cell, the numbers of memory, bit for '
        'bit',
    )
    # A chunked .h5ad of more cells than this is imputed against a random reference of this many:
    # the cell graph (context, output smoothing) is built on them, so memory stops growing with the
    # cells (docs/performance.md). At or below it, the graph spans every cell. 0: always every cell.
    reference_cells: int = Field(
        50000, ge=0,
        description='Above this many cells a chunked .h5ad is imputed against a random reference of this many: the '
        'PCA, neighbours, context and output smoothing are built on the reference, so memory stays flat '
        'as the cells grow (1M cells: docs/performance.md). At or below it the graph spans every cell, as'
        ' in training. 0: always every cell.',
    )

    @field_validator("reference_cells")
    @classmethod
    def _reference_large_enough(cls, value: int) -> int:
        if 0 < value < MIN_REFERENCE_CELLS:
            raise ValueError(f"must be 0 (the graph over every cell) or at least {MIN_REFERENCE_CELLS} cells")
        return value


class EvaluationParams(_Params):
    n_neighbors: int = Field(15, ge=2, description='kNN graph for Leiden')
    n_pcs: int = Field(50, ge=2)
    seed: int = 0
    max_genes_corr: int = Field(
        500, ge=2,
        description='genes sampled for the false gene-gene correlation rate',
    )
    plots: bool = Field(
        True,
        description='false: no UMAP plots (minutes at 100k cells); the held-out scatter is always drawn',
    )


# The names scgapfill.eval.baselines.BASELINES registers (a test keeps the two equal); here so that a
# typo fails at validation without importing the baselines' libraries.
BASELINE_NAMES = ("none", "gene_mean", "gene_depth", "knn", "knn_spatial", "magic", "alra", "scvi")
MODEL_METHOD = "unet"


def _known_methods(methods: list[str], known: tuple[str, ...]) -> list[str]:
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(known)}")
    return methods


class BaselinesParams(_Params):
    methods: list[str] = Field(
        ["none", "gene_mean", "gene_depth", "knn", "magic", "alra"],
        description="none | gene_mean | gene_depth | knn | knn_spatial (spatial data: nearest spots in the tissue) | "
        "magic | alra | scvi (needs pip install -e '.[scvi]')",
    )
    knn_k: int = Field(15, ge=1)

    _split_methods = field_validator("methods", mode="before")(_name_list)

    @field_validator("methods")
    @classmethod
    def _methods_exist(cls, methods: list[str]) -> list[str]:
        return _known_methods(methods, BASELINE_NAMES)


class BenchmarkParams(_Params):
    datasets: list[str] = Field(
        ["pbmc68k_reduced", "simulated"],
        description='"pbmc68k_reduced" (embedded), "simulated" (input.simulation), "pbmc8k" and "choroid_plexus" '
        '(real 10x data, prepared once by: python -m scgapfill.data.real_data; docs/benchmark.md), or a path '
        'to a counts file',
    )
    methods: list[str] = Field(
        ["none", "gene_mean", "gene_depth", "knn", "magic", "alra", "unet"],
        description='add scvi when scvi-tools is installed',
    )
    n_seeds: int = Field(3, ge=1, description='mask seeds heldout.seed, heldout.seed + 1, ...')

    _split_lists = field_validator("datasets", "methods", mode="before")(_name_list)

    @field_validator("methods")
    @classmethod
    def _methods_exist(cls, methods: list[str]) -> list[str]:
        return _known_methods(methods, (*BASELINE_NAMES, MODEL_METHOD))


SECTIONS: dict[str, type[_Params]] = {
    "input": InputParams,
    "qc": QCParams,
    "normalize": NormalizeParams,
    "hvg": HVGParams,
    "layout": LayoutParams,
    "heldout": HeldoutParams,
    "mcv": MCVParams,
    "model": ModelParams,
    "train": TrainParams,
    "impute": ImputeParams,
    "final": FinalParams,
    "inference": InferenceParams,
    "evaluation": EvaluationParams,
    "baselines": BaselinesParams,
    "benchmark": BenchmarkParams,
}


class Parameters(_Params):
    """Every section at once, typed: what a script or the benchmark reads ``parameters`` into, once."""

    input: InputParams = InputParams()
    qc: QCParams = QCParams()
    normalize: NormalizeParams = NormalizeParams()
    hvg: HVGParams = HVGParams()
    layout: LayoutParams = LayoutParams()
    heldout: HeldoutParams = HeldoutParams()
    mcv: MCVParams = MCVParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    impute: ImputeParams = ImputeParams()
    final: FinalParams = FinalParams()
    inference: InferenceParams = InferenceParams()
    evaluation: EvaluationParams = EvaluationParams()
    baselines: BaselinesParams = BaselinesParams()
    benchmark: BenchmarkParams = BenchmarkParams()


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the dotted key and the fix."""


def _format(section: str, err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        key = ".".join([section, *[str(p) for p in item["loc"]]])
        lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    where = "conf/base/parameters*.yml or --params"
    return f"Invalid parameter(s); fix them in {where}:\n" + "\n".join(lines)


def parse(section: str, value: Any) -> Any:
    """Validate one parameter section (``qc``, ``train`` ...) and return its typed model."""
    model = SECTIONS[section]
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as err:
        raise ParameterError(_format(section, err)) from None


def _unknown_section(key: str) -> str:
    close = difflib.get_close_matches(key, SECTIONS, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"the sections are {sorted(SECTIONS)}"
    return f"  {key}: not a parameter section; {hint}"


def _accelerator_problem(train: TrainParams) -> str:
    """A GPU asked for on a machine without one fails here, not a minute into the run."""
    if str(train.accelerator).lower() not in ("gpu", "cuda"):
        return ""
    import torch

    if torch.cuda.is_available():
        return ""
    return (f"  train.accelerator: {train.accelerator!r} asks for a GPU and this machine has none "
            "(torch.cuda.is_available() is False); use auto or cpu")


def validate_all(parameters: dict) -> dict[str, Any]:
    """Validate every section of ``parameters``; collect all errors in one message.

    A top-level key that is no section is refused with the closest section's name: a typo such as
    ``trian.max_epochs=3`` would otherwise be ignored and start a full run.
    """
    parsed, problems = {}, []
    for key in parameters:
        if key not in SECTIONS:
            problems.append(_unknown_section(key))
    for section in SECTIONS:
        if section in parameters:
            try:
                parsed[section] = parse(section, parameters[section])
            except ParameterError as err:
                problems.append(str(err).split("\n", 1)[1])
    if "train" in parsed and (problem := _accelerator_problem(parsed["train"])):
        problems.append(problem)
    if problems:
        raise ParameterError("Invalid parameter(s); fix them in conf/base/parameters*.yml or --params:\n" + "\n".join(problems))
    return parsed


def parse_all(parameters: "dict | Parameters | None") -> Parameters:
    """Every section of ``parameters`` (Kedro's ``parameters``, or a dict read from the yml) typed;
    a section not given takes the schema's defaults. Errors name the dotted key, as :func:`validate_all`."""
    if isinstance(parameters, Parameters):
        return parameters
    return Parameters(**validate_all(parameters or {}))


def read_parameter_files(conf: str | os.PathLike = "conf/base") -> dict:
    """Every section of the project's ``parameters*.yml`` files, for scripts that run outside Kedro."""
    import yaml

    params: dict = {}
    for path in sorted(Path(conf).glob("parameters*.yml")):
        params.update(yaml.safe_load(path.read_text()) or {})
    return params


def dotted_overrides(items: list[str]) -> dict:
    """``["train.max_epochs=5", ...]`` as nested dicts for :func:`merged` (values read as YAML)."""
    import yaml

    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ParameterError(f"override {item!r}: write section.key=value, e.g. train.max_epochs=5")
        cursor = out
        *parents, leaf = key.split(".")
        for part in parents:
            cursor = cursor.setdefault(part, {})
        cursor[leaf] = yaml.safe_load(value)
    return out


def merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` laid over it, nested dicts merged key by key (neither is changed)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out
