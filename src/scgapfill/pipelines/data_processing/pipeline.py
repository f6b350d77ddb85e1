from kedro.pipeline import Node, Pipeline

from scgapfill.pipelines.data_processing.nodes import load_counts, normalize, quality_control, select_genes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(load_counts, "params:input", "input_counts", name="load_counts_node"),
            Node(quality_control, ["input_counts", "params:qc"], "qc_counts", name="quality_control_node"),
            Node(normalize, ["qc_counts", "params:normalize"], "normalized", name="normalize_node"),
            Node(select_genes, ["normalized", "params:hvg"], "processed", name="select_genes_node"),
        ],
        tags="data_processing",
    )
