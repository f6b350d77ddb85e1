"""Every method on every embedded data set, several mask seeds, one table and one MLflow run per method."""

from scgapfill.pipelines.benchmark.pipeline import create_pipeline

__all__ = ["create_pipeline"]
