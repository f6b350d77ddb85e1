"""QC, normalisation, gene selection and the gene layout of the grid."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
