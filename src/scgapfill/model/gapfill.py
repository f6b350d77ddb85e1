"""``GapFill``: the layout, the scaler, the network and the imputation settings in one object."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from scgapfill.data.io import AUTO, InputCounts, checked_counts
from scgapfill.data.layout import compute_gene_layout, laid_out, on_model_genes  # noqa: F401 (compute_gene_layout: scgapfill.model's)
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.infer.anomaly import add_anomaly, anomaly_scores
from scgapfill.infer.imputation import align_genes, impute_counts, imputation_record, warn_missing_genes
from scgapfill.model._anndata import at_observed_depth, on_data_genes, same_genes
from scgapfill.nn.bundle import GapFillBundle
from scgapfill.params import ImputeParams, LayoutParams, ModelParams, TrainParams, parse

log = logging.getLogger(__name__)

MODEL_FILE = "gapfill_model.pt"


class GapFill:
    """Fill dropout gaps in single-cell counts with a U-Net on a gene grid.

    Parameters
    ----------
    model, train, layout, impute
        :class:`~scgapfill.params.ModelParams`, ``TrainParams``, ``LayoutParams`` and
        ``ImputeParams`` (or dicts validated into them); ``None`` takes the defaults.

    Examples
    --------
    >>> model = GapFill(train={"max_epochs": 20}).fit(adata)        # doctest: +SKIP
    >>> model.impute(adata)                  # adata.layers["imputed"] # doctest: +SKIP
    >>> model.save("my_model"); GapFill.load("my_model").fit(other)  # fine-tuning  # doctest: +SKIP
    """

    def __init__(
        self,
        model: ModelParams | dict | None = None,
        train: TrainParams | dict | None = None,
        layout: LayoutParams | dict | None = None,
        impute: ImputeParams | dict | None = None,
    ) -> None:
        self.model_params: ModelParams = parse("model", model)
        self.train_params: TrainParams = parse("train", train)
        self.layout_params: LayoutParams = parse("layout", layout)
        self.impute_params: ImputeParams = parse("impute", impute)
        self.bundle: GapFillBundle | None = None

    @classmethod
    def from_bundle(
        cls, bundle: GapFillBundle, train: TrainParams | dict | None = None, impute: ImputeParams | dict | None = None
    ) -> "GapFill":
        """A fitted model from a bundle; ``train``/``impute`` replace the settings saved with it."""
        model = cls(
            bundle.model, bundle.train if train is None else train, impute=bundle.impute if impute is None else impute
        )
        if "strategy" in bundle.layout:  # layouts made by hand may not say; a refit then lays out by default
            model.layout_params = parse("layout", {"strategy": bundle.layout["strategy"]})
        model.bundle = bundle
        return model

    @property
    def is_fitted(self) -> bool:
        return self.bundle is not None

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch of the last :meth:`fit`: ``epoch``, ``train_loss``, ``val_loss``."""
        return self._fitted().history

    @property
    def gene_names(self) -> list[str]:
        return list(self._fitted().gene_names)

    def _fitted(self) -> GapFillBundle:
        if self.bundle is None:
            raise RuntimeError("the model is not trained yet: call fit(adata) or GapFill.load(path) first")
        return self.bundle

    def fit(
        self,
        adata: ad.AnnData,
        layer: str | None = AUTO,
        gene_layout: dict | None = None,
        logger: Any = None,
        callbacks: list | None = None,
    ) -> "GapFill":
        """Train on the raw counts of ``adata``.

        ``layer``: ``"auto"`` (the default) reads ``layers["counts"]`` when there is one, else
        ``X`` (as ``sc.read_10x_h5`` leaves it); a layer's name reads that layer; ``None`` reads
        ``X``. Whichever is read must hold raw counts (finite, non-negative integers), checked
        as the pipeline checks its input (:func:`scgapfill.data.io.checked_counts`).

        A new model lays the genes out on the grid first (``gene_layout`` gives a layout computed
        elsewhere, e.g. from other cells); a fitted or loaded model continues from its weights
        with its layout and scaler, the data's genes aligned to its own by name (fine-tuning).
        As in the pipeline's QC, a gene with no count in any cell is left out of a new model laid
        out here (it would be filled with a level it was never seen at; a given ``gene_layout``
        names the model's genes itself) and cells without counts do not train.
        ``logger`` and ``callbacks`` go to Lightning. Returns ``self``.
        """
        from scgapfill.train.fit import fit_gapfill

        found = checked_counts(adata, layer)
        _refuse_no_counts(found)
        positions = self._positions(adata)
        genes = [str(g) for g in found.var_names]
        if self.bundle is None:
            counts, genes = _seen(found, genes, keep_genes=gene_layout is not None)
            if positions is not None and found.n_empty_cells:
                positions = positions.rows(found.cells_with_counts)
            counts, gene_layout = laid_out(counts, genes, self.layout_params, self.model_params.depth, gene_layout)
            bundle = fit_gapfill(counts, gene_layout, self.model_params, self.train_params, logger, callbacks,
                                 positions=positions)
        else:
            if gene_layout is not None:
                raise ValueError("a fitted model keeps its gene layout; fine-tune without gene_layout")
            counts = on_model_genes(found.counts, genes, self.bundle.gene_names)
            with_counts = np.asarray(counts.sum(axis=1)).ravel() > 0
            if not with_counts.all():
                log.warning("adata: %d cells have no counts on the model's genes and do not train",
                            int((~with_counts).sum()))
                counts = counts[with_counts]
                positions = None if positions is None else positions.rows(with_counts)
            bundle = fit_gapfill(counts, self.bundle.layout, self.model_params, self.train_params, logger,
                                 callbacks, start_from=self.bundle, positions=positions)
        if bundle is not None:  # None on the extra ranks of plain DDP
            bundle.impute_params = self.impute_params
            self.bundle = bundle
        return self

    def _positions(self, adata: ad.AnnData) -> Any:
        """``adata``'s spot positions where ``model.context_graph`` asks for them (one line saying how to
        add them where they are missing); ``None`` for ``expression``."""
        from scgapfill.graph.spatial import check_graph, positions_of

        params = self.model_params if self.bundle is None else self.bundle.model
        if params.context_graph == "expression":
            return None
        positions = positions_of(adata, params.context_library_key)
        check_graph(params.context_graph, positions, adata.n_obs)
        return positions

    def impute_matrix(self, adata: ad.AnnData, layer: str | None = AUTO) -> tuple[Any, Any, dict]:
        """The layer :meth:`impute` adds, which of the data's genes were modelled, and the gene report."""
        found = checked_counts(adata, layer)
        values, modelled, report, kept = self._imputed(found, self._positions(adata))
        return _on_rows(values, kept), modelled, report

    def _imputed(self, found: InputCounts, positions: Any = None) -> tuple[Any, Any, dict, Any]:
        """The imputed values of the cells with counts on the model's genes, which genes were modelled,
        the gene report, and which cells those are (``None``: every cell). ``positions``: every cell's
        spot positions (``model.context_graph`` ``spatial`` or ``both``)."""
        from scgapfill.infer.streaming import cells_with_counts

        bundle = self._fitted()
        counts, genes = found.counts, [str(g) for g in found.var_names]
        aligned, report = align_genes(counts, genes, bundle.gene_names)
        warn_missing_genes(report)
        # As the inference pipeline does: a cell without counts on the model's genes has no depth to
        # impute at; it is skipped and its rows stay 0.
        kept = cells_with_counts(np.asarray(aligned.sum(axis=1)).ravel(), pd.DataFrame(index=found.obs_names),
                                 None, report)
        if kept.all():
            kept = None
        else:
            aligned, counts = aligned[kept], counts[kept]
            positions = None if positions is None else positions.rows(kept)
        params = self.impute_params
        if not same_genes(genes, bundle.gene_names):  # rescaled with the other genes in on_data_genes
            update = {"scale": "observed_library"}
            if params.form == "expected_log":  # made from the levels, at the depth over every gene
                update.update(form="level", fill_only_zeros=False)
            params = params.model_copy(update=update)
        out = impute_counts(bundle, aligned, params, positions=positions)
        values, modelled = on_data_genes(out, counts, genes, bundle.gene_names, self.impute_params,
                                         bundle.model.context_graph, positions)
        return values, modelled, report, kept

    def impute(
        self, adata: ad.AnnData, layer: str | None = AUTO, key_added: str = "imputed", inplace: bool = True
    ) -> ad.AnnData | None:
        """Fill the gaps of ``adata``'s counts: ``layers[key_added]``, dense float32, on every gene of ``adata``.

        The counts are read as :meth:`fit` reads them (``layer``). Values are ``log1p`` of
        expression levels: by default (``impute.scale: composition``) each
        cell's levels sum to 1e4 after filling, like ``sc.pp.normalize_total`` + ``log1p``; with
        ``observed_library`` they are per 1e4 of the cell's observed counts. The model's genes are
        imputed (aligned by name; a model gene the data lacks is filled as unobserved, then left
        out); the others are each cell's log-normalised values averaged with its nearest cells'
        (``impute.unmodelled: neighbours``; ``observed`` carries them as they are; a gene with no count
        in any cell, which :meth:`fit` leaves out of the model, stays 0). A cell without counts on the
        model's genes is skipped with a warning: its rows stay 0. ``layers[key_added + "_counts"]`` is the same
        profile in counts at the cell's observed depth. ``var["gapfill_modelled"]`` tells which
        genes were modelled and ``uns["gapfill"]`` records how the layers were made, with
        ``cells_skipped_no_counts``. With ``impute.anomaly`` (the default), ``obs["gapfill_anomaly"]`` is each cell's
        anomaly score, how badly the model predicts a tenth of its counts hidden from it (a robust z, about 0
        for a typical cell; :mod:`scgapfill.infer.anomaly`), and ``obs["gapfill_anomaly_flag"]`` marks the cells
        at 3 or more. The counts themselves are never changed. Returns None when
        ``inplace``, else a copy of ``adata``.
        """
        found = checked_counts(adata, layer)
        positions = self._positions(adata)
        values, modelled, report, kept = self._imputed(found, positions)
        in_counts = at_observed_depth(values, found.counts if kept is None else found.counts[kept])
        target = adata if inplace else adata.copy()
        if self.impute_params.anomaly:
            add_anomaly(target.obs, self._anomaly(found, kept, positions), kept)
        target.layers[key_added] = _on_rows(values, kept)
        target.layers[f"{key_added}_counts"] = _on_rows(in_counts, kept)
        target.var["gapfill_modelled"] = modelled
        target.uns["gapfill"] = {**imputation_record(self.impute_params, report), "layer": key_added,
                                 "counts_layer": f"{key_added}_counts",
                                 "cells_skipped_no_counts": int(report["cells_skipped_no_counts"])}
        return None if inplace else target

    def _anomaly(self, found: InputCounts, kept: Any, positions: Any) -> np.ndarray:
        """The anomaly score (:mod:`scgapfill.infer.anomaly`) of the cells imputed (``kept``)."""
        bundle = self._fitted()
        counts = found.counts if kept is None else found.counts[kept]
        aligned, _ = align_genes(counts, [str(g) for g in found.var_names], bundle.gene_names)
        positions = positions if positions is None or kept is None else positions.rows(kept)
        return anomaly_scores(bundle, aligned, seed=bundle.train.seed, positions=positions, params=self.impute_params)

    def streamed(self, counts: Any, obs: pd.DataFrame, chunk_size: int | None, report: dict | None = None,
                 spots: ad.AnnData | None = None) -> Any:
        """The imputation of counts already on the model's genes (:func:`~scgapfill.infer.imputation.align_genes`),
        written ``chunk_size`` cells at a time when saved (:class:`~scgapfill.infer.streaming.StreamedImputation`):
        for data whose dense result does not fit in memory. ``spots``: the cells' coordinates and images
        (:func:`~scgapfill.graph.spatial.spots_of`), carried to the output and, where ``model.context_graph``
        is ``spatial`` or ``both``, the context's neighbours. ``counts`` may be a
        :class:`~scgapfill.infer.reference.BackedCounts` (read again when saved, the graph built against its
        reference: :class:`~scgapfill.infer.reference.ReferenceImputation`); ``obs`` and ``chunk_size`` are then its own."""
        from scgapfill.infer.reference import BackedCounts, ReferenceImputation, spatial_refused
        from scgapfill.infer.streaming import StreamedImputation

        bundle = self._fitted()
        if isinstance(counts, BackedCounts):
            if bundle.model.context_graph != "expression":
                raise spatial_refused(bundle.model.context_graph, counts.shape[0], counts.reference.shape[0])
            return ReferenceImputation(bundle, counts, self.impute_params, report)
        return StreamedImputation(bundle, counts, obs, self.impute_params, chunk_size, report, spots)

    def save(self, path: str | Path) -> Path:
        """Write the weights and what they need (layout, scaler, settings) to ``path``.

        ``path`` is a folder (the file ``gapfill_model.pt`` is written in it) or a ``.pt`` file.
        The file holds tensors and plain data only: :meth:`load` never runs code from it.
        """
        path = Path(path)
        return self._fitted().save(path if path.suffix == ".pt" else path / MODEL_FILE)

    @classmethod
    def load(
        cls, source: str | Path, train: TrainParams | dict | None = None, impute: ImputeParams | dict | None = None
    ) -> "GapFill":
        """A model saved by :meth:`save` (folder or ``.pt`` file) or logged to MLflow (``models:/...``,
        ``runs:/...``), read weights-only; ``train``/``impute`` replace the settings saved with it."""
        from scgapfill.model.loading import load_bundle

        return cls.from_bundle(load_bundle(str(source), label=f"GapFill.load({str(source)!r})"), train, impute)

    def __repr__(self) -> str:
        state = f"{len(self.bundle.gene_names)} genes" if self.bundle is not None else "not trained"
        return f"GapFill({state}, depth={self.model_params.depth}, base_channels={self.model_params.base_channels})"


def _on_rows(values: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
    """``values`` of the ``kept`` cells on every cell's row, the skipped cells' rows 0."""
    if kept is None:
        return values
    full = np.zeros((len(kept), values.shape[1]), dtype=values.dtype)
    full[kept] = values
    return full


def _refuse_no_counts(found: InputCounts) -> None:
    if not found.cells_with_counts.any():
        raise ValueError(f"adata.{found.where} holds no counts (all {found.counts.shape[0]} cells are empty); "
                         "put the raw UMI counts in adata.layers['counts'] (or in X), or name their layer with layer=")


def _seen(found: InputCounts, genes: list[str], keep_genes: bool) -> tuple[Any, list[str]]:
    """The counts a new model trains on: the pipeline's QC removes genes seen in no cell and cells
    without counts before training; here they are left out of the model and said so. With
    ``keep_genes`` (a layout given: it names the model's genes) only the cells are."""
    counts = found.counts
    if found.n_unseen_genes and not keep_genes:
        unseen = [g for g, seen in zip(genes, found.genes_with_counts) if not seen]
        log.warning("adata: %d genes have no count in any cell (e.g. %s) and are left out of the model: "
                    "not filled, their imputed values stay 0 (var['gapfill_modelled'] False)",
                    len(unseen), unseen[:5])
        counts = counts[:, found.genes_with_counts]
        genes = [g for g, seen in zip(genes, found.genes_with_counts) if seen]
    if found.n_empty_cells:
        log.warning("adata: %d cells have no counts (e.g. %s) and do not train; their imputed rows stay 0",
                    found.n_empty_cells, list(found.obs_names[~found.cells_with_counts][:5]))
        counts = counts[found.cells_with_counts]
    return counts, genes
