"""Apply a trained model to a new data set."""

from scgapfill.pipelines.inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
