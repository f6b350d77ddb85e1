"""A trained bundle from where it was kept: a ``.pt`` file, a folder holding one, or an MLflow URI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

REGISTERED_MODEL_NAME = "scgapfill-unet"
BUNDLE_FILE = "gapfill_model.pt"

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
    from scgapfill.nn.bundle import GapFillBundle

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
    from scgapfill.nn.bundle import GapFillBundle

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
