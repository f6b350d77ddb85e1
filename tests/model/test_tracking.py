"""The per-epoch curves go into the pipeline's MLflow run without ending it; models are read back from
``inference.uri``, and what cannot be read is named in one line."""

from __future__ import annotations

import re

import mlflow
import pytest

from scgapfill.glue.tracking import active_run_logger, load_bundle
from scgapfill.train.fit import fit_gapfill


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def test_training_leaves_the_run_open_for_its_owner(tracking, counts, layout, model_params, train_params):
    # Lightning's MLFlowLogger ends the run FINISHED when fit returns; a pipeline killed after
    # training then read FINISHED. The run must stay RUNNING until kedro-mlflow ends it.
    assert active_run_logger() is None  # no run: nothing is logged
    with mlflow.start_run() as run:
        fit_gapfill(counts, layout, model_params, train_params.model_copy(update={"max_epochs": 2}),
                    logger=active_run_logger())
        after_fit = tracking.get_run(run.info.run_id)
        assert after_fit.info.status == "RUNNING"
        assert len(tracking.get_metric_history(run.info.run_id, "val_loss")) == 2  # the curves did arrive
    assert tracking.get_run(run.info.run_id).info.status == "FINISHED"


# --- inference.uri: what is read, and one line naming it when it cannot be ---------------------

GIVE = "give a gapfill_model.pt path or an MLflow URI like models:/scgapfill-unet/1"


@pytest.fixture(scope="module")
def bundle_file(tmp_path_factory, counts, layout, model_params, train_params):
    """An untrained bundle saved to a file: reading it back is all these tests need."""
    import torch

    from scgapfill.nn.bundle import GapFillBundle
    from scgapfill.nn import UNet, input_channels

    torch.manual_seed(0)
    net = UNet(input_channels(True), model_params.base_channels, model_params.depth, model_params.dropout)
    bundle = GapFillBundle(state_dict=net.state_dict(), model_params=model_params.model_dump(),
                           train_params=train_params.model_dump(), layout=layout, scaler={},
                           gene_names=list(layout["genes"]))
    return bundle.save(tmp_path_factory.mktemp("bundle") / "gapfill_model.pt")


@pytest.fixture
def no_mlflow(monkeypatch):
    """Fails the test if MLflow is asked for the model: a local path must never be sent there."""
    def refuse(**kwargs):
        raise AssertionError(f"MLflow was asked for {kwargs}")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", refuse)


@pytest.mark.parametrize("uri", ["{tmp}/nothing.pt", "attack", "models/gapfill_model.pt", "{tmp}/no_folder"])
def test_a_missing_local_path_is_reported_as_a_missing_file_not_an_mlflow_run(no_mlflow, tmp_path, uri):
    from scgapfill.pipelines.inference.nodes import load_model

    uri = uri.format(tmp=tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        load_model({"uri": uri}, {})
    assert str(info.value) == f"inference.uri={uri!r}: no such file or folder; {GIVE}"


def test_gapfill_load_names_the_path_it_was_given_not_the_pipeline_parameter(no_mlflow, tmp_path):
    from scgapfill.model import GapFill

    with pytest.raises(FileNotFoundError) as info:
        GapFill.load("missing")
    assert str(info.value) == f"GapFill.load('missing'): no such file or folder; {GIVE}"
    with pytest.raises(ValueError) as info:
        GapFill.load(tmp_path)  # a folder without a bundle, given as a Path
    assert str(info.value) == \
        f"GapFill.load({str(tmp_path)!r}) is a folder that holds no gapfill_model.pt bundle; {GIVE}"
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(ValueError,
                       match=r"^GapFill\.load\('.*model\.pt'\) is not a scgapfill model bundle \(the file is empty"):
        GapFill.load(tmp_path / "model.pt")
    # No --params example: the caller used Python.
    with pytest.raises(ValueError, match=r"^GapFill\.load\(''\) is empty; give a gapfill_model.pt path or an MLflow "
                                         r"URI[^(]*$"):
        GapFill.load("")


def test_a_folder_with_one_bundle_anywhere_inside_is_read(no_mlflow, bundle_file, tmp_path):
    import shutil

    from scgapfill.nn.bundle import GapFillBundle

    nested = tmp_path / "downloaded_model" / "artifacts"
    nested.mkdir(parents=True)
    shutil.copy(bundle_file, nested / "gapfill_model.pt")
    loaded = load_bundle(str(tmp_path / "downloaded_model"))
    assert loaded.gene_names == GapFillBundle.load(bundle_file).gene_names


def test_a_folder_without_exactly_one_bundle_says_so(no_mlflow, bundle_file, tmp_path):
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError) as info:
        load_bundle(str(empty))
    assert str(info.value) == f"inference.uri={str(empty)!r} is a folder that holds no gapfill_model.pt bundle; {GIVE}"
    versions = tmp_path / "gapfill_model.pt"  # Kedro's versioned dataset: one folder per version
    for version in ("2024-01-01T00.00.00.000Z", "2024-02-01T00.00.00.000Z"):
        (versions / version).mkdir(parents=True)
        shutil.copy(bundle_file, versions / version / "gapfill_model.pt")
    with pytest.raises(ValueError, match=r"holds 2 gapfill_model.pt bundles; give the path of the one to use, "
                                         r"e.g. the last in name order: .*2024-02-01T00.00.00.000Z/gapfill_model.pt$"):
        load_bundle(str(versions))


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ({"a": 1}, r"missing keys \['format', 'state_dict', 'model_params', 'train_params', 'layout', 'scaler', "
                   r"'gene_names'\]"),
        ("tensor", r"it holds a Tensor"),
        (b"garbage bytes" * 8, r"not a torch file of tensors and plain data: \w+Error: "),
        (b"", r"the file is empty, 0 bytes"),
        ("code", r"not a torch file of tensors and plain data: UnpicklingError: Unsupported global: GLOBAL .*print"),
    ],
)
def test_a_file_that_is_not_a_bundle_says_so_and_names_inference_uri(no_mlflow, tmp_path, content, detail):
    import torch

    path = tmp_path / "model.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "code":  # a reference to a callable: unpickling it could run code, so it is never loaded
        torch.save({"format": "scgapfill.GapFillBundle", "hook": print}, path)
    else:
        torch.save(torch.zeros(3) if content == "tensor" else content, path)
    before = path.read_bytes()
    with pytest.raises(ValueError) as info:
        load_bundle(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert re.fullmatch(rf"inference\.uri={re.escape(repr(str(path)))} is not a scgapfill model bundle \({detail}.*\); "
                        r"give a gapfill_model.pt written by GapFill.save or the training pipeline", message)
    assert path.read_bytes() == before


def test_a_bare_run_id_still_goes_to_mlflow(monkeypatch, bundle_file):
    asked = []

    def download(artifact_uri):
        asked.append(artifact_uri)
        return str(bundle_file)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download)
    run_id = "0123456789abcdef0123456789abcdef"
    assert load_bundle(run_id).gene_names
    assert load_bundle("models:/scgapfill-unet/1").gene_names
    assert asked == [f"runs:/{run_id}/model", "models:/scgapfill-unet/1"]
