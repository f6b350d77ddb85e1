"""Train the U-Net on the masked counts and impute every cell."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
