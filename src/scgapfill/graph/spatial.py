"""Neighbours in tissue space: spots of a section near each other, for spatial data (Visium and the like).

``model.context_graph`` chooses the graph of the context channel and of the neighbour fill of the genes
the model does not estimate (``impute.unmodelled: neighbours``):

- ``expression``: each cell's ``k`` nearest cells in PCA space of its counts (the default; nothing here
  is used);
- ``spatial``: each spot's ``k`` nearest spots by ``obsm["spatial"]`` coordinates, within its own section
  (``obs[model.context_library_key]``, when that column is there): a spot never takes a neighbour from
  another tissue section, whose coordinates are on an unrelated frame;
- ``both``: the union of the two neighbour sets, each neighbour weighted equally (up to ``2k`` per spot,
  fewer where the two agree). The expression neighbours may come from any section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

GRAPHS = ("expression", "spatial", "both")
SPATIAL_KEY = "spatial"


@dataclass(frozen=True)
class SpotPositions:
    """Each spot's coordinates (``obsm["spatial"]``) and, when known, its section (library id)."""

    coords: np.ndarray  # (n_spots, n_dims) float64
    libraries: np.ndarray | None = None  # (n_spots,) section names; None: one section

    def __post_init__(self) -> None:
        coords = np.asarray(self.coords, dtype=np.float64)
        if coords.ndim != 2 or not np.isfinite(coords).all():
            raise ValueError(f"obsm['{SPATIAL_KEY}'] must be finite spots x dimensions coordinates, "
                             f"got shape {coords.shape}")
        object.__setattr__(self, "coords", coords)
        if self.libraries is not None:
            libraries = np.asarray(self.libraries).astype(str)
            if libraries.shape != (coords.shape[0],):
                raise ValueError(f"{libraries.shape[0]} section names for {coords.shape[0]} spots")
            object.__setattr__(self, "libraries", libraries)

    def __len__(self) -> int:
        return self.coords.shape[0]

    def rows(self, rows: Any) -> "SpotPositions":
        """The positions of some spots (a boolean mask or indices), in that order."""
        return SpotPositions(self.coords[rows], None if self.libraries is None else self.libraries[rows])


def positions_of(adata: Any, library_key: str | None = "library_id") -> SpotPositions | None:
    """``adata``'s spot positions, or ``None`` where ``obsm["spatial"]`` is absent. ``library_key`` names
    the obs column of each spot's section; where ``adata`` has no such column every spot is one section."""
    if SPATIAL_KEY not in adata.obsm:
        return None
    libraries = None
    if library_key and library_key in adata.obs:
        libraries = adata.obs[library_key].astype(str).to_numpy()
    return SpotPositions(np.asarray(adata.obsm[SPATIAL_KEY]), libraries)


def check_graph(mode: str, positions: SpotPositions | None, n_cells: int | None = None) -> None:
    """One line saying what to do when ``mode`` needs spot positions and there are none (or not one per cell)."""
    if mode not in GRAPHS:
        raise ValueError(f"model.context_graph must be one of {list(GRAPHS)}, got {mode!r}")
    if mode == "expression":
        return
    if positions is None:
        raise ValueError(f"model.context_graph={mode!r} needs spot coordinates in adata.obsm['{SPATIAL_KEY}'], "
                         "which this data lacks: add them (scanpy/squidpy's Visium readers put them there) "
                         "or set model.context_graph=expression")
    if n_cells is not None and len(positions) != n_cells:
        raise ValueError(f"model.context_graph={mode!r}: {len(positions)} spot positions for {n_cells} cells")


def spatial_graph(positions: SpotPositions, k: int) -> sp.csr_matrix:
    """Weight ``1/k`` on each spot's ``k`` nearest spots of its own section (itself excluded; ``k`` capped
    at the section's spots less one). A section of one spot has no neighbour to take: refused."""
    from sklearn.neighbors import NearestNeighbors

    if k < 1:
        raise ValueError(f"model.context_k must be >= 1, got {k}")
    n_spots = len(positions)
    libraries = positions.libraries if positions.libraries is not None else np.zeros(n_spots, dtype=str)
    rows, cols, weights = [], [], []
    for library in np.unique(libraries):
        members = np.flatnonzero(libraries == library)
        if len(members) < 2:
            raise ValueError(f"section {library!r} has {len(members)} spot: spatial neighbours need at least 2 "
                             "spots per section (obs[model.context_library_key])")
        k_here = min(k, len(members) - 1)
        coords = positions.coords[members]
        _, found = NearestNeighbors(n_neighbors=k_here + 1).fit(coords).kneighbors(coords)
        own = np.arange(len(members))
        # The spot itself wherever it is among the found (duplicate coordinates), else the farthest.
        is_self = found == own[:, None]
        is_self[~is_self.any(axis=1), -1] = True
        found = found[~is_self].reshape(len(members), k_here)
        rows.append(np.repeat(members, k_here))
        cols.append(members[found.ravel()])
        weights.append(np.full(len(members) * k_here, 1.0 / k_here))
    return sp.csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n_spots, n_spots))


def union_graph(*graphs: sp.spmatrix) -> sp.csr_matrix:
    """Equal weights on every neighbour any of ``graphs`` gives a row (the diagonal left out), rows summing to 1."""
    union = sp.csr_matrix(graphs[0].shape, dtype=np.float64)
    for graph in graphs:
        union = union + (sp.csr_matrix(graph) != 0).astype(np.float64)
    union.setdiag(0.0)
    union.eliminate_zeros()
    union.data[:] = 1.0
    sums = np.asarray(union.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(sums, 1.0)) @ union)


def context_graph(mode: str, expression: Callable[[], sp.csr_matrix], positions: SpotPositions | None,
                  k: int) -> sp.csr_matrix:
    """The one-step graph of ``mode`` (``1/k`` weights, zero diagonal, rows summing to 1).

    ``expression`` makes the expression graph (only called where ``mode`` needs it)."""
    check_graph(mode, positions)
    if mode == "expression":
        return expression()
    spatial = spatial_graph(positions, k)
    if mode == "spatial":
        return spatial
    return union_graph(expression(), spatial)


def spots_of(adata: Any) -> Any:
    """An AnnData of ``adata``'s cell annotations, spot coordinates and images only (no ``X``: cheap to keep
    and to subset), or ``None`` where ``adata`` has no ``obsm["spatial"]``. What :func:`positions_of` and
    :func:`carry_spatial` read."""
    import anndata as ad

    if SPATIAL_KEY not in adata.obsm:
        return None
    spots = ad.AnnData(obs=adata.obs.reset_index(drop=True).rename(index=str))
    spots.obsm[SPATIAL_KEY] = np.asarray(adata.obsm[SPATIAL_KEY])
    if SPATIAL_KEY in adata.uns:
        spots.uns[SPATIAL_KEY] = adata.uns[SPATIAL_KEY]
    return spots


def carry_spatial(source: Any, target: Any) -> Any:
    """``target`` with ``source``'s spot coordinates (``obsm["spatial"]``, rows lined up) and images and
    scale factors (``uns["spatial"]``) where ``source`` has them, so ``scanpy.pl.spatial`` draws it."""
    if SPATIAL_KEY in source.obsm:
        target.obsm[SPATIAL_KEY] = np.asarray(source.obsm[SPATIAL_KEY]).copy()
    if SPATIAL_KEY in source.uns:
        target.uns[SPATIAL_KEY] = source.uns[SPATIAL_KEY]
    return target
