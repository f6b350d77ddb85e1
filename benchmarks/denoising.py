"""The field's denoising benchmark on the deliverable: OpenProblems' protocol and a downsampling truth.

    python benchmarks/denoising.py --datasets pbmc8k choroid_plexus pbmc68k_reduced simulated \\
        --seeds 0 1 2 --methods none knn magic alra unet --out docs/results/denoising_runs.csv \\
        [--splits molecules downsampled] [--set train.max_steps=2000 ...]

Each data set is read and QC'd as the ``data_processing`` pipeline does (every gene that passes QC,
not only the highly variable ones: the deliverable carries them all). Its counts are then split
(:mod:`scgapfill.eval.denoising`): ``molecules`` is OpenProblems' molecular cross-validation (train
0.9 / test 0.1 of each count), ``downsampled`` gives a fifth of each cell's molecules and keeps the
other four fifths as the deep truth. Every method is given the same train part and scored over
every cell and gene: MSE and Poisson (the model first), the share of no denoising's MSE removed,
and on the downsampled split the per-gene Pearson and Leiden ARI against the deep profile.

The U-Net runs as the ``training`` pipeline makes its deliverable (:func:`scgapfill.eval.benchmark.unet_denoiser`),
with conf/base's parameters and the ``--set`` overrides. Rows go to ``--out`` as they come (a run
stopped part-way keeps them); the table of means ± sd over seeds is printed at the end, after the
machine line. Real data sets need ``python -m scgapfill.data.real_data`` once.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from _common import machine_line as common_machine_line
from _common import parameters as common_parameters

SCORES = ["mse", "mse_removed", "poisson", "gene_pearson", "ari", "seconds"]


def load_parameters(overrides: list[str]) -> dict:
    """conf/base's parameters (from the working folder) with ``key.sub=value`` overrides (values read as YAML)."""
    return common_parameters(overrides, conf="conf/base")


def dataset_counts(name: str, parameters: dict, positions: bool = False):
    """The QC'd counts of every gene of data set ``name``, and the gene names (and with ``positions`` the
    spots' positions, ``None`` where the data set has none)."""
    from scgapfill.eval.benchmark import prepare_dataset
    from scgapfill.graph.spatial import positions_of

    every_gene = {**parameters, "hvg": {**parameters.get("hvg", {}), "n_top_genes": 10**9}}
    adata = prepare_dataset(name, every_gene)
    found = (adata.layers["counts"], list(adata.var_names))
    return (*found, positions_of(adata)) if positions else found


def summary(runs: pd.DataFrame) -> str:
    lines = []
    for (dataset, split), part in runs.groupby(["dataset", "split"], sort=False):
        shown = [s for s in SCORES if s in part and part[s].notna().any()]
        shape = f"{int(part['n_cells'].iloc[0])} cells x {int(part['n_genes'].iloc[0])} genes"
        lines += [f"### {dataset}, {split} ({shape}, "
                  f"seeds {sorted(part['seed'].unique().tolist())})", "",
                  "| method | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
        for method, rows in part.groupby("method", sort=False):
            cells = []
            for score in shown:
                mean, sd = rows[score].mean(), rows[score].std(ddof=1)
                digits = 0 if score == "seconds" else 4
                cells.append(f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if len(rows) > 1 else ""))
            fewer = rows["seed"].nunique() < part["seed"].nunique()
            label = f"{method} (seeds {sorted(rows['seed'].unique().tolist())})" if fewer else method
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def machine_line() -> str:
    """The common machine line in this script's format (no torch, no thread variables: unchanged output)."""
    return common_machine_line(torch=False, omp=False)


def main(argv: list[str] | None = None) -> None:
    from scgapfill.eval.benchmark import baseline_denoiser, unet_denoiser
    from scgapfill.eval.denoising import run_protocol

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pbmc68k_reduced", "simulated"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["none", "knn", "magic", "alra", "unet"])
    splits = ["molecules", "downsampled"]
    parser.add_argument("--splits", nargs="+", default=splits, choices=splits)
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--out", default="denoising_runs.csv")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    parameters = load_parameters(args.overrides)
    methods = {m: unet_denoiser(parameters) if m == "unet" else baseline_denoiser(m, parameters) for m in args.methods}
    spatial = "knn_spatial" in methods
    out = Path(args.out)
    # Rows of earlier runs kept; the file is written whole after each row (the splits' rows have
    # different columns), through a temporary file, so a run stopped part-way leaves a readable table.
    rows = pd.read_csv(out).to_dict("records") if out.exists() else []
    print(machine_line(), flush=True)
    print(f"U-Net settings: {json.dumps(args.overrides)}", flush=True)
    for dataset in args.datasets:
        counts, genes, positions = dataset_counts(dataset, parameters, positions=True)
        if spatial:  # the spots' own positions (none: knn_spatial says how to give them)
            methods["knn_spatial"] = baseline_denoiser("knn_spatial", parameters, positions)
        if "unet" in methods:  # with model.context_graph spatial or both, the U-Net reads them as well
            methods["unet"] = unet_denoiser(parameters, positions)

        def keep(row: dict, dataset: str = dataset) -> None:
            row = {"dataset": dataset, **row, "settings": " ".join(args.overrides)}
            rows.append(row)
            partial = out.with_name(out.name + ".part")
            pd.DataFrame(rows).to_csv(partial, index=False)
            partial.replace(out)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)

        run_protocol(counts, genes, methods, args.seeds, tuple(args.splits), on_result=keep)
    runs = pd.DataFrame(rows)
    print(machine_line())
    print(summary(runs[runs["dataset"].isin(args.datasets)]))


if __name__ == "__main__":
    main()
