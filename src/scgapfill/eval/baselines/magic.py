"""MAGIC baseline (van Dijk et al., Cell 2018) through the ``magic-impute`` package."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from scgapfill.eval.baselines.simple import lognorm_counts

__all__ = ["magic"]


def magic(
    counts: Any,
    *,
    seed: int = 0,
    knn: int = 5,
    t: int | str = "auto",
    decay: float | None = 1,
    n_pca: int | None = 100,
    knn_max: int | None = None,
    solver: str = "exact",
) -> np.ndarray:
    """Diffuse the lognorm matrix over MAGIC's cell graph; output clipped at >= 0.

    Parameters
    ----------
    counts
        Cells x genes (masked) counts, scipy sparse or dense; at least ``knn + 2`` cells.
    seed
        MAGIC's ``random_state`` (PCA and graph construction).
    knn, t, decay, n_pca, solver
        Passed to ``magic.MAGIC``; ``t="auto"`` picks the diffusion time by convergence.
    knn_max
        MAGIC's neighbour search size; ``None`` means MAGIC's ``3 * knn``, capped at
        ``n_cells - 2``.
    """
    # Imported here: magic pulls in graphtools / pygsp / scprep, which take seconds.
    import magic as magic_impute

    values = lognorm_counts(counts)
    if isinstance(knn, bool) or not isinstance(knn, (int, np.integer)) or knn < 1:
        raise ValueError(f"knn must be a positive integer, got {knn!r}")
    n_cells = values.shape[0]
    # graphtools lowers knn above n_cells - 2 with a warning; refuse instead, so knn means what it says.
    if knn > n_cells - 2:
        raise ValueError(f"MAGIC knn={knn} needs at least knn + 2 cells, got {n_cells}; lower knn")
    if knn_max is None:
        # magic-impute 3.0 asks sklearn for 3 * knn + 1 neighbours, which fails outright on
        # fewer cells than that (e.g. 10 cells with knn=5); capping knn_max avoids it.
        knn_max = min(3 * knn, n_cells - 2)
    elif isinstance(knn_max, bool) or not isinstance(knn_max, (int, np.integer)) or knn_max < knn:
        raise ValueError(f"knn_max must be an integer >= knn ({knn}), got {knn_max!r}")
    if not (t == "auto" or (isinstance(t, (int, np.integer)) and not isinstance(t, bool) and t >= 1)):
        raise ValueError(f"t must be 'auto' or a positive integer, got {t!r}")
    if solver not in ("exact", "approximate"):
        raise ValueError(f"solver must be 'exact' or 'approximate', got {solver!r}")
    operator = magic_impute.MAGIC(
        knn=knn,
        knn_max=knn_max,
        t=t,
        decay=decay,
        n_pca=n_pca,
        solver=solver,
        random_state=seed,
        verbose=0,
        n_jobs=1,
    )
    with warnings.catch_warnings():
        # magic-impute 3.0 calls tasklogger methods that tasklogger 1.2 marks deprecated;
        # harmless (works with numpy 2.4 / scipy 1.17 as is), but it floods the log.
        warnings.filterwarnings("ignore", message="Call to deprecated method", category=DeprecationWarning)
        # Dense input: MAGIC returns the same container type it was given.
        imputed = operator.fit_transform(values.toarray())
    return np.clip(np.asarray(imputed, dtype=np.float64), 0.0, None)
