"""``kedro`` as a user runs it, but pausing inside the write of one file, for the kill tests.

Usage: ``python pause_while_saving.py <file name> <marker file> run --pipelines=... --params=...``.
When the project starts writing ``<file name>`` (the temporary beside it is complete, the rename to
come), the temporary's path is written to ``<marker file>`` and the process sleeps: the test then
kills it at exactly that point.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import scgapfill.glue.datasets.anndata_dataset as anndata_dataset
import scgapfill.nn.bundle as model_io


def pausing(original, name: str, marker: Path):
    @contextlib.contextmanager
    def atomic_path(target, suffix):
        with original(target, suffix) as tmp:
            yield tmp
            if Path(target).name == name:
                marker.write_text(str(tmp))
                time.sleep(600)

    return atomic_path


if __name__ == "__main__":
    name, marker, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    for module in (model_io, anndata_dataset):
        module.atomic_path = pausing(module.atomic_path, name, marker)
    from kedro.framework.cli import main

    sys.argv = ["kedro", *args]
    main()
