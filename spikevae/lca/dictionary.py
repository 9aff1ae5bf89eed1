"""Dictionary learning for the LCA: alternate converged codes and a gradient step on the atoms."""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..errors import ArgumentError
from .solvers import LCAConfig, lca, normalise_atoms

__all__ = ["learn_dictionary"]


# ------------------------------------------------------- dictionary learning
def learn_dictionary(patches: np.ndarray, n_atoms: int = 512, cfg: LCAConfig = LCAConfig(n_steps=300, tol=0.0),
                     n_updates: int = 200, batch_size: int = 250, eta: float = 1.0,
                     rng: np.random.Generator | None = None, phi0: np.ndarray | None = None,
                     progress: bool = False) -> tuple[np.ndarray, list]:
    """Olshausen–Field learning: LCA codes per batch, then ``Φ += η (x − Φa) aᵀ / B`` and unit-norm atoms.

    Returns the dictionary (D, K) and the per-update batch-mean energy (before each update).
    """
    rng = rng or np.random.default_rng(0)
    x_all = np.asarray(patches, dtype=np.float64).reshape(len(patches), -1)
    D = x_all.shape[1]
    if n_atoms < 1:
        raise ArgumentError(f"n_atoms must be >= 1, got {n_atoms}")
    phi = normalise_atoms(rng.standard_normal((D, n_atoms)) if phi0 is None else np.array(phi0, dtype=np.float64))
    trace = []
    for _ in tqdm(range(n_updates), disable=not progress, desc="dictionary", unit="batch"):
        xb = x_all[rng.integers(0, len(x_all), batch_size)]
        res = lca(xb, phi, cfg)
        trace.append(float(res.energy[-1]))
        resid = xb - res.codes @ phi.T  # (B, D)
        phi = normalise_atoms(phi + eta * resid.T @ res.codes / batch_size)
    return phi, trace

