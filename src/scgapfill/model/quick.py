"""``scgapfill.impute(adata)``: train a model on the data and fill its gaps, in one call."""

from __future__ import annotations

import anndata as ad

from scgapfill.data.io import AUTO
from scgapfill.model.gapfill import GapFill
from scgapfill.params import ImputeParams, LayoutParams, ModelParams, TrainParams, parse


def impute(
    adata: ad.AnnData,
    layer: str | None = AUTO,
    key_added: str = "imputed",
    inplace: bool = True,
    model: ModelParams | dict | None = None,
    train: TrainParams | dict | None = None,
    layout: LayoutParams | dict | None = None,
    impute: ImputeParams | dict | None = None,
) -> ad.AnnData | None:
    """Fit a :class:`GapFill` on ``adata``'s counts and add ``layers[key_added]`` (scanpy style).

    The counts are read from ``layers["counts"]`` when there is one, else from ``X`` (where
    ``sc.read_10x_h5`` and ``sc.read_h5ad`` of a raw file leave them); ``layer="name"`` reads
    another layer and ``layer=None`` reads ``X``. They must be raw counts (finite, non-negative
    integers) as the pipeline requires: log-normalised values are refused with a line that says
    where to put the counts. Genes with no count in any cell are left out of the model and not
    filled (``var["gapfill_modelled"]`` False), cells without counts are skipped (rows of 0),
    and duplicate names are told apart inside without renaming ``adata``; each is logged.

    Every cell trains the model and is then imputed; the defaults are those measured best
    (docs/model.md), with the progress bar on unless ``train`` says otherwise. Keep the trained
    model with ``GapFill(...).fit(adata)`` instead to reuse it on other data.

    Examples
    --------
    >>> adata = sc.read_10x_h5("filtered_feature_bc_matrix.h5")  # doctest: +SKIP
    >>> adata.var_names_make_unique()                             # doctest: +SKIP
    >>> scgapfill.impute(adata, train={"max_epochs": 30})         # doctest: +SKIP
    >>> adata.layers["imputed"]                                   # doctest: +SKIP
    """
    train = parse("train", {"enable_progress_bar": True, **_as_dict(train)})
    gapfill = GapFill(model=model, train=train, layout=layout, impute=impute).fit(adata, layer=layer)
    return gapfill.impute(adata, layer=layer, key_added=key_added, inplace=inplace)


def _as_dict(params: TrainParams | dict | None) -> dict:
    if params is None:
        return {}
    return params.model_dump(exclude_unset=True) if isinstance(params, TrainParams) else dict(params)
