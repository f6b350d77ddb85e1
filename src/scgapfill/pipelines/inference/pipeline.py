from kedro.pipeline import Node, Pipeline

from scgapfill.pipelines.inference.nodes import impute_new, load_aligned_counts, load_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(load_model, ["params:inference", "params:impute"], "inference_model", name="load_model_node"),
            Node(
                load_aligned_counts, ["params:input", "inference_model", "params:inference"],
                ["aligned_counts", "gene_alignment_report"], name="load_aligned_counts_node",
            ),
            Node(impute_new, ["inference_model", "aligned_counts", "gene_alignment_report", "params:inference"],
                 "inference_imputed", name="impute_new_node"),
        ],
        tags="inference",
    )
