"""Sparsity of codes: Treves–Rolls lifetime (per unit, over samples) and population (per sample, over units)."""
from __future__ import annotations

import numpy as np

__all__ = ["treves_rolls", "lifetime_sparsity", "population_sparsity"]


def treves_rolls(z: np.ndarray, axis: int = 0) -> np.ndarray:
    """Treves–Rolls sparsity of non-negative responses along ``axis``; an all-zero slice scores 1.

    ``S = (1 - (Σz)² / (m Σz²)) / (1 - 1/m)`` over the ``m`` entries along ``axis`` (the reference's
    ``sparse_score``): 0 when all entries are equal, 1 when one entry carries everything.
    """
    z = np.asarray(z, dtype=np.float64)
    m = z.shape[axis]
    s1, s2 = z.sum(axis), np.square(z).sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (1.0 - s1**2 / (m * s2)) / (1.0 - 1.0 / m)
    return np.where(s2 > 0, s, 1.0)


def lifetime_sparsity(z: np.ndarray) -> np.ndarray:
    """Per-unit Treves–Rolls sparsity over samples (axis 0) of a (samples, units) array."""
    return treves_rolls(z, axis=0)


def population_sparsity(z: np.ndarray) -> np.ndarray:
    """Per-sample Treves–Rolls sparsity across units (axis 1) of a (samples, units) array."""
    return treves_rolls(z, axis=1)
