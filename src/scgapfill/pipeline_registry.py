"""Project pipelines: each stage on its own, ``training`` (all four, the default), ``inference``, ``benchmark``."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from scgapfill.pipelines import benchmark, data_processing, evaluation, inference, masking, modeling


def register_pipelines() -> dict[str, Pipeline]:
    stages = {
        "data_processing": data_processing.create_pipeline(),
        "masking": masking.create_pipeline(),
        "modeling": modeling.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
    }
    training = sum(stages.values(), Pipeline([]))
    return {
        **stages,
        "training": training,
        "__default__": training,
        "inference": inference.create_pipeline(),
        "benchmark": benchmark.create_pipeline(),
    }
