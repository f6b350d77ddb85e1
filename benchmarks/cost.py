"""What the default ``training`` pipeline costs at each size, against MAGIC on the same data, same machine.

    python benchmarks/cost.py --data embedded simulated:5000 choroid_plexus pbmc8k simulated:20000 \\
        simulated:50000 [--set train.budget=thorough ...] [--out cost_runs.csv]

``--data`` names the inputs: ``embedded`` (scanpy's pbmc68k_reduced), ``simulated:<cells>`` (the
project's simulator at conf/base's settings, ``--genes`` genes, truth layers off), or a real set
prepared by ``python -m scgapfill.data.real_data`` (read from ``data/01_raw/real/<name>.h5ad``).

For each input, two fresh processes, one after the other, so that each peak RSS is its own:

- the whole ``training`` pipeline as ``kedro run --pipelines=training`` runs it (QC, masking, the fit,
  the deliverable, the evaluation with every baseline, the plots, MLflow), through
  ``benchmarks/pipeline_timing.py --json``; its seconds are the session's, its peak RSS the process's.
  The fit and the deliverable (``train_model_node`` and ``impute_all_node``) are also given alone.
- MAGIC on the same input: read, QC and normalised by the pipeline's own nodes, then
  ``scgapfill.eval.baselines.run_baseline("magic", ...)`` on every gene the QC keeps (what the
  deliverable carries); its seconds are MAGIC's alone (reading and QC excluded).

The ratio is the pipeline's seconds over MAGIC's. Run it alone on the machine: two processes on 2
cores slow a torch run 4-10x. Rows go to ``--out`` after each input, the table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import ROOT, json_child, machine_line, parameters, print_table
from inference_memory import peak_rss_mb

REAL = ROOT / "data" / "01_raw" / "real"
FIT_NODES = ("train_model_node", "impute_all_node")


def input_params(data: str, genes: int) -> dict:
    """The ``input`` overrides that make the pipeline read ``data``."""
    if data == "embedded":
        return {}  # conf/base's input.path: the embedded set
    if data.startswith("simulated:"):
        return {"input.path": "simulated", "input.simulation.n_cells": int(data.split(":", 1)[1]),
                "input.simulation.n_genes": genes, "input.simulation.truth": False}
    path = REAL / f"{data}.h5ad"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `python -m scgapfill.data.real_data` once to prepare {data}")
    return {"input.path": str(path)}


def run_magic(overrides: list[str]) -> dict:
    """In this process: the input read, QC'd and normalised as the pipeline does, then MAGIC timed alone."""
    from scgapfill.eval.baselines import run_baseline
    from scgapfill.pipelines.data_processing import nodes as processing

    params = parameters(overrides)
    counts = processing.load_counts(params["input"])
    processed = processing.normalize(processing.quality_control(counts, params["qc"]), params["normalize"])
    matrix = processed.layers["counts"] if "counts" in processed.layers else processed.X
    start = time.perf_counter()
    run_baseline("magic", matrix.tocsr(), seed=0)
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(),
            "n_cells": int(processed.n_obs), "n_genes": int(processed.n_vars)}


def measure(data: str, genes: int, settings: list[str]) -> dict:
    inputs = [f"{key}={value}" for key, value in input_params(data, genes).items()]
    pipeline = json_child([sys.executable, str(ROOT / "benchmarks" / "pipeline_timing.py"), "--json",
                           "--params", ",".join(inputs + settings)], f"the training pipeline on {data}", cwd=ROOT)
    magic = json_child([sys.executable, __file__, "--_magic", *inputs], f"MAGIC on {data}", cwd=ROOT)
    fit = sum(pipeline["nodes"].get(name, 0.0) for name in FIT_NODES)
    return {"data": data, "cells": magic["n_cells"], "genes": magic["n_genes"],
            "pipeline_s": pipeline["seconds"], "pipeline_peak_gb": pipeline["peak_rss_mb"] / 1024,
            "fit_deliverable_s": fit, "epochs": pipeline["epochs_run"], "magic_s": magic["seconds"],
            "magic_peak_gb": magic["peak_rss_mb"] / 1024, "ratio": pipeline["seconds"] / magic["seconds"],
            "fit_deliverable_ratio": fit / magic["seconds"], "settings": " ".join(settings)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["embedded", "simulated:5000"])
    parser.add_argument("--genes", type=int, default=2000, help="genes of a simulated input")
    parser.add_argument("--set", nargs="*", default=[], dest="settings", metavar="KEY=VALUE",
                        help="pipeline parameters for every run, e.g. train.budget=thorough")
    parser.add_argument("--out", default="cost_runs.csv")
    parser.add_argument("--_magic", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._magic is not None:
        print(json.dumps(run_magic(args._magic)))
        return

    import pandas as pd

    rows = []
    for data in args.data:
        rows.append(measure(data, args.genes, args.settings))
        print(json.dumps(rows[-1]), flush=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
    print("\n" + machine_line(f"settings: {' '.join(args.settings) or 'the defaults'}") + "\n")
    print_table(
        ["data", "cells x genes", "pipeline", "peak memory", "fit + deliverable", "epochs", "MAGIC", "MAGIC memory",
         "pipeline / MAGIC", "fit + deliverable / MAGIC"],
        [(r["data"], f"{r['cells']:,} x {r['genes']:,}", f"{r['pipeline_s']:.0f} s", f"{r['pipeline_peak_gb']:.1f} GB",
          f"{r['fit_deliverable_s']:.0f} s", r["epochs"], f"{r['magic_s']:.1f} s", f"{r['magic_peak_gb']:.1f} GB",
          f"{r['ratio']:.1f}x", f"{r['fit_deliverable_ratio']:.1f}x") for r in rows],
    )


if __name__ == "__main__":
    main()
