import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from scgapfill.eval.plots import heldout_scatter, loss_curves, umap_before_after


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, size=(3, 20))
    group = np.repeat(np.arange(3), 20)
    values = np.abs(centres[group] + rng.normal(0, 0.5, size=(60, 20)))
    return values, np.array(["a", "b", "c"])[group]


def test_umap_before_after_with_labels(blobs, tmp_path):
    values, labels = blobs
    fig = umap_before_after(values, values + 0.1, labels, labels, labels, seed=0)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("before") and titles[3].startswith("after")
    assert "labels" in titles[0] and "clusters" in titles[1]
    fig.savefig(tmp_path / "umap.png")


def test_umap_before_after_without_labels(blobs):
    values, labels = blobs
    fig = umap_before_after(values, values, None, labels, labels)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="one entry per cell"):
        umap_before_after(values, values, None, labels[:-1], labels)
    # A dataset without labels has no clusters either: still one (uncoloured) column.
    assert len(umap_before_after(values, values, None, None, None).axes) == 2


def test_heldout_scatter(tmp_path):
    rng = np.random.default_rng(0)
    true = rng.gamma(2.0, 1.0, size=25_000)
    fig = heldout_scatter(true, true + 0.5, "gene_mean")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    title = fig.axes[0].get_title()
    assert "gene_mean" in title and "RMSE 0.500" in title and "Pearson 1.000" in title
    assert len(fig.axes[0].collections[0].get_offsets()) == 20_000  # subsampled
    fig.savefig(tmp_path / "scatter.png")
    with pytest.raises(ValueError, match="one length"):
        heldout_scatter(true, true[:-1], "x")


def test_loss_curves(tmp_path):
    history = pd.DataFrame(
        {"epoch": [0, 0, 1, 1], "train_loss": [1.0, np.nan, 0.5, np.nan], "val_loss": [np.nan, 1.2, np.nan, 0.7]}
    )
    fig = loss_curves(history)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert [len(line.get_xdata()) for line in fig.axes[0].get_lines()] == [2, 2]
    fig.savefig(tmp_path / "loss.png")
    with pytest.raises(ValueError, match="val_loss"):
        loss_curves(history.drop(columns="val_loss"))


def _two_sections(side: int = 12):
    """Two sections of side x side spots; gene g0 rises across each section, the others are noise."""
    import anndata as ad

    rng = np.random.default_rng(0)
    y, x = np.divmod(np.arange(side * side), side)
    section = np.repeat(["left", "right"], side * side)
    xs, ys = np.tile(x, 2), np.tile(y, 2)
    values = rng.gamma(1.0, 0.5, size=(2 * side * side, 6))
    values[:, 0] = xs / side * 3
    spots = ad.AnnData(values.astype(np.float32), obs=pd.DataFrame({"library_id": section},
                                                                  index=[f"s{i}" for i in range(len(section))]))
    spots.var_names = [f"g{j}" for j in range(6)]
    spots.layers["imputed"] = values + 0.1
    spots.obsm["spatial"] = np.column_stack([xs, ys]).astype(float) * 50
    spots.uns["spatial"] = {lib: {"images": {"hires": np.full((side * 6, side * 6, 3), 0.8, dtype=np.float32)},
                                  "scalefactors": {"tissue_hires_scalef": 0.1}} for lib in ("left", "right")}
    return spots


def test_the_most_spatially_patterned_gene_is_drawn_on_each_section_before_and_after(tmp_path):
    from scgapfill.eval.plots import spatial_before_after, spatial_genes

    spots = _two_sections()
    genes = spatial_genes(spots, n_genes=2)
    assert genes[0] == "g0"
    fig = spatial_before_after(spots, genes)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[:4] == ["g0: before (left)", "g0: after (left)", "g0: before (right)", "g0: after (right)"]
    assert len(titles) == 8
    assert sum(len(ax.images) for ax in fig.axes) == 8  # the tissue image under every panel
    fig.savefig(tmp_path / "spatial.png")
