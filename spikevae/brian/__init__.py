"""The Brian2 engine: the only package that imports Brian2.

Build cache and code-generation templates, compiled kernels, counter-based random streams, the state guard
(:func:`runtime_build`, :func:`brian_state`), and the networks: the Poisson layer (:mod:`.poisson`), the LCA in
continuous time and as spiking neurons (:mod:`.lca`) and the iP-VAE circuit (:mod:`.ipvae`). Every network takes
numpy arrays, never a torch module. ``import spikevae.brian`` does not import Brian2; building a network does.
"""
from ._state import (
           TEMPLATE_DIR,
           before_fork,
           brian_state,
           quiet_brian,
           reset_brian,
           run_checked,
           runtime_build,
           two_pass_thresholder,
)

__all__ = ["brian_state", "runtime_build", "run_checked", "quiet_brian", "reset_brian", "before_fork", "two_pass_thresholder",
           "TEMPLATE_DIR"]
