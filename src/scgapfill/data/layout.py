"""Gene-to-pixel layouts: how a cell's expression vector becomes a 2-D image.

Convolutions assume neighbouring pixels are related, but gene order in a file
is arbitrary. A layout places each gene on one pixel of an ``H x W`` grid.
Strategies:

``given``
    genes in file order, row by row.
``random``
    a seeded permutation (a control: it destroys any structure).
``correlation``
    genes seriated by gene-gene correlation (hierarchical clustering with
    optimal leaf ordering), then folded onto the grid along a generalised
    Hilbert curve, so genes close in the order stay close in 2-D.

A layout is plain data (``dict``) so it can be saved as JSON in the catalog and
reused at inference.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from scgapfill.data.genes import align_genes
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.params import LayoutParams, parse

log = logging.getLogger(__name__)

Strategy = Literal["given", "random", "correlation"]
STRATEGIES: tuple[str, ...] = ("given", "random", "correlation")


def grid_shape(n_genes: int, divisor: int) -> tuple[int, int]:
    """Smallest near-square ``(H, W)`` with ``H * W >= n_genes``, both sides divisible by ``divisor``."""
    if n_genes < 1:
        raise ValueError(f"grid_shape needs at least one gene, got n_genes={n_genes}")
    if divisor < 1:
        raise ValueError(f"grid divisor must be >= 1, got {divisor} (it is 2**model.depth)")
    width = divisor * math.ceil(math.sqrt(n_genes) / divisor)
    height = divisor * math.ceil(n_genes / width / divisor)
    return height, width


def gilbert_curve(height: int, width: int) -> np.ndarray:
    """Pixels of an ``height x width`` grid in generalised Hilbert order, as flat indices.

    Generalised Hilbert ("gilbert") curve for arbitrary rectangles: consecutive
    pixels are 4-neighbours whenever the sides are even, which grid_shape ensures
    for any U-Net of depth >= 1.
    """
    order: list[int] = []

    def generate(x: int, y: int, ax: int, ay: int, bx: int, by: int) -> None:
        w = abs(ax + ay)
        h = abs(bx + by)
        dax, day = (ax > 0) - (ax < 0), (ay > 0) - (ay < 0)
        dbx, dby = (bx > 0) - (bx < 0), (by > 0) - (by < 0)
        if h == 1:
            for _ in range(w):
                order.append(y * width + x)
                x, y = x + dax, y + day
            return
        if w == 1:
            for _ in range(h):
                order.append(y * width + x)
                x, y = x + dbx, y + dby
            return
        ax2, ay2 = ax // 2, ay // 2
        bx2, by2 = bx // 2, by // 2
        w2 = abs(ax2 + ay2)
        h2 = abs(bx2 + by2)
        if 2 * w > 3 * h:
            if w2 % 2 and w > 2:
                ax2, ay2 = ax2 + dax, ay2 + day
            generate(x, y, ax2, ay2, bx, by)
            generate(x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by)
        else:
            if h2 % 2 and h > 2:
                bx2, by2 = bx2 + dbx, by2 + dby
            generate(x, y, bx2, by2, ax2, ay2)
            generate(x + bx2, y + by2, ax, ay, bx - bx2, by - by2)
            generate(
                x + (ax - dax) + (bx2 - dbx),
                y + (ay - day) + (by2 - dby),
                -bx2,
                -by2,
                -(ax - ax2),
                -(ay - ay2),
            )

    if width >= height:
        generate(0, 0, width, 0, 0, height)
    else:
        generate(0, 0, 0, height, width, 0)
    return np.asarray(order, dtype=np.int64)


def _gene_correlation(X: Any, block_rows: int = 4096) -> np.ndarray:
    """Gene-gene Pearson correlation of a cells x genes matrix, densified a block of rows at a time.

    The Gram matrix of dense blocks is a BLAS product, several times faster than the sparse product at
    tens of thousands of cells, in at most ``block_rows`` x genes of float64 beyond the matrix itself.
    """
    n, n_genes = X.shape
    gram = np.zeros((n_genes, n_genes))
    total = np.zeros(n_genes)
    for start in range(0, n, block_rows):
        block = X[start:start + block_rows]
        block = np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)
        gram += block.T @ block
        total += block.sum(axis=0)
    mean = total / n
    cov = gram / n - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    corr = np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def correlation_order(X: Any) -> np.ndarray:
    """Seriate genes so that correlated genes are adjacent in the order."""
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    n_genes = X.shape[1]
    if n_genes < 3:
        return np.arange(n_genes)
    dist = 1.0 - _gene_correlation(X)
    np.fill_diagonal(dist, 0.0)
    condensed = squareform(np.clip((dist + dist.T) / 2, 0, None), checks=False)
    tree = linkage(condensed, method="average")
    tree = optimal_leaf_ordering(tree, condensed)
    return leaves_list(tree).astype(np.int64)


def compute_layout(
    X: Any,
    gene_names: list[str],
    strategy: str = "correlation",
    divisor: int = 4,
    seed: int = 0,
    spacing: float = 1.0,
) -> dict:
    """Place genes on a grid.

    Parameters
    ----------
    X
        Cells x genes expression (log-normalised), sparse or dense; used by ``correlation``.
    gene_names
        Names of the columns of ``X``, in order.
    strategy
        ``given``, ``random`` or ``correlation``.
    divisor
        Both grid sides are multiples of this (``2**depth`` of the U-Net).
    seed
        Seed of the ``random`` strategy.
    spacing
        Pixels per gene: 1 is the smallest grid that holds the genes, side by side; above 1 the grid
        has about ``spacing`` times as many pixels and the genes sit evenly apart along the order,
        so each convolution sees fewer genes.

    Returns
    -------
    dict with ``genes`` (names, column order), ``positions`` (flat pixel of each
    gene, same order), ``shape`` ``[H, W]``, ``strategy``.
    """
    n_genes = len(gene_names)
    if X.shape[1] != n_genes:
        raise ValueError(f"layout: matrix has {X.shape[1]} genes but {n_genes} gene names were given")
    if strategy not in STRATEGIES:
        raise ValueError(f"layout.strategy={strategy!r} is not one of {list(STRATEGIES)}")
    if spacing < 1:
        raise ValueError(f"layout.spacing={spacing} is below 1: the grid needs a pixel for every gene")
    height, width = grid_shape(math.ceil(n_genes * spacing), divisor)
    if strategy == "given":
        order = np.arange(n_genes)
        pixels = np.arange(height * width)
    elif strategy == "random":
        order = np.random.default_rng(seed).permutation(n_genes)
        pixels = np.arange(height * width)
    else:
        order = correlation_order(X)
        pixels = gilbert_curve(height, width)
    positions = np.empty(n_genes, dtype=np.int64)
    # At 1 the genes stay side by side and the grid's spare pixels at the curve's end: the layouts of
    # before the parameter existed, pixel for pixel.
    slots = np.arange(n_genes) if spacing == 1 else np.arange(n_genes) * (height * width) // n_genes
    positions[order] = pixels[slots]
    log.info("Gene layout %s: %d genes on a %dx%d grid", strategy, n_genes, height, width)
    return {
        "genes": [str(g) for g in gene_names],
        "positions": positions.tolist(),
        "shape": [int(height), int(width)],
        "strategy": strategy,
    }


def validate_layout(layout: dict) -> None:
    """Raise ValueError if a (possibly loaded) layout is inconsistent."""
    for key in ("genes", "positions", "shape"):
        if key not in layout:
            raise ValueError(f"gene layout lacks the key {key!r}; recompute it (the modeling pipeline's compute_gene_layout_node)")
    height, width = layout["shape"]
    positions = np.asarray(layout["positions"])
    if len(positions) != len(layout["genes"]):
        raise ValueError("gene layout: 'positions' and 'genes' differ in length")
    if positions.min(initial=0) < 0 or positions.max(initial=0) >= height * width:
        raise ValueError(f"gene layout: a position lies outside the {height}x{width} grid")
    if len(np.unique(positions)) != len(positions):
        raise ValueError("gene layout: two genes share a pixel")


def to_grid(X: Any, layout: dict) -> np.ndarray:
    """Cells x genes (a batch; sparse rows are densified here only) -> ``(n, 1, H, W)`` float32."""
    height, width = layout["shape"]
    positions = np.asarray(layout["positions"], dtype=np.int64)
    if X.shape[1] != len(positions):
        raise ValueError(f"to_grid: batch has {X.shape[1]} genes, the layout has {len(positions)}")
    dense = X.toarray() if sp.issparse(X) else np.asarray(X)
    out = np.zeros((dense.shape[0], height * width), dtype=np.float32)
    out[:, positions] = dense
    return out.reshape(dense.shape[0], 1, height, width)


def from_grid(grid: Any, layout: dict) -> np.ndarray:
    """``(n, C, H, W)`` or ``(n, H, W)`` grids -> cells x genes, in the layout's gene order (channel 0)."""
    grid = np.asarray(grid)
    if grid.ndim == 4:
        grid = grid[:, 0]
    height, width = layout["shape"]
    if grid.shape[1:] != (height, width):
        raise ValueError(f"from_grid: grid is {grid.shape[1:]}, the layout is {height}x{width}")
    positions = np.asarray(layout["positions"], dtype=np.int64)
    return grid.reshape(grid.shape[0], height * width)[:, positions]


# --- a model's layout and its genes: what GapFill.fit and the shard writer prepare alike ---

def compute_gene_layout(values: Any, genes: list[str], layout: LayoutParams | dict | None, depth: int) -> dict:
    """The genes placed on a grid whose sides the U-Net can halve ``depth`` times.

    ``values`` are the log-normalised counts the layout is learned from (the ``correlation``
    strategy orders genes by their correlation across these cells).
    """
    params = parse("layout", layout)
    return compute_layout(values, list(genes), strategy=params.strategy, divisor=2**depth, seed=params.seed,
                          spacing=params.spacing)


def laid_out(counts: Any, genes: list[str], layout: LayoutParams | dict | None, depth: int,
             gene_layout: dict | None = None) -> tuple[Any, dict]:
    """The counts on a new model's genes, in its column order, and its layout (``gene_layout``, or
    one learned from the counts' log-normalised values by :func:`compute_gene_layout`).

    What :meth:`GapFill.fit` trains a new model on; :mod:`scgapfill.train.shards` prepares the same.
    """
    if gene_layout is None:
        gene_layout = compute_gene_layout(lognorm(counts, size_factors(counts)), genes, layout, depth)
    return on_model_genes(counts, genes, gene_layout["genes"]), gene_layout


def on_model_genes(counts: Any, genes: list[str], model_genes: list[str]) -> Any:
    """``counts`` with the model's genes as columns, in its order (as given when they already are)."""
    if list(genes) == [str(g) for g in model_genes]:
        return counts
    aligned, report = align_genes(counts, genes, model_genes)
    if report["n_missing"]:
        log.warning("%d of the model's %d genes are not in the data; they train as unobserved",
                    report["n_missing"], report["n_model_genes"])
    return aligned
