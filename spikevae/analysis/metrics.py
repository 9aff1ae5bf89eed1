"""The metrics of a code, each named for what it is: one module every caller uses.

Two R² are in use and both are here:

- :func:`r2_pooled`: ``1 − Σ_n ‖x_n − x̂_n‖² / Σ_n ‖x_n − x̄_n‖²``, pooled over patches (x̄_n the patch's pixel
  mean): near-blank patches weigh as little as their variance.
- :func:`r2_per_patch` and its mean :func:`r2_mean`: ``1 − ‖x_n − x̂_n‖² / ‖x_n − x̄_n‖²`` per patch, averaged over
  patches, as the iterative P-VAE's reference defines R² (Vafaii et al. 2024, arXiv 2410.19315): a near-blank
  patch with a few spikes can make it very negative.

:func:`fraction_explained` is ``1 − Σ‖x − x̂‖² / Σ‖x‖²`` (the share of the patches' energy explained, as
``simulate``'s summary reports it). :func:`distance` is the reference's ``√((1 − R²)² + (1 − zeros)²)`` from either R².
"""
from __future__ import annotations

import numpy as np

from .sparsity import lifetime_sparsity, population_sparsity

__all__ = ["r2_pooled", "r2_per_patch", "r2_mean", "fraction_explained", "zeros", "distance", "code_metrics"]


def _pair(x, xhat) -> tuple[np.ndarray, np.ndarray]:
    x, xhat = (np.asarray(a, dtype=np.float64) for a in (x, xhat))
    return x.reshape(len(x), -1), xhat.reshape(len(xhat), -1)


def r2_pooled(x: np.ndarray, xhat: np.ndarray) -> float:
    """R² pooled over patches: ``1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²`` (x̄ each patch's pixel mean); x, x̂ (n, D)."""
    x, xhat = _pair(x, xhat)
    sq = ((x - xhat) ** 2).sum(1)  # per patch, then over patches
    return float(1.0 - sq.sum() / ((x - x.mean(1, keepdims=True)) ** 2).sum())


def r2_per_patch(x: np.ndarray, xhat: np.ndarray) -> np.ndarray:
    """R² of each patch (n,): ``1 − ‖x_n − x̂_n‖² / ‖x_n − x̄_n‖²`` (a patch of zero variance: its denominator
    floored at 1e-12, as the reference does)."""
    x, xhat = _pair(x, xhat)
    return 1.0 - ((x - xhat) ** 2).sum(1) / np.maximum(((x - x.mean(1, keepdims=True)) ** 2).sum(1), 1e-12)


def r2_mean(x: np.ndarray, xhat: np.ndarray) -> float:
    """The reference's R²: the mean over patches of :func:`r2_per_patch`."""
    return float(np.mean(r2_per_patch(x, xhat)))


def fraction_explained(x: np.ndarray, xhat: np.ndarray) -> float:
    """``1 − Σ‖x − x̂‖² / Σ‖x‖²``: the share of the patches' energy (not variance) the reconstruction explains."""
    x, xhat = _pair(x, xhat)
    return float(1.0 - ((x - xhat) ** 2).sum() / (x**2).sum())


def zeros(code: np.ndarray) -> float:
    """Fraction of zero entries of a code (n, K)."""
    return float((np.asarray(code) == 0).mean())


def distance(r2: float, zeros: float) -> float:
    """The reference's distance to the perfect sparse code: ``√((1 − R²)² + (1 − zeros)²)``."""
    return float(np.hypot(1 - r2, 1 - zeros))


def code_metrics(x: np.ndarray, xhat: np.ndarray, code: np.ndarray) -> dict:
    """Metrics of one code ``code`` (n, K) whose reconstruction of ``x`` (n, D) is ``xhat``.

    ``r2`` (:func:`r2_mean`, the reference's R²) and ``r2_pooled`` (:func:`r2_pooled`), ``mse`` (squared error
    summed over a patch's dimensions, mean over patches), ``zeros``, lifetime and population sparsity of |code|,
    and ``distance`` / ``distance_pooled`` from each R².
    """
    x, xhat = _pair(x, xhat)
    code = np.asarray(code, dtype=np.float64)
    rp, rm, z = r2_pooled(x, xhat), r2_mean(x, xhat), zeros(code)
    a = np.abs(code)
    return {"r2": rm, "r2_pooled": rp, "mse": float(((x - xhat) ** 2).sum(1).mean()), "zeros": z,
            "distance": distance(rm, z), "distance_pooled": distance(rp, z),
            "lifetime_sparsity": float(np.mean(lifetime_sparsity(a))),
            "population_sparsity": float(np.mean(population_sparsity(a)))}
