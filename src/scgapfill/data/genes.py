"""A data set's genes lined up with a model's: columns reordered, missing genes as unobserved zeros."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

MIN_GENE_OVERLAP = 0.5
# Above this share of the model's genes missing from the data, a WARNING. Data annotated with another
# release of the same gene set can lack a few percent (renamed or retired symbols); beyond a
# tenth the cause is more often other identifiers (symbols vs Ensembl IDs) or another gene selection,
# and each missing gene is filled in every cell from the other genes alone, never from its own counts.
MISSING_GENE_WARNING = 0.1

def missing_gene_share(report: dict) -> float:
    """The share of the model's genes that the data lacks, from :func:`align_genes`' report."""
    n_model = int(report["n_model_genes"])
    return int(report["n_missing"]) / n_model if n_model else 0.0


def warn_missing_genes(report: dict) -> float:
    """Log the share of the model's genes the data lacks (a WARNING above ``MISSING_GENE_WARNING``); returns it."""
    share = missing_gene_share(report)
    if share > MISSING_GENE_WARNING:
        log.warning(
            "%.0f%% of the model's genes (%d of %d) are not in the data, e.g. %s: they are filled from the other "
            "genes alone; check that the data's gene identifiers (var_names) are the model's kind, symbols vs "
            "Ensembl IDs", 100 * share, report["n_missing"], report["n_model_genes"], report["missing_genes"][:5],
        )
    return share


def align_genes(counts_csr: Any, gene_names: Any, model_genes: Any) -> tuple[sp.csr_matrix, dict]:
    """Reorder the columns of ``counts_csr`` to the model's genes.

    Parameters
    ----------
    counts_csr
        Cells x genes counts (sparse or dense).
    gene_names
        Names of its columns.
    model_genes
        The model's genes (``bundle.gene_names``).

    Returns
    -------
    aligned : scipy.sparse.csr_matrix
        Cells x model genes; a model gene absent from the data is an all-zero
        column, i.e. unobserved, to be filled like any zero.
    report : dict
        ``n_model_genes``, ``n_present``, ``n_missing``, ``missing_genes`` (all of
        them), ``n_extra`` and ``extra_genes`` (data genes the model ignores).

    Raises
    ------
    ValueError
        If gene names are duplicated or fewer than half of the model's genes are present.
    """
    gene_names = [str(g) for g in gene_names]
    model_genes = [str(g) for g in model_genes]
    if counts_csr.shape[1] != len(gene_names):
        raise ValueError(f"counts have {counts_csr.shape[1]} columns but {len(gene_names)} gene names were given")
    for what, names in (("data", gene_names), ("model", model_genes)):
        seen, dupes = set(), []
        for name in names:
            if name in seen:
                dupes.append(name)
            seen.add(name)
        if dupes:
            raise ValueError(
                f"{what} gene names are not unique ({len(dupes)} duplicates, e.g. {dupes[:5]}); "
                "make them unique (AnnData.var_names_make_unique) before imputing"
            )
    column_of = {name: i for i, name in enumerate(gene_names)}
    present = [(column_of[g], j) for j, g in enumerate(model_genes) if g in column_of]
    missing = [g for g in model_genes if g not in column_of]
    model_set = set(model_genes)
    extra = [g for g in gene_names if g not in model_set]
    if len(present) < MIN_GENE_OVERLAP * len(model_genes):
        raise ValueError(
            f"only {len(present)} of the model's {len(model_genes)} genes are in the data "
            f"(need at least {MIN_GENE_OVERLAP:.0%}); missing e.g. {missing[:5]}. "
            "Check that gene identifiers match (symbols vs Ensembl IDs) and the organism is the same"
        )
    if gene_names == model_genes:  # nothing to move: no copy of a matrix that may be most of memory
        aligned = sp.csr_matrix(counts_csr)
        if not aligned.has_sorted_indices:
            aligned = aligned.sorted_indices()  # a copy: the caller's matrix is never changed
    else:
        source = np.array([s for s, _ in present], dtype=np.int64)
        target = np.array([t for _, t in present], dtype=np.int64)
        # A 0/1 selection matrix moves columns without densifying the data.
        selector = sp.csr_matrix(
            (np.ones(len(present)), (source, target)), shape=(len(gene_names), len(model_genes))
        )
        matrix = counts_csr if sp.issparse(counts_csr) else sp.csr_matrix(counts_csr)
        aligned = sp.csr_matrix(matrix @ selector)
        aligned.sort_indices()
    report = {
        "n_model_genes": len(model_genes),
        "n_present": len(present),
        "n_missing": len(missing),
        "missing_genes": missing,
        "n_extra": len(extra),
        "extra_genes": extra,
    }
    return aligned, report
