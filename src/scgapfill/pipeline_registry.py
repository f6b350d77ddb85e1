"""Project pipelines: each stage on its own, ``training`` (all four, the default), ``inference``, ``benchmark``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, pipeline

from scgapfill.pipelines import benchmark, data_processing, evaluation, inference, masking, modeling

LAYOUT_NODE = "gene_layout_node"


def register_pipelines() -> dict[str, Pipeline]:
    processing = data_processing.create_pipeline()
    stages = {
        "data_processing": processing,
        "masking": masking.create_pipeline(),
        "modeling": modeling.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
    }
    # In training the layout is computed from the masked counts, so the held-out values
    # cannot reach the model even through the gene order; on its own data_processing
    # lays out the processed data (there is no held-out mask there).
    layout = processing.only_nodes(LAYOUT_NODE)
    training = (
        (processing - layout)
        + stages["masking"]
        + pipeline(layout, inputs={"processed": "masked"})
        + stages["modeling"]
        + stages["evaluation"]
    )
    return {
        **stages,
        "training": training,
        "__default__": training,
        "inference": inference.create_pipeline(),
        "benchmark": benchmark.create_pipeline(),
    }
