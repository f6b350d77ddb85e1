from kedro.pipeline import Node, Pipeline

from scgapfill.pipelines.evaluation.nodes import prepare_evaluation, run_baselines, score_methods


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                prepare_evaluation,
                ["processed", "heldout_mask", "mcv_train", "mcv_test", "params:evaluation"],
                "evaluation_data",
                name="prepare_evaluation_node",
            ),
            Node(
                run_baselines,
                ["masked", "mcv_train", "params:baselines"],
                "baseline_outputs",
                name="run_baselines_node",
            ),
            Node(
                score_methods,
                ["evaluation_data", "baseline_outputs", "imputed_masked", "imputed_mcv", "training_summary",
                 "params:evaluation"],
                ["method_scores", "unet_metrics", "metrics_report", "per_cell_scores", "evaluation_plots"],
                name="score_methods_node",
            ),
        ],
        tags="evaluation",
    )
