from kedro.pipeline import Node, Pipeline

from ..data_processing.nodes import load_counts
from .nodes import align_to_model, impute_new, load_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(load_model, "params:model", "inference_model", name="load_model_node"),
            Node(load_counts, "params:input", "new_counts", name="load_new_counts_node"),
            Node(
                align_to_model, ["new_counts", "inference_model"], ["aligned_counts", "gene_alignment_report"],
                name="align_genes_node",
            ),
            Node(impute_new, ["inference_model", "aligned_counts", "params:impute"], "inference_imputed",
                 name="impute_new_node"),
        ],
        tags="inference",
    )
