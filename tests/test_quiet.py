"""The known-harmless library warnings are silenced by the project settings, each for real, and no others."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from scgapfill.glue import quiet

ROOT = Path(__file__).resolve().parents[1]

# Triggers every silenced warning the way a `kedro` command does, in a fresh interpreter (each fires
# once per process, at import or first use), with warnings routed to logging as Kedro's RichHandler
# routes them, and prints every record that still comes out.
TRIGGER = textwrap.dedent(
    """
    import logging, warnings
    import kedro.framework.project  # configures logging from conf/logging.yml, as the kedro CLI does
    import scgapfill.settings  # installs the filters, as Kedro does before loading its plugins

    class Show(logging.Handler):
        def emit(self, record):
            print("LOG", record.getMessage())

    logging.root.handlers[:] = [Show()]
    logging.root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    import kedro_mlflow.mlflow.kedro_pipeline_model  # mlflow: type hints on predict
    from kedro.config import OmegaConfigLoader
    OmegaConfigLoader(conf_source="conf")  # omegaconf: register_new_resolver
    import lightning as L
    import mlflow.pytorch  # imports pytorch_lightning, whose logger then carries Lightning's tips
    from lightning.pytorch.utilities._pytree import _tree_flatten
    _tree_flatten({"a": 1})  # torch: LeafSpec
    L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)  # LitLogger tip
    warnings.warn("a warning nobody silenced", UserWarning)
    """
)


def test_settings_silence_the_known_warnings_and_nothing_else():
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", TRIGGER], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    for text in ("Add type hints", "register_new_resolver", "LeafSpec", "LitLogger"):
        assert text not in out, out
    assert "UserWarning: a warning nobody silenced" in out, out
    assert "LOG GPU available" in out, out  # Lightning's other messages still come through


def test_the_filters_match_the_exact_texts_and_only_from_their_modules():
    texts = [
        "register_new_resolver() is deprecated and will be removed in a future release.",
        "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`",
    ]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet.install()
        quiet.install()  # idempotent
        for (_, category, module), text in zip(quiet.WARNINGS, texts):
            warnings.warn_explicit(text, category, "x.py", 1, module=module.split("|")[0].replace("\\", ""))
            warnings.warn_explicit(text, category, "x.py", 1, module="scgapfill.somewhere")
    assert [str(w.message) for w in seen] == texts


def test_the_log_filters_drop_the_exact_records_only(caplog):
    quiet.install()
    quiet.install()
    assert len(logging.getLogger("py.warnings").filters) == 1
    mlflow = ("/site-packages/mlflow/pyfunc/utils/data_validation.py:187: UserWarning: \x1b[33mAdd type hints "
              "to the `predict` method to enable data validation")
    with caplog.at_level(logging.INFO):
        logging.getLogger("py.warnings").warning("%s", mlflow)
        logging.getLogger("py.warnings").warning("%s", "elsewhere.py:1: UserWarning: kept")
        for name in ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
            logging.getLogger(name).info("💡 Tip: ... to enable LitLogger, which logs ...")
            logging.getLogger(name).info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["elsewhere.py:1: UserWarning: kept",
                                                        *["GPU available: False, used: False"] * 2]
