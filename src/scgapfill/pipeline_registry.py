"""Project pipelines: each stage on its own, ``training`` (all four, the default) and the rest."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from scgapfill.pipelines import data_processing, masking


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        "data_processing": data_processing.create_pipeline(),
        "masking": masking.create_pipeline(),
    }
    pipelines["training"] = pipelines["data_processing"] + pipelines["masking"]
    pipelines["__default__"] = pipelines["training"]
    return pipelines
