"""Data for the U-Net: per-gene scaling and a
cell dataset whose batches become grids one batch at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset

from scgapfill.data.layout import to_grid
from scgapfill.data.normalization import check_counts
from scgapfill.graph.cellgraph import NeighbourWalk, walk_mean


def as_counts_matrix(counts: Any, caller: str) -> sp.csr_matrix:
    """Accept only a cells x genes matrix (scipy sparse or numpy), as float64 CSR.

    An AnnData (or anything else) is refused on purpose: the caller hands over
    exactly the matrix the model may see, never an object that could carry the
    held-out truth in a layer.
    """
    if not (sp.issparse(counts) or isinstance(counts, np.ndarray)):
        raise TypeError(
            f"{caller} takes a counts matrix (scipy.sparse or numpy.ndarray), got {type(counts).__name__}; "
            "pass the masked counts matrix itself, e.g. adata.layers['counts'] of the masked AnnData"
        )
    return check_counts(counts, "counts")



class GeneScaler:
    """Per-gene scale mapping log-normalised values into [0, 1] for the sigmoid output.

    Parameters
    ----------
    scale
        One positive value per gene (the divisor).
    quantile
        The quantile of each gene's values (zeros included) the scale was taken
        from; 1.0 is the maximum.
    """

    def __init__(self, scale: Any, quantile: float = 1.0) -> None:
        scale = np.asarray(scale, dtype=np.float64)
        if scale.ndim != 1 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError("GeneScaler.scale must be a 1-D array of finite values > 0; refit it with GeneScaler.fit")
        self.scale = scale
        self.quantile = float(quantile)

    @classmethod
    def fit(cls, lognorm: Any, quantile: float = 1.0) -> "GeneScaler":
        """Learn the scale from (training cells') log-normalised values.

        Genes that are zero in every given cell get scale 1, so they stay finite.
        """
        if not 0 < quantile <= 1:
            raise ValueError(f"GeneScaler quantile must lie in (0, 1], got {quantile}")
        if quantile == 1.0:
            top = np.asarray(lognorm.max(axis=0).toarray() if sp.issparse(lognorm) else np.max(lognorm, axis=0))
            top = top.ravel().astype(np.float64)
        else:
            csc = sp.csc_matrix(lognorm)
            n_cells = csc.shape[0]
            top = np.zeros(csc.shape[1])
            for gene in range(csc.shape[1]):
                column = csc.data[csc.indptr[gene] : csc.indptr[gene + 1]]
                # Zeros count too: a quantile of the nonzero values alone would overstate rare genes.
                full = np.concatenate([column, np.zeros(n_cells - column.size)])
                top[gene] = np.quantile(full, quantile)
        top = np.where(top > 0, top, 1.0)
        return cls(top, quantile)

    @property
    def n_genes(self) -> int:
        return int(self.scale.size)

    def _check(self, values: Any) -> None:
        if values.shape[1] != self.n_genes:
            raise ValueError(f"GeneScaler was fitted on {self.n_genes} genes, got a matrix with {values.shape[1]}")

    def transform(self, values: Any) -> Any:
        """Divide by the scale and clip to [0, 1]; CSR in, CSR out (float32), dense in, dense out."""
        self._check(values)
        inverse_scale = (1.0 / self.scale).astype(np.float32)
        if sp.issparse(values):
            out = sp.csr_matrix(values, dtype=np.float32, copy=True)
            out.data *= inverse_scale[out.indices]
            np.clip(out.data, 0.0, 1.0, out=out.data)
            return out
        return np.clip(np.asarray(values, dtype=np.float32) * inverse_scale, 0.0, 1.0)

    def inverse(self, values: Any) -> np.ndarray:
        """Back to log-normalised values (dense float32)."""
        self._check(values)
        dense = values.toarray() if sp.issparse(values) else np.asarray(values)
        return (dense * self.scale.astype(np.float32)).astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        return {"scale": self.scale.tolist(), "quantile": self.quantile}

    @classmethod
    def from_dict(cls, payload: dict) -> "GeneScaler":
        return cls(payload["scale"], payload.get("quantile", 1.0))


def valid_pixels(layout: dict) -> np.ndarray:
    """``(1, 1, H, W)`` boolean grid, true where a gene sits."""
    return to_grid(np.ones((1, len(layout["positions"])), dtype=np.float32), layout) > 0


class ContextRows:
    """The scaled neighbour context of any cells, computed when a batch asks for it.

    Holds the walk (cells x cells) and the matrix it averages (cells x genes), both sparse, so no
    dense cells x genes array of the whole data exists; ``ContextRows(...)(all cells)`` equals
    ``scaler.transform(neighbour_context(...))``.
    """

    def __init__(self, walk: Any, source: sp.csr_matrix, space: str, scaler: "GeneScaler") -> None:
        # A NeighbourWalk (rows computed per batch) or any matrix of the walk.
        self.walk = walk if isinstance(walk, NeighbourWalk) else sp.csr_matrix(walk)
        self.source, self.space, self.scaler = source, space, scaler

    def __call__(self, cells: Any) -> np.ndarray:
        return self.scaler.transform(walk_mean(self.walk[np.asarray(cells)], self.source, self.space))


class CellDataset(Dataset):
    """One cell at a time from a CSR matrix: its index, nonzero columns and values, and size factor.

    Densification happens in :class:`GeneCollate`, one batch at a time.
    """

    def __init__(self, values: sp.csr_matrix, cells: Any = None, size_factors: np.ndarray | None = None) -> None:
        self.values = sp.csr_matrix(values, dtype=np.float32)
        self.size_factors = None if size_factors is None else np.asarray(size_factors, dtype=np.float32)
        self.cells = np.arange(self.values.shape[0]) if cells is None else np.asarray(cells, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.cells.size)

    def __getitem__(self, item: int) -> tuple:
        cell = int(self.cells[item])
        start, end = self.values.indptr[cell], self.values.indptr[cell + 1]
        size_factor = None if self.size_factors is None else self.size_factors[cell]
        return cell, self.values.indices[start:end], self.values.data[start:end], size_factor


class GeneCollate:
    """A batch dict of ``(b, genes)`` float tensors, ``values`` and maybe ``context`` and ``size_factor``.

    Rows stay in gene order: the module lays them on the grid after the batch reaches its device
    (:class:`GridScatter`), where the scatter is one indexed copy instead of a CPU pass per batch.
    """

    def __init__(self, n_genes: int, context: ContextRows | None = None) -> None:
        self.n_genes = int(n_genes)
        self.context = context

    def __call__(self, items: list[tuple]) -> dict[str, torch.Tensor]:
        dense = np.zeros((len(items), self.n_genes), dtype=np.float32)
        for row, (_, columns, data, _) in enumerate(items):
            dense[row, columns] = data
        batch = {"values": torch.from_numpy(dense)}
        if self.context is not None:
            batch["context"] = torch.from_numpy(self.context([item[0] for item in items]))
        if items and items[0][3] is not None:
            batch["size_factor"] = torch.tensor([item[3] for item in items], dtype=torch.float32).view(-1, 1, 1, 1)
        return batch


class GridScatter(torch.nn.Module):
    """Gene rows ``(b, genes)`` -> grids ``(b, 1, H, W)`` on whatever device the rows are (padding zero)."""

    def __init__(self, layout: dict) -> None:
        super().__init__()
        self.shape = tuple(int(x) for x in layout["shape"])
        self.register_buffer("positions", torch.as_tensor(np.asarray(layout["positions"], dtype=np.int64)),
                             persistent=False)
        self.register_buffer("valid", torch.from_numpy(valid_pixels(layout)), persistent=False)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        grid = rows.new_zeros((rows.shape[0], self.shape[0] * self.shape[1]))
        grid[:, self.positions] = rows
        return grid.view(rows.shape[0], 1, *self.shape)
