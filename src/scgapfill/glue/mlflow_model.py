"""The MLflow pyfunc model, logged as code ("models from code"), not as a pickle.

``mlflow.pyfunc.load_model(uri)`` runs this file and :meth:`GapFillPyfunc.load_context`
reads the weights-only bundle artifact, so loading never unpickles code.
``predict`` takes a cells x genes DataFrame of raw counts (gene names as columns)
and returns the imputed log1p(counts / size factor * 1e4) values on the model's genes.

``pd.DataFrame`` is one of the type hints MLflow 3 accepts on ``predict`` without
inferring a schema from it; the schema (the model's genes as optional columns and the
``fill_only_zeros`` and ``form`` parameters) is given explicitly when the model is logged
(:func:`scgapfill.glue.tracking.model_signature`). Missing genes are zeros (unobserved),
columns the model does not know are dropped. With the neighbour-context channel (the
default) each cell's neighbours are found among the cells passed in: predict on a whole
data set at once, not cell by cell.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import scipy.sparse as sp
from mlflow.pyfunc import PythonModel, PythonModelContext


class GapFillPyfunc(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from scgapfill.model import GapFill

        self.model = GapFill.load(context.artifacts["bundle"])

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        import anndata as ad

        from scgapfill.infer.imputation import align_genes
        from scgapfill.model import GapFill

        params = params or {}
        genes = self.model.gene_names
        counts = sp.csr_matrix(np.asarray(model_input, dtype=np.float32))
        # On the model's genes first: the output has a column for every one of them, missing ones filled.
        aligned, _ = align_genes(counts, [str(c) for c in model_input.columns], genes)
        cells = ad.AnnData(aligned, obs=pd.DataFrame(index=[str(i) for i in model_input.index]),
                           var=pd.DataFrame(index=genes))
        saved = self.model.impute_params
        # Validated, so that an unknown form is named rather than read as the level form.
        keep = bool(params.get("fill_only_zeros", saved.fill_only_zeros))
        settings = type(saved).model_validate({**saved.model_dump(), "fill_only_zeros": keep,
                                               "form": params.get("form", saved.form)})
        values, _, _ = GapFill.from_bundle(self.model.bundle, impute=settings).impute_matrix(cells, layer=None)
        return pd.DataFrame(values, index=model_input.index, columns=genes)


mlflow.models.set_model(GapFillPyfunc())
