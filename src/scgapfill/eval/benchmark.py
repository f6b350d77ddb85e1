"""Every method on every data set, for several mask seeds, scored by one protocol.

Used by the ``benchmark`` pipeline; usable from a notebook::

    from scgapfill.eval.benchmark import run_benchmark, summarise
    runs = run_benchmark(parameters)          # one row per data set x method x seed
    table, markdown = summarise(runs)
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scgapfill.data import io, preprocessing, real_data
from scgapfill.eval import protocol
from scgapfill.eval.baselines import available_baselines
from scgapfill.eval.evaluate import build_evaluation_data, derived_labels, score_method
from scgapfill.params import Parameters, parse_all

log = logging.getLogger(__name__)

MODEL = "unet"
# Columns of the summary, in reading order; a metric absent for a data set is left out.
SUMMARY_METRICS = [
    "heldout_rmse", "heldout_pearson", "heldout_cell_pearson_median", "heldout_gene_pearson_median",
    "heldout_gene_pearson_given_depth", "heldout_gene_pearson_beyond_floor", "mcv_mse", "mcv_poisson",
    "ari_before", "ari_after", "truth_rmse", "truth_pearson", "truth_mean_rmse", "truth_mean_pearson",
    "heldout_truth_mean_pearson",
    "false_corr_rate", "seconds",
]

DERIVED_ARI_NOTE = ("ARI here is against labels derived by clustering the same counts (no cell types ship with "
                    "this data set): it is circular and favours no imputation.")


def prepare_dataset(name: str, parameters: dict | Parameters) -> ad.AnnData:
    """Load and process one data set as the data_processing pipeline does (its nodes call the same functions)."""
    params = parse_all(parameters)
    update: dict[str, Any] = {"path": "" if name == io.EMBEDDED else real_data.resolve(name)}
    if name in (io.EMBEDDED, io.SIMULATED, *real_data.DATASETS):
        update["label_key"] = None  # their own labels (bulk_labels, group, ...), whatever input.label_key says
    adata = preprocessing.quality_control(io.load_input(params.input.model_copy(update=update)), params.qc)
    return preprocessing.select_genes(preprocessing.normalize(adata, params.normalize), params.hvg)


def _quiet_training(params: Parameters):
    """``train`` with the progress bar off: the benchmark logs its own lines."""
    return params.train.model_copy(update={"enable_progress_bar": False})


def unet_method(parameters: dict | Parameters) -> Callable[[ad.AnnData, ad.AnnData], tuple]:
    """The U-Net as a benchmark method, as the training pipeline runs it: the layout from the masked
    counts, trained on their MCV train split, imputing both."""
    params = parse_all(parameters)

    def run(masked: ad.AnnData, mcv_train: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
        from scgapfill.model import GapFill, compute_gene_layout

        # As the modeling pipeline's compute_gene_layout node: learned from the masked counts.
        layout = compute_gene_layout(masked.X, list(masked.var_names), params.layout, params.model.depth)
        gapfill = GapFill(params.model, _quiet_training(params), params.layout, params.impute)
        gapfill.fit(mcv_train, layer="counts", gene_layout=layout)
        return gapfill.impute_matrix(masked)[0], gapfill.impute_matrix(mcv_train)[0]

    return run


def unet_denoiser(parameters: dict | Parameters, positions: Any = None) -> Callable[..., np.ndarray]:
    """The U-Net as the denoising protocol's method (:func:`scgapfill.eval.denoising.run_protocol`),
    as the training pipeline makes its deliverable: the counts normalised, the highly variable genes
    selected (``hvg``), the layout learned from them, the model fitted on their counts and applied to
    every gene given (``layers["imputed"]``, the genes it does not model filled as ``impute.unmodelled`` says).

    ``positions`` (:class:`~scgapfill.graph.spatial.SpotPositions` of every cell given to the protocol) go
    with the counts for ``model.context_graph`` ``spatial`` or ``both``: the protocol then says which cells
    each split kept (``cells``, the method's ``takes_cells``)."""
    params = parse_all(parameters)

    def run(train, genes: list[str], seed: int, cells: np.ndarray | None = None) -> np.ndarray:
        from scgapfill.model import GapFill, compute_gene_layout

        adata = ad.AnnData(X=sp.csr_matrix(train, dtype=np.float32))
        adata.var_names = list(genes)
        if positions is not None:
            kept = positions if cells is None else positions.rows(cells)
            adata.obsm["spatial"] = kept.coords
            if kept.libraries is not None:
                adata.obs[params.model.context_library_key] = kept.libraries
        modelled = preprocessing.select_genes(preprocessing.normalize(adata, params.normalize), params.hvg)
        layout = compute_gene_layout(modelled.X, list(modelled.var_names), params.layout, params.model.depth)
        gapfill = GapFill(params.model, _quiet_training(params), params.layout, params.impute)
        gapfill.fit(modelled, layer="counts", gene_layout=layout)
        return gapfill.impute_matrix(adata, layer=None)[0]

    run.takes_cells = positions is not None  # type: ignore[attr-defined]
    return run


def baseline_denoiser(name: str, parameters: dict | Parameters,
                      positions: Any = None) -> Callable[..., np.ndarray]:
    """A baseline as the denoising protocol's method, with the options the evaluation gives it.

    ``positions`` (:class:`~scgapfill.graph.spatial.SpotPositions` of every cell given to the protocol) are
    ``knn_spatial``'s: the protocol then says which cells each split kept (``cells``, the method's
    ``takes_cells``)."""
    from scgapfill.eval.baselines import run_baseline

    kwargs = {"k": parse_all(parameters).baselines.knn_k} if name in ("knn", "knn_spatial") else {}
    if name != "knn_spatial":
        return lambda train, genes, seed: run_baseline(name, train, seed=0, **kwargs)

    def spatial(train, genes: list[str], seed: int, cells: np.ndarray | None = None) -> np.ndarray:
        kept = positions if positions is None or cells is None else positions.rows(cells)
        return run_baseline(name, train, seed=0, positions=kept, **kwargs)

    spatial.takes_cells = True  # type: ignore[attr-defined]
    return spatial


def _baseline(name: str, params: Parameters) -> Callable:
    settings = params.baselines.model_copy(update={"methods": [name]})

    def run(masked: ad.AnnData, mcv_train: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
        out = protocol.run_baselines(masked, mcv_train, settings)[name]
        return out["imputed"], out["mcv"]

    return run


def method_runners(parameters: dict | Parameters) -> dict[str, Callable]:
    """The methods named by ``benchmark.methods`` that can run here, as ``run(masked, mcv_train)``."""
    params = parse_all(parameters)
    bench = params.benchmark
    available = set(available_baselines()) | {MODEL}
    for skipped in sorted(set(bench.methods) - available):
        log.warning("benchmark: method %s is not available here and is skipped", skipped)
    return {
        m: unet_method(params) if m == MODEL else _baseline(m, params)
        for m in bench.methods
        if m in available
    }


def run_benchmark(
    parameters: dict | Parameters,
    on_result: Callable[[dict], None] | None = None,
    methods: dict[str, Callable] | None = None,
) -> pd.DataFrame:
    """One row per data set x method x mask seed with every metric and the seconds taken.

    ``methods`` maps names to ``run(masked, mcv_train) -> (imputed, denoised)`` (AnnData in, as
    the masking pipeline makes them); by default the ones ``benchmark.methods`` names (see
    :func:`method_runners`). Masks, MCV split and evaluation data come from
    :mod:`scgapfill.eval.protocol` and :mod:`scgapfill.eval.evaluate`, which the training pipeline's
    nodes call, so a seed gives the numbers ``kedro run`` gives.
    """
    params = parse_all(parameters)
    bench, heldout, mcv, evaluation = params.benchmark, params.heldout, params.mcv, params.evaluation
    methods = method_runners(params) if methods is None else methods
    rows = []
    for dataset in bench.datasets:
        processed = prepare_dataset(dataset, params)
        n_cells, n_genes = processed.shape
        labels = "derived" if derived_labels(processed) else ("given" if processed.uns.get("label_key") else "none")
        for offset in range(bench.n_seeds):
            seed = heldout.seed + offset
            mask, masked, train, test = protocol.split(processed, params, seed, mcv.seed + offset)
            data = build_evaluation_data(processed, mask, train.layers["counts"], test, seed=evaluation.seed)
            for method, run in methods.items():
                start = time.perf_counter()
                imputed, denoised = run(masked, train)
                seconds = time.perf_counter() - start
                scores = score_method(data, imputed, denoised, evaluation).metrics
                row = {"dataset": dataset, "method": method, "seed": seed, **scores, "seconds": seconds,
                       "n_cells": n_cells, "n_genes": n_genes, "labels": labels}
                log.info("benchmark %s / %s / seed %d: held-out Pearson %.3f, %.1f s",
                         dataset, method, seed, scores.get("heldout_pearson", np.nan), seconds)
                rows.append(row)
                if on_result is not None:
                    on_result(row)
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Mean and standard deviation over seeds per data set and method; the same as markdown."""
    metrics = [m for m in SUMMARY_METRICS if m in runs.columns]
    grouped = runs.groupby(["dataset", "method"], sort=False)[metrics]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    n_seeds = runs.groupby(["dataset", "method"], sort=False)["seed"].nunique()
    table = pd.concat({"mean": mean, "sd": std}, axis=1)
    table.columns = [f"{metric}_{stat}" for stat, metric in table.columns]
    table = table[[f"{m}_{s}" for m in metrics for s in ("mean", "sd")]]
    table.insert(0, "n_seeds", n_seeds)
    table = table.reset_index()

    lines = []
    for dataset, part in runs.groupby("dataset", sort=False):
        shown = [m for m in metrics if part[m].notna().any()]
        lines += [f"### {dataset} ({int(part['n_cells'].iloc[0])} cells x {int(part['n_genes'].iloc[0])} genes, "
                  f"{int(part['seed'].nunique())} mask seeds)", "",
                  "| method | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
        if "labels" in part and (part["labels"] == "derived").any() and "ari_after" in shown:
            lines[-2:-2] = [DERIVED_ARI_NOTE, ""]
        for method in part["method"].unique():
            cells = []
            for m in shown:
                mu, sd = mean.loc[(dataset, method), m], std.loc[(dataset, method), m]
                cells.append("–" if pd.isna(mu) else (f"{mu:.3f} ± {sd:.3f}" if pd.notna(sd) else f"{mu:.3f}"))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return table, "\n".join(lines)


def log_runs_to_mlflow(runs: pd.DataFrame, parent_tags: dict[str, Any] | None = None) -> list[str]:
    """One MLflow run per data set x method (nested in the active run), tagged for side-by-side comparison.

    Metrics are the means over seeds; each seed's value is also logged with ``step`` = seed.
    """
    import mlflow

    run_ids = []
    metrics = [m for m in SUMMARY_METRICS if m in runs.columns]
    for (dataset, method), part in runs.groupby(["dataset", "method"], sort=False):
        with mlflow.start_run(run_name=f"{method} on {dataset}", nested=mlflow.active_run() is not None,
                              tags={"method": method, "dataset": dataset, "kind": "benchmark", **(parent_tags or {})}) as run:
            mlflow.log_params({"method": method, "dataset": dataset, "n_seeds": int(part["seed"].nunique()),
                               "n_cells": int(part["n_cells"].iloc[0]), "n_genes": int(part["n_genes"].iloc[0])})
            for metric in metrics:
                values = part[["seed", metric]].dropna()
                if values.empty:
                    continue
                mlflow.log_metric(metric, float(values[metric].mean()))
                for seed, value in values.itertuples(index=False):
                    mlflow.log_metric(f"{metric}_by_seed", float(value), step=int(seed))
            run_ids.append(run.info.run_id)
    return run_ids
