"""Seconds per node of a Kedro pipeline, run in this process through a timing hook.

    python benchmarks/pipeline_timing.py --pipeline training [--params "train.max_epochs=5"] [--json]

Runs the pipeline from the project root exactly as ``kedro run`` would (same catalog, same
parameters, MLflow tracking included) and prints a table with the machine, the data size and the
seconds of every node, slowest first, and the whole run. ``--json`` prints one JSON line last
instead (the whole run's seconds, this process's peak RSS, the size, every node's seconds), as
``benchmarks/cost.py`` reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from kedro.framework.hooks import hook_impl
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from _common import machine_line, print_table
from inference_memory import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]


class NodeTimer:
    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    @hook_impl
    def before_node_run(self, node) -> None:
        self.started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:
        self.seconds[node.name] = time.perf_counter() - self.started[node.name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="training")
    parser.add_argument("--params", default="", help='as kedro run --params: "a.b=1,c=2"')
    parser.add_argument("--json", action="store_true", help="one JSON line instead of the table")
    args = parser.parse_args()
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    os.chdir(ROOT)
    bootstrap_project(ROOT)
    from kedro.framework.cli.utils import _split_params  # the CLI's own parser: dotted keys, typed values

    extra = _split_params(None, None, args.params) if args.params else {}
    timer = NodeTimer()
    start = time.perf_counter()
    with KedroSession.create(project_path=ROOT, runtime_params=extra) as session:
        session._hook_manager.register(timer)  # Kedro has no public way to add a hook to one session
        session.run(pipeline_names=[args.pipeline])
    total = time.perf_counter() - start
    peak_mb = peak_rss_mb()  # before reading the summary: the pipeline's memory, not the report's
    summary = ROOT / "data" / "08_reporting" / "training_summary.json"
    info = json.loads(summary.read_text()) if summary.exists() else {}
    if args.json:
        print(json.dumps({"seconds": total, "peak_rss_mb": peak_mb, "n_cells": info.get("n_cells"),
                          "n_genes": info.get("n_genes"), "epochs_run": info.get("epochs_run"),
                          "nodes": timer.seconds}))
        return
    size = f"; {info.get('n_cells')} cells x {info.get('n_genes')} genes, {info.get('epochs_run')} epochs" if info else ""
    print("\n" + machine_line(f"pipeline {args.pipeline}{size}") + "\n")
    rows = [(name, f"{seconds:.1f}") for name, seconds in sorted(timer.seconds.items(), key=lambda kv: -kv[1])]
    print_table(["node", "seconds"], [*rows, ("whole session (nodes, catalog, hooks)", f"{total:.1f}")])


if __name__ == "__main__":
    main()
