"""What the scripts under ``benchmarks/`` share: the parameters with ``--set`` overrides, the machine line
and the markdown tables.

A script run as ``python benchmarks/<name>.py`` has this folder on its path: ``import _common``. Nothing
here measures anything; the measurements stay in the scripts, the protocol in the package
(:mod:`scgapfill.eval.protocol`, :mod:`scgapfill.eval.benchmark`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "base"


def parameters(overrides: Iterable[str] = (), conf: str | os.PathLike = CONF) -> dict:
    """``conf``'s ``parameters*.yml`` (the project's conf/base by default) with ``section.key=value``
    overrides laid over them (values read as YAML), as ``kedro run --params`` would."""
    from scgapfill.params import dotted_overrides, merged, read_parameter_files

    return merged(read_parameter_files(conf), dotted_overrides(list(overrides)))


def merged(base: dict, overrides: dict) -> dict:
    """``base`` with nested ``overrides`` laid over it (a variant of a configuration)."""
    from scgapfill.params import merged as merge

    return merge(base, overrides)


def quiet_train(params: dict, **changes: Any) -> dict:
    """``params["train"]`` with the progress bar off (a script prints its own lines) and ``changes``."""
    return {**params.get("train", {}), "enable_progress_bar": False, **changes}


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_line(*details: str, torch: bool | None = None, omp: bool = True) -> str:
    """``machine: <platform>, N CPUs (M usable)[, torch V (T threads), device D][, OMP_NUM_THREADS=n];
    python X[; details]``.

    torch's part is there when ``torch`` is true, or when it is None and torch is already imported (the
    line never imports it: a light script stays light); ``OMP_NUM_THREADS`` when it is set and ``omp``.
    """
    parts = [platform.platform(), f"{os.cpu_count()} CPUs ({usable_cpus()} usable)"]
    if torch or (torch is None and "torch" in sys.modules):
        import torch as _torch

        device = f"cuda ({_torch.cuda.get_device_name(0)})" if _torch.cuda.is_available() else "cpu"
        parts.append(f"torch {_torch.__version__} ({_torch.get_num_threads()} threads), device {device}")
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and omp:
        parts.append(f"OMP_NUM_THREADS={threads}")
    line = "machine: " + ", ".join(parts) + f"; python {sys.version.split()[0]}"
    return "; ".join([line, *[d for d in details if d]])


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; cells are written as given (format numbers before)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def print_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    print(table(header, rows), flush=True)


def mean_sd(values: Any, digits: int = 4) -> str:
    """``mean ± sd`` over seeds (sd 0 for one value)."""
    import pandas as pd

    values = pd.Series(values, dtype=float)  # NaN skipped, as pandas does
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {sd:.{digits}f}"


def print_variant_tables(frame: Any, metrics: list[str]) -> None:
    """Mean ± sd over seeds per data set and ``variant`` (the probes' tables), metrics with any value."""
    for dataset, rows in frame.groupby("dataset", sort=False):
        columns = [c for c in metrics if rows[c].notna().any()]
        print(f"### {dataset} ({rows.n_cells.iloc[0]} cells x {rows.n_genes.iloc[0]} genes; training "
              f"{rows.training_seconds.mean():.0f} s per seed)\n")
        print_table(["variant", *columns],
                    [[name, *[mean_sd(group[c]) for c in columns]] for name, group in rows.groupby("variant", sort=False)])
        print()


def json_child(command: Sequence[str], what: str, cwd: str | os.PathLike | None = None) -> dict:
    """Run ``command`` in a fresh process (so that its peak RSS is its own); the JSON line it prints last."""
    proc = subprocess.run(list(command), capture_output=True, text=True, cwd=cwd)
    if proc.returncode:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
