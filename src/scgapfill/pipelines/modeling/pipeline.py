from kedro.pipeline import Node, Pipeline

from scgapfill.pipelines.modeling.nodes import (
    compute_gene_layout,
    denoise_mcv_train,
    impute_all,
    impute_masked,
    log_model,
    loss_curve_figure,
    train_model,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(compute_gene_layout, ["masked", "params:layout", "params:model"], "gene_layout",
                 name="compute_gene_layout_node"),
            Node(
                train_model,
                ["mcv_train", "gene_layout", "params:model", "params:train", "params:impute"],
                ["gapfill_model", "training_summary"],
                name="train_model_node",
            ),
            Node(loss_curve_figure, "gapfill_model", "loss_curve_plot", name="loss_curve_figure_node"),
            Node(impute_masked, ["gapfill_model", "masked", "params:impute"], "imputed_masked",
                 name="impute_masked_node"),
            Node(
                denoise_mcv_train, ["gapfill_model", "mcv_train", "params:impute"], "imputed_mcv",
                name="denoise_mcv_train_node",
            ),
            Node(log_model, ["gapfill_model", "masked"], "mlflow_model_info", name="log_model_node"),
            Node(
                impute_all,
                ["gapfill_model", "normalized", "params:impute", "params:final", "params:train", "params:layout",
                 "params:normalize"],
                "imputed",
                name="impute_all_node",
            ),
        ],
        tags="modeling",
    )
