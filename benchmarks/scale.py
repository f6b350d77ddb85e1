"""The cost curve of scgapfill against MAGIC, ALRA and kNN as the number of cells grows.

    python benchmarks/scale.py --sizes 1000 5000 20000 50000 100000 --genes 2000 \\
        --baselines magic alra knn --out scale_runs.csv [--set train.cells_per_epoch=1024 ...] \\
        [--inference-sizes 100000 1000000]

For each size, a simulation (conf/base ``input.simulation``, truth on, ``chunk_cells`` 10000) is
written once to a temporary folder (``--tmpdir``). A preparation process reads it and runs the
data_processing nodes (QC, normalise, HVG) and the masking nodes (held-out mask of
``heldout.fraction`` of the nonzero counts, masked counts), and saves the masked counts (.h5ad),
the mask, the held-out values and the true means. Then one process per method, one after another
(MAGIC first, the reference of the time ratio; then the U-Net and the other baselines), reads the
masked counts, fits and imputes them once (no MCV split here), saves the lognorm imputation
(float32 .npy) and prints JSON: its seconds (fitting and imputing; reading, writing and the
imports a method makes on first use excluded) and its peak RSS (VmHWM, read before the output is
written). The parent scores every output with the project's metrics: held-out Pearson (pooled),
the per-gene held-out Pearson median, the same given the cell's depth (the score a filler that knows
only genes' levels and cells' depths, ``--baselines gene_depth``, does not clear; docs/evaluation.md)
and the RMSE to the simulation's true means; no clustering.

The U-Net's parameters are conf/base's with ``--set`` overrides; its stages are timed as follows.
The layout is one explicit call of the modeling node ``compute_gene_layout`` (handed to ``fit``),
timed by the wall clock. The graph is built inside ``GapFill.fit`` (and
taken again by ``GapFill.impute_matrix``, the cells being the same), and the API has no call that
builds it alone, so those two calls are timed by the wall clock and split with cProfile cumulative
times (the profiler runs during those two calls only) of the library's own stage functions:

- graph/context: ``cellgraph.cell_graph`` and ``cellgraph.context_source`` called by
  ``train.fit.training_data`` (the training context), plus ``imputation._inputs`` (at imputation:
  the check that the training graph is the input's, the walk and the context source);
- training: the rest of ``fit`` (log-normalising, scaling, the Lightning loop, the bundle);
- smoothing: ``smoothing.smoothed_chunks`` less the network's estimates it asks for
  (``imputation.predict_chunk``), 0 when ``impute.output_smoothing`` is 0;
- imputation: the rest of ``impute_matrix`` (network, per-chunk context, observed counts kept,
  composition).

The profiler makes the U-Net's total a little slower than it is unprofiled (the Python calls of
the training loop; about 5-10% of fit + impute at 1000 cells); ``--no-stage-times`` runs it without
cProfile, for the total alone.

``--inference-sizes`` adds a table of chunked backed inference (the path of
benchmarks/inference_memory.py's chunked mode: a throw-away model trained one epoch on 400 cells,
a simulation without truth layers per size, each run in a fresh process, the graph built against
``inference.reference_cells`` cells above that many), to check that peak RSS stays flat from 100k to 1M cells.

Rows go to ``--out`` (CSV) after each one, so a run stopped part-way keeps them; the inference
rows go to ``<out>_inference.csv``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import inference_memory
from _common import machine_line as common_machine_line
from _common import json_child, parameters, quiet_train

REFERENCE = "magic"  # the method every time is divided by
UNET = "unet"
SIMULATION_BLOCK = 10000  # cells per simulated block: bounded memory when writing 100k-1M cells
MASKED, MASK, HELDOUT, TRUE_MEAN = "masked.h5ad", "heldout_mask.npz", "heldout.npz", "true_mean.npy"
SCORE_BLOCK = 10000  # cells per block when scoring against the true means
# Modules the methods import on first use (Lightning alone takes seconds): imported before the clock
# starts, since start-up is no cost of the data's size. pynndescent is added above the exact-search limit.
FIRST_USE_IMPORTS = {
    UNET: ("scgapfill.train.fit", "sklearn.decomposition", "sklearn.neighbors"),
    "magic": ("magic",),
    "knn": ("sklearn.decomposition", "sklearn.neighbors"),
}

# (CSV column, table header, format) of the printed table, in reading order.
COLUMNS = [
    ("cells", "cells", "{:d}"),
    ("genes", "genes (QC/HVG)", "{:d}"),
    ("method", "method", "{}"),
    ("seconds", "seconds", "{:.1f}"),
    ("layout_s", "layout s", "{:.1f}"),
    ("graph_s", "graph/context s", "{:.1f}"),
    ("train_s", "training s", "{:.1f}"),
    ("impute_s", "imputation s", "{:.1f}"),
    ("smooth_s", "smoothing s", "{:.1f}"),
    ("peak_rss_mb", "peak RSS (MB)", "{:.0f}"),
    ("heldout_pearson", "held-out r", "{:.4f}"),
    ("heldout_gene_pearson_median", "per-gene r", "{:.4f}"),
    ("heldout_gene_pearson_given_depth", "per-gene r given depth", "{:.4f}"),
    ("truth_mean_rmse", "truth-mean RMSE", "{:.4f}"),
    ("x_magic", "× MAGIC", "{:.2f}"),
]
PREP_COLUMNS = [
    ("cells", "cells", "{:d}"),
    ("cells_qc", "cells after QC", "{:d}"),
    ("genes", "genes after QC/HVG", "{:d}"),
    ("simulate_s", "simulate s", "{:.1f}"),
    ("read_s", "read s", "{:.1f}"),
    ("qc_normalize_s", "QC + normalise s", "{:.1f}"),
    ("hvg_s", "HVG s", "{:.1f}"),
    ("mask_s", "masking s", "{:.1f}"),
    ("prep_peak_rss_mb", "peak RSS (MB)", "{:.0f}"),
]
INFERENCE_COLUMNS = [
    ("cells", "cells", "{:d}"),
    ("genes", "genes", "{:d}"),
    ("chunk_size", "chunk size", "{:d}"),
    ("reference_cells", "graph on", "{}"),
    ("input_mb", "input on disk (MB)", "{:.0f}"),
    ("seconds", "seconds", "{:.1f}"),
    ("peak_rss_mb", "peak RSS (MB)", "{:.0f}"),
]


# --- the processes of one size -------------------------------------------------------------------

def prepare_size(workdir: Path, params: dict) -> dict:
    """Process and mask the simulation of ``workdir``; save what the methods and the scoring read."""
    import scipy.sparse as sp

    from scgapfill.eval.evaluate import build_evaluation_data
    from scgapfill.pipelines.data_processing import nodes as processing
    from scgapfill.pipelines.masking import nodes as masking

    times = {}
    start = time.perf_counter()
    # The path is given as benchmark.prepare_dataset gives it; the nodes are called one by one to time them.
    counts = processing.load_counts({**params.get("input", {}), "path": str(workdir / "simulation.h5ad")})
    times["read_s"] = _lap(start)
    start = time.perf_counter()
    normalized = processing.normalize(processing.quality_control(counts, params.get("qc", {})),
                                      params.get("normalize", {}))
    times["qc_normalize_s"] = _lap(start)
    start = time.perf_counter()
    processed = processing.select_genes(normalized, params.get("hvg", {}))
    times["hvg_s"] = _lap(start)
    del counts, normalized

    start = time.perf_counter()
    mask = masking.make_heldout_mask(processed, params.get("heldout", {}))
    masked = masking.mask_counts(processed, mask, params.get("normalize", {}))
    times["mask_s"] = _lap(start)
    masked.write_h5ad(workdir / MASKED)
    sp.save_npz(workdir / MASK, mask)
    # The held-out values as evaluation defines them; MCV is not scored here, so its splits are empty.
    no_mcv = sp.csr_matrix(processed.shape, dtype=np.float32)
    data = build_evaluation_data(processed, mask, no_mcv, no_mcv)
    library = np.asarray(masked.layers["counts"].sum(axis=1)).ravel()  # the depth each method saw
    np.savez(workdir / HELDOUT, rows=data.rows, cols=data.cols, truth=data.heldout_truth, library=library)
    np.save(workdir / TRUE_MEAN, np.asarray(processed.layers["true_mean"], dtype=np.float32))
    return {**times, "cells_qc": int(processed.n_obs), "genes": int(processed.n_vars),
            "prep_peak_rss_mb": inference_memory.peak_rss_mb()}


def unet_settings(params: dict) -> dict:
    """The training parameters of a benchmark run: no progress bar, and never resumed from a
    checkpoint another run left (its time would not be this run's)."""
    return quiet_train(params, checkpoint_dir="", resume="never")


def run_unet(masked, params: dict, stage_times: bool) -> tuple[np.ndarray, dict]:
    """Lay out, fit and impute the masked counts; the imputation and the seconds of each stage."""
    import pstats

    from scgapfill.model import GapFill
    from scgapfill.pipelines.modeling.nodes import compute_gene_layout

    gapfill = GapFill(params.get("model"), unet_settings(params), params.get("layout"), params.get("impute"))
    start = time.perf_counter()
    layout = compute_gene_layout(masked, params.get("layout", {}), params.get("model", {}))
    layout_s = _lap(start)

    profiler = cProfile.Profile() if stage_times else None
    start = time.perf_counter()
    with profiler or contextlib.nullcontext():
        gapfill.fit(masked, layer="counts", gene_layout=layout)
    fit_s = _lap(start)
    start = time.perf_counter()
    with profiler or contextlib.nullcontext():
        imputed = gapfill.impute_matrix(masked, layer="counts")[0]
    impute_s = _lap(start)

    seconds = {"seconds": layout_s + fit_s + impute_s, "layout_s": layout_s}
    if profiler is not None:
        seconds.update(split_stages(pstats.Stats(profiler), fit_s, impute_s))
    return imputed, seconds


def split_stages(stats, fit_s: float, impute_s: float) -> dict:
    """Graph/context, training, imputation and smoothing seconds from the profile of fit + impute."""
    from scgapfill.graph import cellgraph, smoothing
    from scgapfill.infer import imputation
    from scgapfill.train import fit

    train_graph = sum(_cumulative(stats, function, caller=fit.training_data)
                      for function in (cellgraph.cell_graph, cellgraph.context_source))
    impute_graph = _cumulative(stats, imputation._inputs)
    smoothed = _cumulative(stats, smoothing.smoothed_chunks)
    # With smoothing on, every network estimate is asked for from inside smoothed_chunks.
    smooth_s = max(0.0, smoothed - _cumulative(stats, imputation.predict_chunk)) if smoothed else 0.0
    return {"graph_s": train_graph + impute_graph, "train_s": fit_s - train_graph,
            "impute_s": impute_s - impute_graph - smooth_s, "smooth_s": smooth_s}


def _cumulative(stats, function, caller=None) -> float:
    """cProfile's cumulative seconds of ``function`` (only its calls from ``caller`` when given)."""
    entry = stats.stats.get(_profile_key(function))
    if entry is None:
        return 0.0
    if caller is None:
        return float(entry[3])
    edge = entry[4].get(_profile_key(caller))
    return float(edge[3]) if edge else 0.0


def _profile_key(function) -> tuple:
    code = function.__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def run_baseline_method(masked, name: str, params: dict) -> tuple[np.ndarray, dict]:
    from scgapfill.eval.baselines import run_baseline
    from scgapfill.params import parse

    # The options the evaluation pipeline's run_baselines gives each baseline.
    options = {"k": parse("baselines", params.get("baselines", {})).knn_k} if name == "knn" else {}
    start = time.perf_counter()
    imputed = run_baseline(name, masked.layers["counts"], seed=0, **options)
    return imputed, {"seconds": _lap(start)}


def run_method(workdir: Path, method: str, params: dict, stage_times: bool) -> dict:
    """Fit and impute with one method in this process; save its output, return its seconds and peak RSS."""
    import anndata as ad

    masked = ad.read_h5ad(workdir / MASKED)
    import_first_use_modules(method, masked.n_obs)
    if method == UNET:
        imputed, seconds = run_unet(masked, params, stage_times)
    else:
        imputed, seconds = run_baseline_method(masked, method, params)
    # Read before saving: converting and writing the output is not the method's memory.
    peak = inference_memory.peak_rss_mb()
    np.save(workdir / f"imputed_{method}.npy", np.asarray(imputed, dtype=np.float32))
    return {**seconds, "peak_rss_mb": peak}


def import_first_use_modules(method: str, n_cells: int) -> None:
    import importlib

    from scgapfill.graph.cellgraph import EXACT_MAX_CELLS

    approximate = ("pynndescent",) if n_cells > EXACT_MAX_CELLS and method in (UNET, "knn") else ()
    for module in (*FIRST_USE_IMPORTS.get(method, ()), *approximate):
        importlib.import_module(module)


def _lap(start: float) -> float:
    return time.perf_counter() - start


# --- the parent: simulate, run the processes, score, print ---------------------------------------

def simulate_size(workdir: Path, n_cells: int, n_genes: int, params: dict) -> float:
    """Write the size's simulation (truth on: the true means are scored); returns the seconds."""
    from scgapfill.data.simulate import write_simulation

    start = time.perf_counter()
    write_simulation(workdir / "simulation.h5ad", params.get("input", {}).get("simulation"), n_cells=n_cells,
                     n_genes=n_genes, chunk_cells=SIMULATION_BLOCK, truth=True)
    return _lap(start)


def run_child(stage: str, workdir: Path, params_path: Path, stage_times: bool = True) -> dict:
    """One stage in a fresh process, so that its peak RSS is its own; the JSON it prints last."""
    command = [sys.executable, __file__, "--_stage", stage, "--_workdir", str(workdir), "--_params", str(params_path)]
    if not stage_times:
        command.append("--no-stage-times")
    return json_child(command, f"{stage} on {workdir.name} cells")


def score(workdir: Path, method: str) -> dict:
    """Held-out Pearson (pooled, per-gene median, and per-gene given the cell's depth) and truth-mean RMSE
    of a method's output."""
    from scgapfill.eval import metrics

    imputed = np.load(workdir / f"imputed_{method}.npy", mmap_mode="r")
    heldout = np.load(workdir / HELDOUT)
    scores = metrics.heldout_scores(imputed, heldout["truth"], heldout["rows"], heldout["cols"], heldout["library"])
    return {"heldout_pearson": scores["heldout_pearson"],
            "heldout_gene_pearson_median": scores["heldout_gene_pearson_median"],
            "heldout_gene_pearson_given_depth": scores["heldout_gene_pearson_given_depth"],
            "truth_mean_rmse": truth_mean_rmse(imputed, np.load(workdir / TRUE_MEAN, mmap_mode="r"))}


def truth_mean_rmse(imputed: np.ndarray, true_mean: np.ndarray) -> float:
    """``truth_mean_rmse`` of :func:`scgapfill.eval.metrics.truth_scores`, computed over blocks of cells.

    truth_scores holds several dense float64 copies of the whole matrix (and scores more than is
    asked here); the true means are normalised per cell, so blocks of cells give the same number.
    """
    from scgapfill.eval.metrics import rmse
    from scgapfill.eval.metrics._common import _lognorm_own_totals

    squared = 0.0
    for start in range(0, imputed.shape[0], SCORE_BLOCK):
        block = slice(start, start + SCORE_BLOCK)
        pred = np.asarray(imputed[block], dtype=np.float64)
        mean = _lognorm_own_totals(np.asarray(true_mean[block], dtype=np.float64), 1e4)
        squared += rmse(pred, mean) ** 2 * pred.size
    return math.sqrt(squared / imputed.size)


def method_order(baselines: list[str]) -> list[str]:
    """The reference first, so that every row's time ratio is known when the row is printed."""
    methods = [UNET, *[b for b in baselines if b != UNET]]
    return sorted(methods, key=lambda m: m != REFERENCE)


def run_parameters(settings: list[str]) -> dict:
    """conf/base with the ``--set`` overrides, for every stage."""
    return parameters(settings)


def training_threads(params: dict) -> int:
    from scgapfill.params import parse
    from scgapfill.train.trainer import resolve_num_threads

    return resolve_num_threads(parse("train", params.get("train", {})).num_threads)


def machine_line(params: dict) -> str:
    """The common machine line, with the torch threads training uses under ``params``."""
    return common_machine_line(f"training threads {training_threads(params)}", torch=True)


def markdown_header(columns: list[tuple]) -> str:
    return "| " + " | ".join(h for _, h, _ in columns) + " |\n" + "|---" * len(columns) + "|"


def markdown_row(row: dict, columns: list[tuple]) -> str:
    cells = []
    for key, _, fmt in columns:
        value = row.get(key)
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        cells.append("–" if missing else fmt.format(value))
    return "| " + " | ".join(cells) + " |"


def size_rows(n_cells: int, args, params: dict, params_path: Path, tmp: Path, on_row) -> dict:
    """Every method on one size; calls ``on_row`` with each row; returns the preparation's figures."""
    workdir = tmp / str(n_cells)
    workdir.mkdir()
    simulate_s = simulate_size(workdir, n_cells, args.genes, params)
    prep = {"cells": n_cells, "simulate_s": simulate_s, **run_child("prepare", workdir, params_path)}
    print(f"{n_cells} cells: simulated in {simulate_s:.1f} s, prepared {prep['cells_qc']} x {prep['genes']}",
          file=sys.stderr, flush=True)
    reference = None
    for method in method_order(args.baselines):
        result = run_child(method, workdir, params_path, args.stage_times)
        row = {"cells": n_cells, "cells_qc": prep["cells_qc"], "genes": prep["genes"], "method": method,
               **result, **score(workdir, method)}
        (workdir / f"imputed_{method}.npy").unlink()  # disk: 0.8 GB per method at 100k x 2000
        reference = row["seconds"] if method == REFERENCE else reference
        row["x_magic"] = row["seconds"] / reference if reference else float("nan")
        on_row({**row, **{k: v for k, v in prep.items() if k not in row}})
    shutil.rmtree(workdir)
    return prep


def inference_rows(args, params: dict, tmp: Path, on_row) -> None:
    """Chunked backed inference per size, each in a fresh process (inference_memory.py's chunked mode)."""
    workdir = tmp / "inference"
    workdir.mkdir()
    inference_memory.train_throwaway_model(workdir, args.genes, num_threads=training_threads(params))
    reference_cells = params["inference"]["reference_cells"]
    for n_cells in args.inference_sizes:
        data = inference_memory.write_new_data(workdir, n_cells, args.genes, chunk_cells=SIMULATION_BLOCK)
        proc = subprocess.run(
            [sys.executable, inference_memory.__file__, "--_mode", "chunked", "--_workdir", str(workdir),
             "--chunk-size", str(args.chunk_size), "--reference-cells", str(reference_cells)],
            capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"chunked inference of {n_cells} cells failed:\n{proc.stderr[-4000:]}")
        seconds, peak = proc.stdout.split()[-2:]
        graph_on = f"{reference_cells} reference cells" if 0 < reference_cells < n_cells else "every cell"
        on_row({"cells": n_cells, "genes": args.genes, "chunk_size": args.chunk_size, "reference_cells": graph_on,
                "input_mb": data.stat().st_size / 2**20, "seconds": float(seconds), "peak_rss_mb": float(peak)})
        data.unlink()
        (workdir / "out_chunked.h5ad").unlink(missing_ok=True)  # the dense result: 8 GB at 1M x 2000


def run_stage_here(args) -> None:
    """A child process: one stage, its figures printed as JSON on the last line."""
    logging.basicConfig(level=logging.WARNING)
    workdir, params = Path(args._workdir), json.loads(Path(args._params).read_text())
    if args._stage == "prepare":
        result = prepare_size(workdir, params)
    else:
        result = run_method(workdir, args._stage, params, args.stage_times)
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", type=int, default=[1000, 5000, 20000, 50000, 100000])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--baselines", nargs="*", default=["magic", "alra", "knn"])
    parser.add_argument("--set", nargs="*", default=[], help="overrides of conf/base: train.cells_per_epoch=1024")
    parser.add_argument("--out", default="scale_runs.csv")
    parser.add_argument("--inference-sizes", nargs="*", type=int, default=[])
    parser.add_argument("--chunk-size", type=int, default=None, help="cells per chunk of inference "
                        "(default: conf/base inference.chunk_size)")
    parser.add_argument("--tmpdir", default=None, help="where the simulations and outputs are written "
                        "(several GB at 100k cells)")
    parser.add_argument("--no-stage-times", dest="stage_times", action="store_false",
                        help="run the U-Net without cProfile: its total only, without the profiler's overhead")
    parser.add_argument("--_stage", help=argparse.SUPPRESS)
    parser.add_argument("--_workdir", help=argparse.SUPPRESS)
    parser.add_argument("--_params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._stage:
        run_stage_here(args)
        return

    params = run_parameters(args.set)
    args.chunk_size = args.chunk_size or params["inference"]["chunk_size"]
    heldout = params["heldout"]
    print(machine_line(params))
    sizes = ", ".join(str(n) for n in args.sizes) or "none"
    print(f"data: simulated (conf/base input.simulation, chunk_cells {SIMULATION_BLOCK}), {sizes} cells x "
          f"{args.genes} genes; held out {heldout['fraction']:g} of the nonzero counts (seed {heldout['seed']}); "
          f"overrides: {' '.join(args.set) or 'none'}; U-Net stage times: "
          f"{'cProfile' if args.stage_times else 'off'}\n", flush=True)
    rows, preps, inference = [], [], []

    def on_row(row: dict) -> None:
        print(markdown_row(row, COLUMNS), flush=True)
        rows.append(row)
        pd.DataFrame(rows).to_csv(args.out, index=False)

    def on_inference_row(row: dict) -> None:
        print(markdown_row(row, INFERENCE_COLUMNS), flush=True)
        inference.append(row)
        pd.DataFrame(inference).to_csv(Path(args.out).with_suffix("").as_posix() + "_inference.csv", index=False)

    with tempfile.TemporaryDirectory(prefix="scgapfill-scale-", dir=args.tmpdir) as tmp:
        tmp = Path(tmp)
        params_path = tmp / "parameters.json"
        params_path.write_text(json.dumps(params))
        if args.sizes:
            print(markdown_header(COLUMNS), flush=True)
            for n_cells in args.sizes:
                preps.append(size_rows(n_cells, args, params, params_path, tmp, on_row))
            print(f"\nPreparation (QC, normalise, HVG, masking) per size; rows in {args.out}\n")
            print(markdown_header(PREP_COLUMNS))
            for prep in preps:
                print(markdown_row(prep, PREP_COLUMNS))
        if args.inference_sizes:
            print("\nChunked backed inference (inference_memory.py's chunked mode; throw-away model)\n")
            print(markdown_header(INFERENCE_COLUMNS), flush=True)
            inference_rows(args, params, tmp, on_inference_row)


if __name__ == "__main__":
    main()
