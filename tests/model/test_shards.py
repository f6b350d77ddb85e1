"""Shards prepared once, then training where each rank reads only its own (scgapfill.train.shards, --shards)."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill import GapFill
from scgapfill.data.io import counts_of
from scgapfill.data.layout import laid_out
from scgapfill.glue.distributed import main as train_main
from scgapfill.nn.bundle import GapFillBundle
from scgapfill.params import dotted_overrides, merged, parse, read_parameter_files
from scgapfill.train.shards import (META_FILE, ContextArray, ShardError, batch_limits, main as prepare_main, rank_shards,
                              read_metadata, shard_file)
from scgapfill.train.fit import training_data

from ddp_script import torchrun_distributed  # tests/model is on sys.path (pytest rootdir import mode)
from test_distributed import TINY

ROOT = Path(__file__).resolve().parents[2]
CONF = str(ROOT / "conf" / "base")


def prepare(counts_file, shard_dir, n_shards, *extra):
    return prepare_main([str(counts_file), str(shard_dir), "--shards", str(n_shards), "--conf", CONF,
                         "--set", *TINY, *extra])


def test_shards_partition_the_cells_and_hold_what_fit_would_compute(counts_file, tmp_path):
    shard_dir = tmp_path / "shards"
    prepare(counts_file, shard_dir, 3)
    meta = read_metadata(shard_dir)
    # What fit_gapfill computes on the whole data, by GapFill.fit's own path.
    params = merged(read_parameter_files(CONF), dotted_overrides(TINY))
    model_params, train_params = parse("model", params["model"]), parse("train", params["train"])
    counts, genes = counts_of(ad.read_h5ad(counts_file), "counts")
    counts, layout = laid_out(counts, genes, params["layout"], model_params.depth)
    whole = training_data(counts, model_params, train_params)

    assert meta["layout"]["genes"] == [str(g) for g in layout["genes"]]
    assert meta["layout"]["positions"] == np.asarray(layout["positions"]).tolist()
    assert meta["scaler"] == whole.scaler.to_dict()
    assert (meta["n_train_cells"], meta["n_val_cells"]) == (len(whole.train_cells), len(whole.val_cells))
    seen = []
    for index, entry in enumerate(meta["shards"]):
        assert entry["file"] == shard_file(index)
        shard = ad.read_h5ad(shard_dir / entry["file"])
        cells = shard.obs["cell"].to_numpy()
        seen.append(cells)
        assert list(shard.var_names) == meta["layout"]["genes"]
        assert (sp.csr_matrix(shard.X) != whole.scaled[cells]).nnz == 0
        np.testing.assert_allclose(shard.layers["context"], whole.context(cells), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(shard.obs["size_factor"].to_numpy(), whole.cell_sizes[cells])
        np.testing.assert_array_equal(shard.obs["validation"].to_numpy(), np.isin(cells, whole.val_cells))
        assert entry["n_val"] >= 1 and entry["n_train"] >= 1  # every shard has both kinds
        assert entry["n_cells"] == cells.size == entry["n_train"] + entry["n_val"]
    every = np.concatenate(seen)
    np.testing.assert_array_equal(np.sort(every), np.arange(counts.shape[0]))  # each cell in exactly one shard
    assert sorted(p.name for p in shard_dir.iterdir()) == sorted([META_FILE, *(shard_file(i) for i in range(3))])


@pytest.mark.ddp
def test_torchrun_two_ranks_read_their_own_shard_and_write_one_loadable_bundle(counts_file, tmp_path):
    shard_dir = tmp_path / "shards"
    prepare(counts_file, shard_dir, 2)
    meta = read_metadata(shard_dir)
    # 26 and 25 training cells: 6 and 5 batches of 5, so the bound to the fewest is what keeps DDP in step.
    assert [s["n_train"] for s in meta["shards"]] == [26, 25]
    assert batch_limits(meta, 2, 5) == (5, 2)
    out = tmp_path / "model.pt"
    result = torchrun_distributed(["--shards", str(shard_dir), str(out), "--set", "train.devices=2",
                                   "train.batch_size=5"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote ") == 1  # rank 0 alone
    reads = dict(re.findall(r"rank (\d) of 2 reads (.+)", result.stdout))
    assert {rank: files.split() for rank, files in reads.items()} == {"0": [shard_file(0)], "1": [shard_file(1)]}
    bundle = GapFillBundle.load(out)
    assert bundle.info["trained_from"] == "shards" and bundle.info["n_shards"] == 2
    assert bundle.info["n_train_cells"] == 51 and bundle.info["strategy"] == "ddp" and len(bundle.history) == 2
    assert bundle.train.batch_size == 5 and bundle.scaler == meta["scaler"]
    assert GapFill.load(out).gene_names == meta["layout"]["genes"]
    assert [p.name for p in tmp_path.glob("*.pt")] == ["model.pt"]


def test_each_rank_reads_every_world_size_th_shard_and_an_uneven_share_is_refused():
    assert rank_shards(4, 1, 2) == [1, 3]
    assert rank_shards(4, 0, 1) == [0, 1, 2, 3]
    with pytest.raises(ShardError, match="3 shards cannot be shared evenly by 2 ranks"):
        rank_shards(3, 0, 2)


def test_a_world_size_that_does_not_divide_the_shards_stops_before_training(counts_file, tmp_path, monkeypatch,
                                                                          capsys):
    shard_dir = tmp_path / "shards"
    prepare(counts_file, shard_dir, 3)
    # What torchrun sets for rank 0 of 2.
    for key, value in {"TORCHELASTIC_RUN_ID": "test", "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0",
                       "GROUP_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit):
        train_main(["--shards", str(shard_dir), str(tmp_path / "m.pt")])
    assert "3 shards cannot be shared evenly by 2 ranks" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("n_shards, message", [(0, "at least 1 shard"), (14, "more shards than the 13 validation")])
def test_too_few_or_too_many_shards_are_refused_before_any_work(counts_file, tmp_path, capsys, n_shards, message):
    with pytest.raises(SystemExit):
        prepare(counts_file, tmp_path / "shards", n_shards)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())


def test_a_folder_that_holds_shards_is_refused(counts_file, tmp_path, capsys):
    shard_dir = tmp_path / "shards"
    prepare(counts_file, shard_dir, 2)
    before = {p.name: p.stat().st_mtime_ns for p in shard_dir.iterdir()}
    with pytest.raises(SystemExit):
        prepare(counts_file, shard_dir, 2)
    assert "already holds prepared shards" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in shard_dir.iterdir()} == before


def test_an_interrupted_preparation_leaves_no_shards_that_look_complete(counts_file, tmp_path, monkeypatch, capsys):
    shard_dir = tmp_path / "shards"
    write = ad.AnnData.write_h5ad
    calls = []

    def write_then_fail(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            write(self, path, *args, **kwargs)  # half-way: written to the temporary, never renamed
            raise KeyboardInterrupt
        return write(self, path, *args, **kwargs)

    monkeypatch.setattr(ad.AnnData, "write_h5ad", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        prepare(counts_file, shard_dir, 3)
    monkeypatch.undo()
    assert sorted(p.name for p in shard_dir.iterdir()) == [shard_file(0)]  # no metadata, no temporaries
    with pytest.raises(SystemExit):
        train_main(["--shards", str(shard_dir), str(tmp_path / "m.pt")])
    assert "holds an unfinished preparation" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare(counts_file, shard_dir, 3)
    assert "of an unfinished preparation; give an empty folder" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("model.depth=2", "model.*: fixed when the shards were prepared"),
    ("train.seed=5", "prepared with train.seed=0"),
    ("train.devices=3", "train.devices=3 x train.num_nodes=1 ranks, but 1 were started"),
])
def test_what_the_preparation_fixed_cannot_be_changed_at_training(counts_file, tmp_path, capsys, override, message):
    shard_dir = tmp_path / "shards"
    prepare(counts_file, shard_dir, 2)
    with pytest.raises(SystemExit):
        train_main(["--shards", str(shard_dir), str(tmp_path / "m.pt"), "--set", override])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_the_precomputed_context_answers_like_context_rows():
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(ContextArray(rows)([2, 0]), rows[[2, 0]])


def test_one_process_alone_reads_every_shard_and_trains(counts_file, tmp_path):
    from scgapfill.train.sharded import fit_from_shards, shard_parameters

    shard_dir = tmp_path / "shards"
    prepare(counts_file, shard_dir, 2)
    meta = read_metadata(shard_dir)
    bundle = fit_from_shards(shard_dir, meta, shard_parameters(meta, {"train": {"max_epochs": 1}}), 0, 1)
    assert bundle.info["trained_from"] == "shards" and len(bundle.history) == 1
    assert (bundle.info["n_train_cells"], bundle.info["n_val_cells"]) == (51, 13)
    assert bundle.layout["genes"] == meta["layout"]["genes"]
