"""The MLflow pyfunc model, logged as code ("models from code"), not as a pickle.

``mlflow.pyfunc.load_model(uri)`` runs this file and :meth:`GapFillPyfunc.load_context`
reads the weights-only bundle artifact, so loading never unpickles code.
``predict`` takes a cells x genes DataFrame of raw counts (gene names as columns)
and returns the imputed log1p(counts / size factor * 1e4) values on the model's genes.

``pd.DataFrame`` is one of the type hints MLflow 3 accepts on ``predict`` without
inferring a schema from it; the schema (the model's genes as optional columns and the
``fill_only_zeros`` parameter) is given explicitly when the model is logged
(:func:`scgapfill.tracking.model_signature`). Missing genes are zeros (unobserved),
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
        from scgapfill.model_io import GapFillBundle

        self.bundle = GapFillBundle.load(context.artifacts["bundle"])

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from scgapfill.imputation import align_genes, impute_counts

        params = params or {}
        counts = sp.csr_matrix(np.asarray(model_input, dtype=np.float32))
        aligned, _ = align_genes(counts, [str(c) for c in model_input.columns], self.bundle.gene_names)
        values = impute_counts(self.bundle, aligned, fill_only_zeros=bool(params.get("fill_only_zeros", True)))
        return pd.DataFrame(values, index=model_input.index, columns=self.bundle.gene_names)


mlflow.models.set_model(GapFillPyfunc())
