"""Held-out evaluation mask, the masked copy everything trains on, and the MCV split."""

from scgapfill.pipelines.masking.pipeline import create_pipeline

__all__ = ["create_pipeline"]
