"""The pages a person opens: kedro-viz and the MLflow UI, in a real headless Chromium."""

from __future__ import annotations

import json
import sys
import urllib.request

import pytest

from .conftest import Server, free_port, project_env, screenshot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _looks_like_a_page(png) -> None:
    from PIL import Image

    image = Image.open(png).convert("L")
    low, high = image.getextrema()
    assert image.size[0] >= 800 and high - low > 100, "the screenshot is blank"


@pytest.fixture(scope="module")
def servers(trained_project, tmp_path_factory):
    """kedro-viz and the MLflow UI on the trained project, started together: each takes 15-45 s to answer."""
    logs = tmp_path_factory.mktemp("servers")
    env = project_env(trained_project)
    viz_port, mlflow_port = free_port(), free_port()
    started = [
        Server([sys.executable, "-m", "kedro", "viz", "run", "--host", "127.0.0.1", "--port", str(viz_port),
                "--no-browser"], trained_project, env, logs / "viz.log"),
        Server([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                f"sqlite:///{trained_project / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(mlflow_port),
                "--workers", "1"], trained_project, env, logs / "mlflow.log"),
    ]
    try:
        yield {"viz": (f"http://127.0.0.1:{viz_port}", started[0]),
               "mlflow": (f"http://127.0.0.1:{mlflow_port}", started[1])}
    finally:
        for server in started:
            server.stop()


def test_kedro_viz_shows_the_training_pipeline(servers, tmp_path):
    url, server = servers["viz"]
    wait_for(f"{url}/api/main", timeout=180, server=server)
    with urllib.request.urlopen(f"{url}/api/main", timeout=30) as response:
        graph = json.load(response)
    training = {node["name"] for node in graph["nodes"] if node["type"] == "task" and "training" in node["pipelines"]}
    assert {"train_model_node", "make_heldout_mask_node", "score_methods_node", "compute_gene_layout_node"} <= training
    assert {"training", "inference", "benchmark"} <= {p["id"] for p in graph["pipelines"]}
    # pid selects the pipeline drawn (kedro-viz's URL parameter; the default is __default__).
    _looks_like_a_page(screenshot(f"{url}/?pid=training", tmp_path / "kedro-viz.png", tmp_path))


def test_mlflow_ui_lists_the_run_with_its_metrics(servers, tmp_path):
    url, server = servers["mlflow"]
    wait_for(f"{url}/health", timeout=180, server=server)
    base = f"{url}/api/2.0/mlflow"
    with urllib.request.urlopen(f"{base}/experiments/get-by-name?experiment_name=scgapfill", timeout=30) as r:
        experiment_id = json.load(r)["experiment"]["experiment_id"]
    request = urllib.request.Request(f"{base}/runs/search", method="POST",
                                     data=json.dumps({"experiment_ids": [experiment_id],
                                                      "filter": "attributes.run_name = 'training'"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        runs = json.load(r)["runs"]
    assert len(runs) == 1
    metrics = {m["key"]: m["value"] for m in runs[0]["data"]["metrics"]}
    assert {"heldout_pearson", "heldout_rmse", "mcv_mse", "train_loss"} <= set(metrics)
    _looks_like_a_page(screenshot(f"{url}/#/experiments/{experiment_id}/runs", tmp_path / "mlflow-runs.png", tmp_path))
