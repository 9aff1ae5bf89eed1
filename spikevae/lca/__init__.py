"""The LCA sparse-coding solvers in numpy (continuous-time dynamics, fixed point, ISTA/FISTA) and dictionary learning.

The Brian2 networks (:func:`lca_brian`, :func:`spiking_lca`) live in :mod:`spikevae.brian.lca`; they are reachable
here too, imported on first use.
"""
import importlib

from .dictionary import learn_dictionary
from .solvers import (
    MIN_TOL,
    THRESHOLDS,
    LCAConfig,
    LCAResult,
    check_problem,
    duality_gap,
    energy,
    fista,
    ista,
    lca,
    lca_dense,
    lca_fixed_point,
    normalise_atoms,
    optimality,
    threshold,
)

_BRIAN = ("lca_brian", "spiking_lca", "SpikingLCAResult")

__all__ = ["LCAConfig", "LCAResult", "THRESHOLDS", "MIN_TOL", "threshold", "energy", "optimality", "duality_gap",
           "normalise_atoms", "check_problem", "lca", "lca_fixed_point", "lca_dense", "ista", "fista",
           "learn_dictionary", *_BRIAN]


def __getattr__(name: str):
    if name in _BRIAN:
        return getattr(importlib.import_module("spikevae.brian.lca"), name)
    raise AttributeError(f"module 'spikevae.lca' has no attribute {name!r}")
