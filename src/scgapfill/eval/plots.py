"""Figures of the benchmark. Each function returns a :class:`matplotlib.figure.Figure`;
the caller saves it.

Figures are built on the Agg canvas directly, without pyplot, so nothing is drawn on
screen, no global figure list grows, and the process-wide backend is left alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scgapfill.eval.metrics import pearson, rmse

__all__ = ["umap_before_after", "heldout_scatter", "loss_curves", "spatial_before_after", "spatial_genes"]

MAX_SCATTER_POINTS = 20_000
_MAX_LEGEND_ENTRIES = 20


def _new_figure(n_rows: int, n_cols: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    return fig, axes


def _umap(values: Any, seed: int) -> np.ndarray:
    import scanpy as sc

    from scgapfill.graph.cellgraph import scanpy_neighbours

    adata = scanpy_neighbours(values, n_pcs=50, n_neighbors=15, seed=seed)
    sc.tl.umap(adata, random_state=seed)
    return adata.obsm["X_umap"]


def _scatter_categories(ax: Any, coords: np.ndarray, categories: np.ndarray | None, title: str) -> None:
    if categories is None:  # nothing to colour by: one grey cloud
        categories = np.full(coords.shape[0], "cells")
    names = np.unique(categories)
    # tab20 pairs light/dark shades of one hue, so use it only when tab10 runs out.
    cmap = colormaps["tab10" if names.size <= 10 else "tab20"]
    for index, name in enumerate(names):
        chosen = categories == name
        colour = cmap(index % cmap.N)
        ax.scatter(coords[chosen, 0], coords[chosen, 1], s=4, color=colour, label=str(name), linewidths=0)
    if names.size <= _MAX_LEGEND_ENTRIES:
        ax.legend(fontsize="x-small", markerscale=2, frameon=False, loc="best")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")


def _check_per_cell(values: Any, n_cells: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(values).astype(str)
    if array.shape != (n_cells,):
        raise ValueError(f"{name} must have one entry per cell ({n_cells}), got shape {array.shape}")
    return array


def umap_before_after(
    before_lognorm: Any,
    after_lognorm: Any,
    labels: Any,
    clusters_before: Any,
    clusters_after: Any,
    seed: int = 0,
) -> Figure:
    """UMAPs of the data before and after imputation.

    Rows: before, after. Columns: coloured by known label and by Leiden cluster; only
    the cluster column when ``labels`` is None (clusters given as None are drawn
    uncoloured). Each matrix gets its own PCA -> neighbours -> UMAP (``random_state=seed``).
    """
    if before_lognorm.ndim != 2 or before_lognorm.shape != after_lognorm.shape:
        raise ValueError(
            f"before_lognorm {before_lognorm.shape} and after_lognorm {after_lognorm.shape} "
            "must be 2-D of one shape"
        )
    n_cells = before_lognorm.shape[0]
    if n_cells < 4:
        raise ValueError(f"a UMAP needs at least 4 cells, got {n_cells}")
    clusters = [
        _check_per_cell(clusters_before, n_cells, "clusters_before"),
        _check_per_cell(clusters_after, n_cells, "clusters_after"),
    ]
    labels = None if labels is None else _check_per_cell(labels, n_cells, "labels")
    n_cols = 1 if labels is None else 2
    fig, axes = _new_figure(2, n_cols, (5.0 * n_cols, 9.0))
    for row, (name, values) in enumerate((("before", before_lognorm), ("after", after_lognorm))):
        coords = _umap(values, seed)
        if labels is not None:
            _scatter_categories(axes[row, 0], coords, labels, f"{name} imputation: known labels")
        _scatter_categories(axes[row, n_cols - 1], coords, clusters[row], f"{name} imputation: Leiden clusters")
    return fig


def heldout_scatter(true_values: Any, imputed_values: Any, method_name: str) -> Figure:
    """Imputed vs true values of the held-out entries, with the ``y = x`` line.

    RMSE and Pearson in the title are computed on all entries; the scatter shows a fixed
    random subsample of at most 20,000 of them.
    """
    true = np.asarray(true_values, dtype=np.float64).ravel()
    imputed = np.asarray(imputed_values, dtype=np.float64).ravel()
    if true.size != imputed.size or true.size < 2:
        raise ValueError(
            f"true_values and imputed_values need one length >= 2, got {true.size} and {imputed.size}"
        )
    if not (np.all(np.isfinite(true)) and np.all(np.isfinite(imputed))):
        raise ValueError("true_values and imputed_values must be finite")
    shown = np.arange(true.size)
    if true.size > MAX_SCATTER_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(true.size, MAX_SCATTER_POINTS, replace=False))
    fig, axes = _new_figure(1, 1, (5.0, 5.0))
    ax = axes[0, 0]
    ax.scatter(true[shown], imputed[shown], s=3, alpha=0.3, linewidths=0)
    low = min(true.min(), imputed.min())
    high = max(true.max(), imputed.max())
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="y = x")
    ax.set_xlabel("true value (log1p CP10k)")
    ax.set_ylabel("imputed value (log1p CP10k)")
    ax.legend(frameon=False, loc="upper left")
    ax.set_title(
        f"{method_name}: held-out entries\nRMSE {rmse(imputed, true):.3f}, Pearson {pearson(imputed, true):.3f}"
        f" (n={true.size})"
    )
    return fig


def loss_curves(history: Any) -> Figure:
    """Train and validation loss per epoch.

    Parameters
    ----------
    history
        ``pandas.DataFrame`` with columns ``epoch``, ``train_loss``, ``val_loss``; NaN
        rows of a column (e.g. epochs without validation) are left out of its curve.
    """
    import pandas as pd

    if not isinstance(history, pd.DataFrame):
        raise ValueError(f"history must be a pandas DataFrame, got {type(history).__name__}")
    missing = [column for column in ("epoch", "train_loss", "val_loss") if column not in history.columns]
    if missing:
        raise ValueError(f"history lacks column(s) {missing}; it needs epoch, train_loss, val_loss")
    if history.empty:
        raise ValueError("history is empty; train for at least one epoch")
    fig, axes = _new_figure(1, 1, (6.0, 4.0))
    ax = axes[0, 0]
    for column, label in (("train_loss", "train"), ("val_loss", "validation")):
        rows = history[["epoch", column]].dropna()
        ax.plot(rows["epoch"].to_numpy(), rows[column].to_numpy(), marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("training curves")
    ax.legend(frameon=False)
    return fig


# Sections drawn at most, and genes per figure: enough to see a pattern, few enough to read.
_MAX_SECTIONS = 2
N_SPATIAL_GENES = 3


def spatial_genes(adata: Any, n_genes: int = N_SPATIAL_GENES, k: int = 6, library_key: str = "library_id") -> list[str]:
    """The ``n_genes`` modelled genes whose imputed values are most spatially autocorrelated (Moran's I
    over each spot's ``k`` nearest spots of its section): the patterns worth looking at on the tissue."""
    import scanpy as sc

    from scgapfill.graph.spatial import positions_of, spatial_graph

    modelled = np.asarray(adata.var.get("gapfill_modelled", np.ones(adata.n_vars, bool)), dtype=bool)
    values = np.asarray(adata.layers["imputed"])[:, modelled]
    graph = spatial_graph(positions_of(adata, library_key), k)
    score = np.nan_to_num(np.asarray(sc.metrics.morans_i(graph, values.T)), nan=-np.inf)
    return list(np.asarray(adata.var_names)[modelled][np.argsort(-score)[:n_genes]])


def spatial_before_after(adata: Any, genes: list[str], library_key: str = "library_id",
                         image_key: str = "hires") -> Figure:
    """Genes on the tissue image, before (``X``, the log-normalised counts given) and after imputation
    (``layers["imputed"]``): one row per gene, a before and an after column per section (two at most).

    ``adata`` has the spots' ``obsm["spatial"]`` (full-resolution pixels) and, as ``scanpy.pl.spatial``
    reads them, ``uns["spatial"][library]["images"][image_key]`` and its ``scalefactors``
    (``tissue_<image_key>_scalef``); the spots of each section are read from ``obs[library_key]``."""
    libraries = list(adata.uns["spatial"])[:_MAX_SECTIONS]
    of_spot = (adata.obs[library_key].astype(str).to_numpy() if library_key in adata.obs
               else np.full(adata.n_obs, libraries[0]))
    coords = np.asarray(adata.obsm["spatial"], dtype=float)
    columns = [(lib, name) for lib in libraries for name in ("before", "after")]
    fig, axes = _new_figure(len(genes), len(columns), (3.2 * len(columns), 3.2 * len(genes)))
    for row, gene in enumerate(genes):
        j = adata.var_names.get_loc(gene)
        layers = {"before": adata.X[:, j], "after": adata.layers["imputed"][:, j]}
        layers = {k: np.asarray(v.toarray() if hasattr(v, "toarray") else v, dtype=float).ravel()
                  for k, v in layers.items()}
        top = max(float(np.percentile(np.concatenate(list(layers.values())), 99.5)), 1e-6)
        for col, (lib, name) in enumerate(columns):
            ax, spots = axes[row, col], of_spot == lib
            section = adata.uns["spatial"][lib]
            scale = float(section["scalefactors"].get(f"tissue_{image_key}_scalef", 1.0))
            image = section.get("images", {}).get(image_key)
            if image is not None:
                ax.imshow(image)
            points = ax.scatter(coords[spots, 0] * scale, coords[spots, 1] * scale, c=layers[name][spots],
                                s=4, cmap="viridis", vmin=0, vmax=top, linewidths=0)
            if image is None:
                ax.invert_yaxis()  # image rows run downwards
            ax.set_title(f"{gene}: {name} ({lib})", fontsize=9)
            ax.set_axis_off()
        fig.colorbar(points, ax=axes[row, -1], shrink=0.8, label="log1p per 1e4")
    return fig
