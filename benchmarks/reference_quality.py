"""What imputing against a reference of cells costs in quality, against the graph over every cell.

    python benchmarks/reference_quality.py --cells 20000 --genes 2000 --references 10000 5000 2000 \\
        [--set train.cells_per_epoch=1024 train.max_val_cells=2048]

One simulation (conf/base ``input.simulation``, truth on) is processed and masked as in
``benchmarks/scale.py`` (QC, normalise, HVG, held-out mask of ``heldout.fraction`` of the nonzero
counts). One U-Net is fitted on the masked counts; it then imputes them once with the graph over every
cell (``GapFill.impute_matrix``, what ``training`` does) and once per ``--references`` size through
chunked inference against a reference of that many cells (``inference.reference_cells``: the masked
counts written as a ``.h5ad``, read back chunk by chunk). Every output is scored on the same held-out
entries (held-out Pearson, per-gene median) and against the simulation's true means. Prints a table
with the machine and the data size; rows also go to ``--out`` (CSV).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import scale

COLUMNS = [
    ("graph", "cell graph", "{}"),
    ("reference_cells", "reference cells", "{:d}"),
    ("seconds", "impute s", "{:.1f}"),
    ("heldout_pearson", "held-out r", "{:.4f}"),
    ("heldout_gene_pearson_median", "per-gene r", "{:.4f}"),
    ("truth_mean_rmse", "truth-mean RMSE", "{:.4f}"),
]


def impute_with_reference(gapfill, masked, workdir: Path, reference_cells: int, chunk_size: int) -> np.ndarray:
    """The masked counts imputed by chunked inference against ``reference_cells`` of them."""
    import anndata as ad

    from scgapfill.glue.datasets import AnnDataDataset
    from scgapfill.pipelines.inference.nodes import impute_new, load_aligned_counts

    source = workdir / "masked_counts.h5ad"
    if not source.exists():
        ad.AnnData(X=masked.layers["counts"], obs=masked.obs[[]], var=masked.var[[]]).write_h5ad(source)
    settings = {"chunk_size": chunk_size, "reference_cells": reference_cells}
    aligned, report = load_aligned_counts({"path": str(source)}, gapfill, settings)
    out = workdir / f"imputed_{reference_cells}.h5ad"
    AnnDataDataset(filepath=str(out)).save(impute_new(gapfill, aligned, report, settings))
    result = ad.read_h5ad(out, backed="r")
    if result.n_obs != masked.n_obs:
        raise RuntimeError(f"{masked.n_obs - result.n_obs} cells were skipped; the scores need every cell")
    return np.asarray(result.layers["imputed"][:], dtype=np.float32)


def main(argv: list[str] | None = None) -> None:
    import anndata as ad

    from scgapfill.model import GapFill

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=20000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--references", nargs="+", type=int, default=[10000, 5000, 2000])
    parser.add_argument("--set", nargs="*", default=[], help="overrides of conf/base: train.cells_per_epoch=1024")
    parser.add_argument("--out", default="reference_quality.csv")
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args(argv)
    params = scale.run_parameters(args.set)
    chunk_size = params["inference"]["chunk_size"]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
        workdir = Path(tmp)
        scale.simulate_size(workdir, args.cells, args.genes, params)
        prep = scale.prepare_size(workdir, params)
        masked = ad.read_h5ad(workdir / scale.MASKED)
        print(scale.machine_line(params))
        print(f"data: simulated {args.cells} cells x {args.genes} genes; {prep['cells_qc']} cells x {prep['genes']} "
              f"genes after QC/HVG; held out {params['heldout']['fraction']} of the nonzero counts; "
              f"overrides: {' '.join(args.set) or 'none'}; inference chunk {chunk_size}\n", flush=True)
        gapfill = GapFill(params.get("model"), scale.unet_settings(params), params.get("layout"), params.get("impute"))
        gapfill.fit(masked, layer="counts")
        variants = [("every cell", masked.n_obs)] + [("reference", n) for n in args.references if n < masked.n_obs]
        print(scale.markdown_header(COLUMNS), flush=True)
        for graph, n_reference in variants:
            start = time.perf_counter()
            if graph == "every cell":
                imputed = gapfill.impute_matrix(masked, layer="counts")[0]
            else:
                imputed = impute_with_reference(gapfill, masked, workdir, n_reference, chunk_size)
            seconds = time.perf_counter() - start
            np.save(workdir / f"imputed_{n_reference}.npy", imputed)
            row = {"cells": int(masked.n_obs), "genes": int(masked.n_vars), "graph": graph,
                   "reference_cells": int(n_reference), "seconds": seconds, **scale.score(workdir, str(n_reference))}
            rows.append(row)
            pd.DataFrame(rows).to_csv(args.out, index=False)
            print(scale.markdown_row(row, COLUMNS), flush=True)


if __name__ == "__main__":
    main()
