"""End-to-end: real KedroSession runs of data_processing in a throw-away copy of the project.

The ``kedro_project`` fixture (conftest.py) copies conf/ and pyproject.toml into
tmp_path and points MLflow at a sqlite file there, so these runs never touch the
repository's data/ folder or mlflow.db.
"""

from __future__ import annotations

import json

from pathlib import Path

import anndata as ad
import pytest
import yaml
from kedro.framework.session import KedroSession
from mlflow import MlflowClient
from omegaconf import OmegaConf

import scgapfill
from scgapfill.params import ParameterError

pytestmark = [
    pytest.mark.slow,
    # Kedro 1.7 and kedro-mlflow still call omegaconf's deprecated register_new_resolver.
    pytest.mark.filterwarnings(r"ignore:register_new_resolver\(\) is deprecated:UserWarning"),
]

OUTPUTS = ("data/01_raw/input_counts.h5ad", "data/02_intermediate/normalized.h5ad", "data/03_primary/processed.h5ad")


def cli_params(*items: str) -> dict:
    """``--params="a.b=1,c=x"`` as ``kedro run`` turns it into runtime parameters."""
    return OmegaConf.to_container(OmegaConf.from_dotlist(list(items)))


def run_data_processing(project: Path, runtime_params: dict | None = None) -> dict:
    with KedroSession.create(project_path=project, runtime_params=runtime_params) as session:
        context = session.load_context()
        for name in ("input_counts", "normalized", "processed"):
            filepath = Path(str(context.catalog.get(name)._filepath))
            assert filepath.is_relative_to(project), (name, filepath)  # never the repository's data/
        return session.run(pipeline_name="data_processing")


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_embedded_data_run(kedro_project: Path) -> None:
    run_data_processing(kedro_project)

    processed = ad.read_h5ad(kedro_project / "data/03_primary/processed.h5ad")
    assert processed.shape == (693, 765)
    assert "counts" in processed.layers and "size_factor" in processed.obs
    assert processed.uns["label_key"] == "bulk_labels"
    normalized = ad.read_h5ad(kedro_project / "data/02_intermediate/normalized.h5ad")
    assert list(normalized.obs_names) == list(processed.obs_names) and normalized.n_vars == 765
    # The gene layout belongs to the modeling pipeline (learned from the masked counts).
    assert not (kedro_project / "data/04_feature/gene_layout.json").exists()
    assert (kedro_project / "data/01_raw/input_counts.h5ad").is_file()
    # MLflow tracked into the copy's own sqlite store.
    client = MlflowClient(tracking_uri=f"sqlite:///{(kedro_project / 'mlflow.db').as_posix()}")
    experiment = client.get_experiment_by_name("scgapfill")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    assert runs[0].info.run_name == "data_processing"
    shipped = yaml.safe_load((kedro_project / "conf/base/parameters_data_processing.yml").read_text())
    assert runs[0].data.params["qc.min_genes"] == str(shipped["qc"]["min_genes"])


def test_user_h5ad_run_leaves_the_file_alone(kedro_project: Path, tmp_path: Path) -> None:
    user = scgapfill.simulate(n_cells=150, n_genes=120, n_groups=3, seed=7)
    user.obs["cell_type"] = user.obs["group"].astype(str)
    user_file = tmp_path / "user" / "my_counts.h5ad"
    user_file.parent.mkdir()
    user.write_h5ad(user_file)
    before = (user_file.read_bytes(), user_file.stat().st_mtime_ns)

    run_data_processing(
        kedro_project,
        cli_params(f"input.path={user_file}", "input.label_key=cell_type", "qc.min_genes=10", "hvg.n_top_genes=60"),
    )

    assert (user_file.read_bytes(), user_file.stat().st_mtime_ns) == before
    assert _files_under(user_file.parent) == ["my_counts.h5ad"]
    processed = ad.read_h5ad(kedro_project / "data/03_primary/processed.h5ad")
    assert processed.n_vars == 60
    assert set(processed.obs_names) <= set(user.obs_names) and processed.n_obs > 100
    assert set(processed.var_names) <= set(user.var_names)
    assert processed.uns["source"] == str(user_file)
    assert processed.uns["label_key"] == "cell_type"
    copied = ad.read_h5ad(kedro_project / "data/01_raw/input_counts.h5ad")
    assert (copied.X != user.X).nnz == 0
    normalized = ad.read_h5ad(kedro_project / "data/02_intermediate/normalized.h5ad")
    assert set(processed.var_names) < set(normalized.var_names), "every QC'd gene is kept for the deliverable"


def test_registered_pipelines(kedro_project: Path) -> None:
    from kedro.framework.project import pipelines

    assert {"data_processing", "training", "__default__"} <= set(pipelines)
    assert {n.name for n in pipelines["data_processing"].nodes} >= {"load_counts_node", "select_genes_node"}
    assert "compute_gene_layout_node" in {n.name for n in pipelines["modeling"].nodes}


def test_invalid_parameter_fails_before_any_node(kedro_project: Path) -> None:
    with pytest.raises(ParameterError) as info:
        with KedroSession.create(project_path=kedro_project, runtime_params=cli_params("qc.min_genes=-1")) as session:
            session.run(pipeline_name="data_processing")
    assert "qc.min_genes" in str(info.value)
    for output in OUTPUTS:
        assert not (kedro_project / output).exists(), output
    assert _files_under(kedro_project / "data") == []
    # No MLflow run was started either: the pipeline never began.
    client = MlflowClient(tracking_uri=f"sqlite:///{(kedro_project / 'mlflow.db').as_posix()}")
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    assert experiment_ids  # at least mlflow's "Default"
    assert list(client.search_runs(experiment_ids)) == []


def _untrained_model(folder: Path, counts_adata: ad.AnnData) -> Path:
    """A bundle with random weights on the genes of ``counts_adata``, saved under ``folder``: enough to
    run inference (the numbers do not matter here)."""
    import torch

    from scgapfill.data.layout import compute_layout
    from scgapfill.nn.bundle import GapFillBundle
    from scgapfill.nn import UNet, input_channels
    from scgapfill.data.normalization import lognorm, size_factors
    from scgapfill.params import ModelParams, TrainParams
    from scgapfill.train.data import GeneScaler

    model = ModelParams(depth=2, base_channels=4, context_channel=False)
    values = lognorm(counts_adata.X, size_factors(counts_adata.X))
    layout = compute_layout(values, list(counts_adata.var_names), "correlation", divisor=4)
    torch.manual_seed(0)
    net = UNet(input_channels(False), model.base_channels, model.depth, model.dropout)
    bundle = GapFillBundle(state_dict=net.state_dict(), model_params=model.model_dump(),
                           train_params=TrainParams().model_dump(), layout=layout,
                           scaler=GeneScaler.fit(values).to_dict(), gene_names=list(layout["genes"]))
    return bundle.save(folder / "gapfill_model.pt")


def test_inference_records_the_missing_gene_share_and_a_bad_input_writes_nothing(kedro_project: Path,
                                                                                 tmp_path: Path) -> None:
    model_data = scgapfill.simulate(n_cells=60, n_genes=32, n_groups=2, seed=3)
    model_file = _untrained_model(tmp_path / "model", model_data)
    new = model_data[:, model_data.var_names[8:]].copy()  # a quarter of the model's genes missing
    new_file = tmp_path / "new.h5ad"
    new.write_h5ad(new_file)
    truncated = tmp_path / "truncated.h5ad"
    truncated.write_bytes(new_file.read_bytes()[: new_file.stat().st_size // 2])

    with pytest.raises(ValueError, match=r"could not be read as \.h5ad"):
        with KedroSession.create(project_path=kedro_project, runtime_params=cli_params(
                f"input.path={truncated}", f"inference.uri={model_file}")) as session:
            session.run(pipeline_name="inference")
    # A failed run writes no output, only the record of its failure.
    assert _files_under(kedro_project / "data") == ["08_reporting/run_record.json"]
    record = json.loads((kedro_project / "data/08_reporting/run_record.json").read_text())
    assert record["status"] == "failed" and "could not be read as .h5ad" in record["error"]
    assert record["outputs_written"] == []

    with KedroSession.create(project_path=kedro_project, runtime_params=cli_params(
            f"input.path={new_file}", f"inference.uri={model_file.parent}")) as session:
        session.run(pipeline_name="inference")
    out = ad.read_h5ad(kedro_project / "data/07_model_output/inference_imputed.h5ad")
    assert out.uns["gapfill"]["missing_gene_share"] == 0.25
    client = MlflowClient(tracking_uri=f"sqlite:///{(kedro_project / 'mlflow.db').as_posix()}")
    runs = client.search_runs([client.get_experiment_by_name("scgapfill").experiment_id],
                              order_by=["attributes.start_time DESC"])
    assert runs[0].data.metrics["inference_missing_gene_share"] == 0.25
