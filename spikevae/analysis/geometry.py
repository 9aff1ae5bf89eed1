"""Geometry of codes and bases: decoding (KNN, shattering), principal components, Gabor- and PCA-likeness.

Pure functions on arrays (numpy, scikit-learn); no model framework.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from ..errors import ArgumentError

__all__ = ["KNNResult", "knn_accuracy", "shattering_dimensionality", "principal_components", "gabor_likeness",
           "spatial_spread", "pca_alignment", "R2_GOOD"]

R2_GOOD = 0.5  # a Gabor fit this good or better counts as Gabor-like


# ------------------------------------------------------------------ decoding
class KNNResult(NamedTuple):
    """KNN accuracy per number of labelled samples: mean and s.d. over random draws."""

    n_labels: tuple
    mean: tuple
    sd: tuple
    n_draws: int


def knn_accuracy(pool_x: np.ndarray, pool_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 n_labels: Sequence[int], n_draws: int = 20, k: int = 5, seed: int = 0) -> KNNResult:
    """Accuracy of a k-nearest-neighbour classifier trained on ``N`` random labelled pool samples.

    For each ``N`` in ``n_labels``, ``n_draws`` subsets of the pool are drawn without replacement;
    Euclidean distance, uniform weights (the reference's ``knn_analysis``).
    """
    from sklearn.neighbors import KNeighborsClassifier

    pool_x, test_x = np.asarray(pool_x, np.float64), np.asarray(test_x, np.float64)
    if len(pool_x) != len(pool_y) or len(test_x) != len(test_y):
        raise ArgumentError("features and labels differ in length")
    rng = np.random.default_rng(seed)
    means, sds = [], []
    for n in n_labels:
        if not k <= n <= len(pool_x):
            raise ArgumentError(f"N = {n} labels: needs {k} <= N <= pool size {len(pool_x)}")
        acc = []
        for _ in range(n_draws):
            idx = rng.choice(len(pool_x), size=n, replace=False)
            clf = KNeighborsClassifier(n_neighbors=k).fit(pool_x[idx], pool_y[idx])
            acc.append(clf.score(test_x, test_y))
        means.append(float(np.mean(acc)))
        sds.append(float(np.std(acc, ddof=1)) if n_draws > 1 else 0.0)
    return KNNResult(tuple(int(n) for n in n_labels), tuple(means), tuple(sds), int(n_draws))


def shattering_dimensionality(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                              test_y: np.ndarray) -> tuple[float, float, int]:
    """Mean test accuracy of logistic regression over all balanced dichotomies of the classes.

    With 10 classes: the 126 distinct 5-vs-5 splits (the reference counts each of them twice, as
    a split and its complement, which give the same accuracy). Features are standardised with the
    training statistics so that lbfgs converges. Returns (mean, s.d., number of splits).
    """
    from sklearn.linear_model import LogisticRegression

    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    classes = np.unique(train_y)
    if len(classes) < 2 or len(classes) % 2:
        raise ArgumentError(f"shattering needs an even number (>= 2) of classes, got {len(classes)}")
    mu, sd = train_x.mean(0), train_x.std(0)
    sd[sd == 0] = 1.0
    a, b = (train_x - mu) / sd, (test_x - mu) / sd
    half = len(classes) // 2
    acc = []
    for pos in itertools.combinations(classes[1:], half - 1):  # the first class is always on side 1
        side = np.isin(classes, (classes[0],) + pos)
        ytr, yte = side[np.searchsorted(classes, train_y)], side[np.searchsorted(classes, test_y)]
        clf = LogisticRegression(max_iter=2000).fit(a, ytr)
        acc.append(clf.score(b, yte))
    return float(np.mean(acc)), float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0, len(acc)


def principal_components(x: np.ndarray, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Principal components (n, P, P) of input images (N, P, P) and their variances, largest first."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    n = vt.shape[0] if n is None else min(n, vt.shape[0])
    side = int(round(math.sqrt(vt.shape[1])))
    return vt[:n].reshape(n, side, side), s[:n] ** 2 / (len(x) - 1)


def gabor_likeness(atoms: np.ndarray, r2_min: float = R2_GOOD, progress: bool = False) -> tuple[float, np.ndarray]:
    """Fraction of atoms whose 2-D Gabor fit reaches ``R² >= r2_min``, and every R²."""
    from .receptive_fields import fit_gabor

    r2 = np.array([fit_gabor(a).r2 for a in tqdm(atoms, disable=not progress, desc="gabor fits", unit="atom",
                                                 leave=False)])
    return float(np.mean(r2 >= r2_min)) if len(r2) else float("nan"), r2


def spatial_spread(images: np.ndarray) -> np.ndarray:
    """Participation ratio of each image's pixel energy, ``(Σe)² / (D Σe²)`` with ``e = a²``: 1/D for a
    single pixel, 1 for uniform energy; global patterns (principal components, plane waves) score
    high, localized Gabor-like atoms low."""
    e = np.square(np.asarray(images, np.float64).reshape(len(images), -1))
    s2 = np.square(e).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s2 > 0, e.sum(1) ** 2 / (e.shape[1] * s2), np.nan)


def pca_alignment(atoms: np.ndarray, components: np.ndarray) -> float:
    """Mean over atoms of max_j |cos(atom, PC_j)|: 1 for atoms that are principal components, about
    ``sqrt(2 ln D / D)`` for random directions in D dimensions."""
    if len(atoms) == 0:
        return float("nan")
    a = np.asarray(atoms, np.float64).reshape(len(atoms), -1)
    c = np.asarray(components, np.float64).reshape(len(components), -1)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-300)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    return float(np.abs(a @ c.T).max(1).mean())
