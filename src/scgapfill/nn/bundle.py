"""The trained-model bundle: network weights plus everything needed to use them.

A bundle is saved as ONE ``.pt`` file that holds only tensors, dicts, lists,
strings and numbers, and is read back with ``torch.load(weights_only=True)``,
so loading a model file never runs code from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from scgapfill.data.atomic import atomic_path
from scgapfill.params import ImputeParams, ModelParams, TrainParams, parse

FORMAT = "scgapfill.GapFillBundle"
FORMAT_VERSION = 1
# Keys of ``model_params`` that bundles saved before the imputation settings moved to ``impute``
# carry, and the values they meant when absent (bundles older than those options).
_MOVED_TO_IMPUTE = {"output_smoothing": 0.0, "smoothing_neighbours": "input"}
# Options added to the network after the first bundles: the value those bundles were trained with.
_ADDED_TO_MODEL = {"context_space": "log", "context_steps": 1}
_DROPPED_FROM_MODEL = ("uri",)  # inference only; now inference.uri
# Imputation options added after the first bundles: the value those bundles imputed with.
_ADDED_TO_IMPUTE = {"scale": "observed_library", "form": "level", "unmodelled_k": 15, "unmodelled_steps": 1}
# Loss terms added after the first bundles: those bundles were trained without them.
_ADDED_TO_LOSS = {"poisson": 0.0, "nb": 0.0, "zip": 0.0}
_HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss"]
_REQUIRED = ("state_dict", "model_params", "train_params", "layout", "scaler", "gene_names")
_FIX = "give a gapfill_model.pt written by GapFill.save or the training pipeline"


@dataclass
class GapFillBundle:
    """A trained gap-filling model.

    Attributes
    ----------
    state_dict
        ``UNet`` weights, CPU tensors.
    model_params, train_params, impute_params
        The :class:`~scgapfill.params.ModelParams`, :class:`~scgapfill.params.TrainParams` and
        :class:`~scgapfill.params.ImputeParams` it was trained with (also :attr:`model`, :attr:`train`,
        :attr:`impute`). ``impute_params`` are the settings the model imputes with unless told otherwise.
        Saved as plain dicts; bundles saved by older versions are brought to the current shape by
        :func:`upgrade_params` as they are read, nowhere else.
    layout
        The gene layout (``genes``, ``positions``, ``shape``, ``strategy``).
    scaler
        ``GeneScaler.to_dict()``.
    gene_names
        The model's genes, in the column order it expects.
    history
        One row per epoch: ``epoch``, ``train_loss``, ``val_loss``.
    best_epoch
        Epoch (0-based) of the kept weights.
    seconds_per_epoch, cells_per_s
        Mean wall time of an epoch (training and validation) and training cells per second of it.
    info
        Free-form extras (numbers and strings), e.g. cell counts of the split.
    cell_graph
        The neighbour graph of the cells it was just trained on (a :class:`~scgapfill.graph.cellgraph.CellGraph`),
        which imputing those same cells takes instead of building it again; never saved.
    """

    state_dict: dict[str, torch.Tensor]
    model_params: ModelParams
    train_params: TrainParams
    layout: dict
    scaler: dict
    gene_names: list[str]
    history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_HISTORY_COLUMNS))
    best_epoch: int = -1
    seconds_per_epoch: float = float("nan")
    cells_per_s: float = float("nan")
    info: dict = field(default_factory=dict)
    impute_params: ImputeParams = field(default_factory=ImputeParams)
    cell_graph: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Validated here (a dict becomes its model); never upgraded here: see from_dict.
        self.model_params = parse("model", self.model_params)
        self.train_params = parse("train", self.train_params)
        self.impute_params = parse("impute", self.impute_params)

    @property
    def model(self) -> ModelParams:
        return self.model_params

    @property
    def train(self) -> TrainParams:
        return self.train_params

    @property
    def impute(self) -> ImputeParams:
        return self.impute_params

    def build_network(self) -> torch.nn.Module:
        """The UNet with the stored weights, on CPU, in eval mode."""
        from scgapfill.nn import build_unet

        net = build_unet(self.model)
        net.load_state_dict(self.state_dict)
        return net.eval()

    def to_dict(self) -> dict[str, Any]:
        """Plain payload (tensors, dicts, lists, strings, numbers) that ``torch.load(weights_only=True)`` reads."""
        history = {
            col: [_plain(v) for v in self.history[col].tolist()] for col in _HISTORY_COLUMNS if col in self.history
        }
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "model_params": _plain(self.model.model_dump()),
            "train_params": _plain(self.train.model_dump()),
            "layout": _plain(self.layout),
            "scaler": _plain(self.scaler),
            "gene_names": [str(g) for g in self.gene_names],
            "history": history,
            "best_epoch": int(self.best_epoch),
            "seconds_per_epoch": float(self.seconds_per_epoch),
            "cells_per_s": float(self.cells_per_s),
            "info": _plain(self.info),
            "impute_params": self.impute.model_dump(),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any], label: str = "the payload") -> "GapFillBundle":
        """The bundle in ``payload`` (what :meth:`to_dict` gives); ``label`` names its source in errors."""
        missing = [k for k in ("format",) + _REQUIRED if k not in payload]
        if payload.get("format") != FORMAT:
            found = [f"format={payload['format']!r}"] if "format" in payload else []
            detail = ", ".join(found + ([f"missing keys {missing}"] if missing else []))
            raise ValueError(f"{label} is not a scgapfill model bundle ({detail}); {_FIX}")
        if payload.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{label} has model bundle format_version {payload['format_version']}, newer than this scgapfill "
                f"reads ({FORMAT_VERSION}); upgrade scgapfill"
            )
        if missing:
            raise ValueError(
                f"{label} is an incomplete scgapfill model bundle (missing keys {missing}); retrain the model"
            )
        model_params, train_params, impute_params = upgrade_params(
            payload["model_params"], payload["train_params"], payload.get("impute_params")
        )
        return cls(
            state_dict=dict(payload["state_dict"]),
            model_params=model_params,
            impute_params=impute_params,
            train_params=train_params,
            layout=dict(payload["layout"]),
            scaler=dict(payload["scaler"]),
            gene_names=list(payload["gene_names"]),
            history=pd.DataFrame(payload.get("history") or {c: [] for c in _HISTORY_COLUMNS}),
            best_epoch=int(payload.get("best_epoch", -1)),
            seconds_per_epoch=float(payload.get("seconds_per_epoch", float("nan"))),
            cells_per_s=float(payload.get("cells_per_s", float("nan"))),
            info=dict(payload.get("info", {})),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the bundle to ``path`` atomically (temporary file, then ``os.replace``)."""
        path = Path(path)
        with atomic_path(path, ".pt") as tmp:
            torch.save(self.to_dict(), tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, label: str | None = None) -> "GapFillBundle":
        """Read a bundle written by :meth:`save`; never unpickles code. ``label`` names the file in errors
        (e.g. the parameter that gave it); its path by default."""
        label = label or str(path)
        try:
            payload = torch.load(Path(path), weights_only=True, map_location="cpu")
        except OSError:
            raise  # unreadable (permissions, a folder): its own message says so
        except Exception as err:  # torch raises UnpicklingError, KeyError, EOFError... for other content
            raise ValueError(f"{label} is not a scgapfill model bundle ({_not_torch(path, err)}); {_FIX}") from err
        if not isinstance(payload, dict):
            raise ValueError(f"{label} is not a scgapfill model bundle (it holds a {type(payload).__name__}); {_FIX}")
        return cls.from_dict(payload, label)


def _not_torch(path: str | os.PathLike, err: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, in a few words."""
    if Path(path).stat().st_size == 0:
        return "the file is empty, 0 bytes"
    text = str(err)
    # torch's own message leads with advice to load with weights_only=False, which would run code from
    # the file; the reason proper follows "WeightsUnpickler error:".
    _, marker, reason = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (reason if marker else text).splitlines() if line.strip()]
    first = lines[0].split(". ")[0][:120] if lines else ""
    return f"not a torch file of tensors and plain data: {type(err).__name__}" + (f": {first}" if first else "")


def upgrade_params(
    model_params: dict, train_params: dict, impute_params: dict | None
) -> tuple[ModelParams, TrainParams, ImputeParams]:
    """A saved bundle's parameters, typed, in the current shape.

    The one place that reads older bundles: imputation settings once kept in ``model_params``
    move to ``impute_params``, options they predate get the value they were trained or used
    with (not the schema's default when the two differ: a bundle saved before the ``zip`` loss
    term was trained without it), and keys with no meaning for a trained model are dropped.
    """
    model = dict(model_params)
    saved_with_section = impute_params is not None
    impute = dict(impute_params or {})
    for key, before_option in _MOVED_TO_IMPUTE.items():
        value = model.pop(key, before_option)
        if not saved_with_section:
            impute[key] = value
    for key, before_option in _ADDED_TO_MODEL.items():
        model.setdefault(key, before_option)
    for key, before_option in _ADDED_TO_IMPUTE.items():
        impute.setdefault(key, before_option)
    for key in _DROPPED_FROM_MODEL:
        model.pop(key, None)
    train = dict(train_params)
    # Bundles saved before train.budget trained every cell each epoch unless they said otherwise.
    train.setdefault("budget", "thorough")
    # Before training_mask.mode, training hid whole entries, uniformly.
    train["training_mask"] = {"mode": "uniform", **dict(train.get("training_mask") or {})}
    loss = dict(train.get("loss") or {})
    for key, before_option in _ADDED_TO_LOSS.items():
        loss.setdefault(key, before_option)
    train["loss"] = loss
    # Training options since removed describe how the weights were made, not how to use them.
    train = {key: value for key, value in train.items() if key in TrainParams.model_fields}
    return parse("model", model), parse("train", train), parse("impute", impute)


def _plain(value: Any) -> Any:
    """numpy scalars, tuples and nested containers -> builtins that weights_only loading accepts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
