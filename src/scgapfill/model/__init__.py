"""The user-facing model: :class:`GapFill` (fit, impute, save, load) and the one-call :func:`impute`.

Importing this package imports torch and Lightning (seconds); ``import scgapfill`` stays light
and loads it on first use of ``scgapfill.GapFill`` or ``scgapfill.impute``.
"""

from scgapfill.model.gapfill import GapFill, compute_gene_layout
from scgapfill.model.quick import impute

__all__ = ["GapFill", "compute_gene_layout", "impute"]
