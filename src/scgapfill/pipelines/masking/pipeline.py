from kedro.pipeline import Node, Pipeline

from scgapfill.pipelines.masking.nodes import make_heldout_mask, mask_counts, split_molecules


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(make_heldout_mask, ["processed", "params:heldout"], "heldout_mask", name="make_heldout_mask_node"),
            Node(mask_counts, ["processed", "heldout_mask", "params:normalize"], "masked", name="mask_counts_node"),
            Node(
                split_molecules,
                ["masked", "params:mcv", "params:normalize"],
                ["mcv_train", "mcv_test"],
                name="split_molecules_node",
            ),
        ],
        tags="masking",
    )
