"""Known-harmless warnings and tips from the libraries under the project, silenced in one place.

Each entry names the exact message and the module that raises it, so that any other warning from
the same library still shows. ``settings.py`` installs them: Kedro imports the settings before it
loads its plugins, so they apply to every ``kedro`` command of the project. Delete an entry when
its library stops raising it (``tests/test_quiet.py`` triggers each one for real).
"""

from __future__ import annotations

import logging
import warnings

# (message regex, category, module regex); the message regex is matched from the message's start.
WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # omegaconf 2.4 deprecates register_new_resolver; Kedro's OmegaConfigLoader calls it twice and
    # kedro-mlflow's hook once. Not our call: the project registers no resolver.
    (r"register_new_resolver\(\) is deprecated", UserWarning,
     r"kedro\.config\.omegaconf_config|kedro_mlflow\.framework\.hooks\.mlflow_hook"),
    # torch 2.13 deprecates LeafSpec, which Lightning 2.6's pytree helper still builds at each fit.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\.pytorch\.utilities\._pytree"),
)

# (logger, texts that all appear in the message): log records dropped.
LOG_RECORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # mlflow 3 checks the type hints of every PythonModel subclass; kedro-mlflow's KedroPipelineModel
    # (imported with its CLI plugin, so on every command) has none. mlflow raises it under its own
    # simplefilter("once"), which overrides any warnings filter, so it is dropped where Kedro's logging
    # receives warnings (logging.captureWarnings: the py.warnings logger). It carries raw ANSI colours.
    ("py.warnings", ("data_validation.py", "Add type hints to the `predict` method")),
    # Lightning 2.6 advertises its LitLogger service at INFO whenever a Trainer is built without one,
    # through whichever of these loggers was imported last (each rebinds lightning_utilities' logger;
    # mlflow.pytorch imports pytorch_lightning).
    *((f"{package}.utilities.rank_zero", ("LitLogger",))
      for package in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric")),
)


class _DropRecords(logging.Filter):
    def __init__(self, texts: tuple[str, ...]) -> None:
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not all(text in message for text in self.texts)


def install() -> None:
    """Add the warning filters and the log record filters; calling it again adds nothing."""
    for message, category, module in WARNINGS:
        # filterwarnings drops an identical filter already present before adding it again.
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, texts in LOG_RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropRecords) and f.texts == texts for f in logger.filters):
            logger.addFilter(_DropRecords(texts))
