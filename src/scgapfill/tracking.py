"""MLflow glue that knows nothing of Kedro: per-epoch curves, model logging, model loading."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REGISTERED_MODEL_NAME = "scgapfill-unet"
BUNDLE_FILE = "gapfill_model.pt"


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


def model_signature(gene_names: list[str]) -> Any:
    """The pyfunc model's signature: raw counts per gene in, imputed values per gene out.

    Every model gene is an optional ``double`` column, so MLflow's schema enforcement
    puts the columns in the model's order, drops genes the model does not know and lets
    missing ones through (``predict`` treats them as unobserved zeros). ``fill_only_zeros``
    is declared as a parameter: MLflow passes only declared parameters to ``predict``.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), str(gene), required=False) for gene in gene_names]),
        outputs=Schema([ColSpec("float", str(gene)) for gene in gene_names]),
        params=ParamSchema([ParamSpec("fill_only_zeros", "boolean", True)]),
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
            signature=model_signature(bundle.gene_names),
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


# MLflow run ids are 32 lowercase hex digits (uuid4().hex); a bare one names the run's logged model.
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_GIVE = f"give a {BUNDLE_FILE} path or an MLflow URI like models:/{REGISTERED_MODEL_NAME}/1"


def _is_mlflow_uri(uri: str) -> bool:
    """``models:/...``, ``runs:/...`` and other scheme URIs, or a bare run id; anything else is a local path."""
    return ":/" in uri or bool(_RUN_ID.fullmatch(uri))


def bundle_in_folder(folder: Path, uri: str, label: str | None = None) -> Path:
    """The one ``gapfill_model.pt`` under ``folder`` (searched recursively: a saved model folder, or an
    MLflow model's artifacts); refuses none or several, since picking one would be a guess. ``label``
    names ``uri`` as the caller gave it (see :func:`load_bundle`)."""
    label = label or f"inference.uri={uri!r}"
    found = sorted(folder.rglob(BUNDLE_FILE))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(f"{label} is a folder that holds no {BUNDLE_FILE} bundle; {_GIVE}")
    # Kedro's versioned catalog entry is such a folder, one subfolder per version named by its
    # timestamp: the last in name order is the newest.
    raise ValueError(
        f"{label} holds {len(found)} {BUNDLE_FILE} bundles; give the path of the one to use, "
        f"e.g. the last in name order: {found[-1]}"
    )


def _local_bundle(uri: str, label: str) -> Any:
    from scgapfill.model_io import GapFillBundle

    path = Path(uri)
    if not path.exists():
        raise FileNotFoundError(f"{label}: no such file or folder; {_GIVE}")
    found = bundle_in_folder(path, uri, label) if path.is_dir() else path
    return GapFillBundle.load(found, label=label + (f" ({found})" if found != path else ""))


def load_bundle(uri: str, label: str | None = None) -> Any:
    """Load a trained bundle from a local file or folder or an MLflow URI, weights only.

    Accepted: ``path/to/gapfill_model.pt``, a folder holding one (``GapFill.save``'s, or a
    downloaded MLflow model), ``models:/scgapfill-unet/1``, ``models:/m-<id>``,
    ``runs:/<run_id>/model`` or a bare run id. The MLflow model's artifacts are downloaded
    and only the bundle file is read (``torch.load(weights_only=True)``); its code is not run.
    Anything that is neither a URI nor a run id is a local path, so a mistyped path is
    reported as a missing file rather than as an unknown MLflow run.

    ``label`` is ``uri`` as the caller gave it, named in every error: the pipeline's parameter
    (``inference.uri='P'``, the default) or a Python call (``GapFill.load('P')``).
    """
    from scgapfill.model_io import GapFillBundle

    uri = str(uri).strip()
    label = label or f"inference.uri={uri!r}"
    if not uri:
        # The --params example only where the parameter is what the caller set.
        example = f' (--params="inference.uri=models:/{REGISTERED_MODEL_NAME}/1")' \
            if label.startswith("inference.") else ""
        raise ValueError(f"{label} is empty; {_GIVE}{example}")
    if Path(uri).exists() or not _is_mlflow_uri(uri):
        return _local_bundle(uri, label)
    import mlflow

    mlflow_uri = uri if ":/" in uri else f"runs:/{uri}/model"
    try:
        downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=mlflow_uri))
    except Exception as err:  # MLflow raises several types for a missing model or run
        raise ValueError(
            f"{label} could not be read from MLflow ({mlflow.get_tracking_uri()}): "
            f"{(str(err).strip() or type(err).__name__).splitlines()[0]}. "
            "List models in the MLflow UI or with `mlflow models`/the registry"
        ) from err
    found = downloaded if downloaded.is_file() else bundle_in_folder(downloaded, uri, label)
    return GapFillBundle.load(found, label=label)


def log_metric_if_tracking(name: str, value: float) -> bool:
    """Log ``name`` in the active MLflow run (kedro-mlflow's during ``kedro run``); False when there is none."""
    import mlflow

    if mlflow.active_run() is None:
        return False
    mlflow.log_metric(name, float(value))
    return True
