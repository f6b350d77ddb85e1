"""Apply a trained model to a new data set."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
