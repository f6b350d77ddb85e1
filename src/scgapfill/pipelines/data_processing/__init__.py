"""QC, normalisation and gene selection."""

from scgapfill.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
