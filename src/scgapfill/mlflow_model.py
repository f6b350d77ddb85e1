"""The MLflow pyfunc model, logged as code ("models from code"), not as a pickle.

``mlflow.pyfunc.load_model(uri)`` runs this file and :meth:`GapFillPyfunc.load_context`
reads the weights-only bundle artifact, so loading never unpickles code.
``predict`` takes a cells x genes DataFrame of raw counts (gene names as columns)
and returns the imputed log1p(counts / size factor * 1e4) values on the model's genes.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import scipy.sparse as sp
from mlflow.pyfunc import PythonModel


class GapFillPyfunc(PythonModel):
    def load_context(self, context) -> None:
        from scgapfill.model_io import GapFillBundle

        self.bundle = GapFillBundle.load(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from scgapfill.impute import align_genes, impute_counts

        params = params or {}
        counts = sp.csr_matrix(np.asarray(model_input, dtype=np.float32))
        aligned, _ = align_genes(counts, [str(c) for c in model_input.columns], self.bundle.gene_names)
        values = impute_counts(self.bundle, aligned, fill_only_zeros=bool(params.get("fill_only_zeros", False)))
        return pd.DataFrame(values, index=model_input.index, columns=self.bundle.gene_names)


mlflow.models.set_model(GapFillPyfunc())
