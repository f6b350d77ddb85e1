"""Held-out evaluation mask, the masked copy everything trains on, and the MCV split."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
