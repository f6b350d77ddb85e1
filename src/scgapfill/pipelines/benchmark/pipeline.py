from kedro.pipeline import Node, Pipeline

from scgapfill.pipelines.benchmark.nodes import run_benchmark, summarise_benchmark


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(run_benchmark, "parameters", "benchmark_runs", name="run_benchmark_node"),
            Node(summarise_benchmark, "benchmark_runs", ["benchmark_table", "benchmark_markdown"],
                 name="summarise_benchmark_node"),
        ],
        tags="benchmark",
    )
