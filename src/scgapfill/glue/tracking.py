"""MLflow glue that knows nothing of Kedro: per-epoch curves, model logging (loading: :mod:`scgapfill.model.loading`)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Loading a bundle (a file, a folder, an MLflow URI) is the model's own business: GapFill.load calls it.
from scgapfill.model.loading import BUNDLE_FILE, REGISTERED_MODEL_NAME, bundle_in_folder, load_bundle  # noqa: E402,F401


def active_run_logger() -> Any:
    """A Lightning ``MLFlowLogger`` writing into the active MLflow run (kedro-mlflow's), or None.

    The run belongs to kedro-mlflow, which ends it FINISHED or FAILED with the pipeline. Lightning's
    logger would end it itself when ``fit`` returns (``finalize``), so that a pipeline killed after
    training read FINISHED: this one leaves the run's status alone.
    """
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return None
    from lightning.pytorch.loggers import MLFlowLogger

    class AttachedMLFlowLogger(MLFlowLogger):
        def finalize(self, status: str = "success") -> None:
            """Nothing to close: the run's owner ends it."""

    return AttachedMLFlowLogger(tracking_uri=mlflow.get_tracking_uri(), run_id=run.info.run_id, log_model=False)


def _requirements() -> list[str]:
    from importlib.metadata import version

    # Given explicitly: inferring them costs 12-18 s per save (NOTES.md).
    return [f"{name}=={version(name)}" for name in ("torch", "numpy", "scipy", "pandas", "scikit-learn", "mlflow")] + [
        "scgapfill"
    ]


def model_signature(gene_names: list[str], form: str) -> Any:
    """The pyfunc model's signature: raw counts per gene in, imputed values per gene out.

    Every model gene is an optional ``double`` column, so MLflow's schema enforcement
    puts the columns in the model's order, drops genes the model does not know and lets
    missing ones through (``predict`` treats them as unobserved zeros). ``fill_only_zeros``
    and ``form`` (``impute.form``, by default the one the model was saved with) are declared as
    parameters: MLflow passes only declared parameters to ``predict``.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), str(gene), required=False) for gene in gene_names]),
        outputs=Schema([ColSpec("float", str(gene)) for gene in gene_names]),
        params=ParamSchema([ParamSpec("fill_only_zeros", "boolean", True), ParamSpec("form", "string", form)]),
    )


def log_gapfill_model(bundle: Any, register: bool = True, input_example: Any = None) -> dict:
    """Log the bundle as an MLflow pyfunc model in the active run (and register it); returns its URIs.

    ``input_example`` (a few cells x genes of raw counts, a DataFrame) is stored with the
    model and MLflow checks at logging time that the logged model loads and predicts on it.
    """
    import mlflow

    if mlflow.active_run() is None:
        log.info("No active MLflow run: the model is not logged")
        return {}
    code = Path(__file__).with_name("mlflow_model.py")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / BUNDLE_FILE
        bundle.save(path)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            artifacts={"bundle": str(path)},
            signature=model_signature(bundle.gene_names, bundle.impute.form),
            input_example=input_example,
            pip_requirements=_requirements(),
            registered_model_name=REGISTERED_MODEL_NAME if register else None,
        )
    version = getattr(info, "registered_model_version", None)
    result = {
        "model_uri": info.model_uri,
        "run_id": mlflow.active_run().info.run_id,
        "registered_model": REGISTERED_MODEL_NAME if register else "",
        "registered_version": int(version) if version is not None else None,
    }
    log.info("Model logged to MLflow: %s (registered %s v%s)", info.model_uri, REGISTERED_MODEL_NAME, version)
    return result


def log_metric_if_tracking(name: str, value: float) -> bool:
    """Log ``name`` in the active MLflow run (kedro-mlflow's during ``kedro run``); False when there is none."""
    import mlflow

    if mlflow.active_run() is None:
        return False
    mlflow.log_metric(name, float(value))
    return True
