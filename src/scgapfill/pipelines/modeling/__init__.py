"""Lay the genes out, train the U-Net on the masked counts, impute the masked copy for scoring and every
processed count for the deliverable."""

from scgapfill.pipelines.modeling.pipeline import create_pipeline

__all__ = ["create_pipeline"]
