"""spikevae: a Poisson VAE whose posterior rates drive real Brian2 spike trains, LCA sparse coding, NWB/Neo export.

The notebook path, in one import::

    import spikevae
    model = spikevae.load_model()                          # the shipped P-VAE (or a checkpoint path)
    x = model.preprocess(image)                            # raw 2-D image(s) or a folder → (n, 16, 16) patches
    lam = model.rates(x)                                   # (n, K) expected spike counts per window
    st = spikevae.simulate_spikes(lam, window=0.1)         # Brian2 Poisson neurons → SpikeTrains
    st.counts(), st.to_neo()                               # counts per window; a Neo Block
    spikevae.io.write_nwb("run.nwb", st)                   # NWB (and read_nwb, write_neo, read_neo)

Public names (imported on first use, so ``import spikevae`` is light):

- models: :func:`load_model` → :class:`TrainedModel` (``preprocess``, ``rates``, ``decode``, ``dictionary``);
  training: :func:`fit`, :class:`TrainConfig`, :class:`VAEConfig`, :func:`make_configs`;
  evaluation: :func:`evaluate_checkpoint`;
- spikes: :func:`simulate_spikes`, :class:`PoissonLayerConfig`, :class:`SpikeTrains`,
  :class:`Presentations`; the whole pipeline: :func:`run_simulation`, :func:`write_simulation`;
- sparse coding: :mod:`lca` (the solver is ``spikevae.lca.lca``), :class:`LCAConfig`, :func:`lca_brian`, :func:`spiking_lca`,
  :func:`learn_dictionary`, :func:`fista`, :func:`normalise_atoms`;
- iterative Poisson VAE: :class:`IPVAE` (:mod:`spikevae.models.ipvae`: ``fit``, ``evaluate``, ``load``), its Brian2
  spiking circuit :func:`ipvae_brian` (:mod:`spikevae.brian.ipvae`);
- receptive fields: :func:`map_receptive_fields` (P-VAE, iP-VAE or LCA units), the V1 property battery
  :func:`v1_properties` / :func:`v1_summary`, and :mod:`spikevae.analysis` (STA, gratings, Gabor fits, the V1
  property definitions ``analysis.v1`` and published V1 data ``analysis.v1_reference``, spike statistics,
  metabolic cost, sparsity, decoding geometry);
- files: :mod:`spikevae.io`; figures: :mod:`spikevae.plots`; data: :mod:`spikevae.data`;
- the installed version: ``spikevae.__version__``; records print as one short line (counts, shapes, time span);
- errors: :class:`SpikeVAEError` and its subclasses :class:`ArgumentError`, :class:`DataError`,
  :class:`CheckpointError`, :class:`RunInterrupted`.
"""
from __future__ import annotations

import importlib

from .errors import ArgumentError, CheckpointError, DataError, RunInterrupted, SpikeVAEError
from .records import Presentations, SpikeTrains


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spikevae")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


__version__ = _version()

_LAZY = {
    "load_model": "models.trained", "TrainedModel": "models.trained",
    "fit": "models.training", "TrainConfig": "models.config", "TrainResult": "models.training",
    "make_configs": "models.config",
    "VAE": "models.vae", "VAEConfig": "models.vae",
    "IPVAE": "models.ipvae", "IPVAEConfig": "models.ipvae", "IPVAETrainConfig": "models.ipvae",
    "evaluate_checkpoint": "workflows.evaluation", "ModelEvaluation": "workflows.evaluation",
    "simulate_spikes": "spikes", "simulate_poisson": "spikes", "PoissonLayerConfig": "spikes",
    "SpikeModel": "spikes",
    "run_simulation": "workflows.simulate", "write_simulation": "workflows.simulate",
    "SimulationResult": "workflows.simulate", "simulate_to_folder": "workflows.simulate",
    "LCAConfig": "lca", "LCAResult": "lca", "learn_dictionary": "lca", "ista": "lca", "fista": "lca",
    "normalise_atoms": "lca",
    "lca_brian": "brian.lca", "spiking_lca": "brian.lca", "SpikingLCAResult": "brian.lca",
    "ipvae_brian": "brian.ipvae", "IPVAECircuitConfig": "brian.ipvae",
    "map_receptive_fields": "workflows.rf_mapping", "RFMapping": "workflows.rf_mapping",
    "v1_properties": "analysis.battery", "v1_summary": "analysis.battery", "RFConfig": "workflows.rf_mapping",
    "map_producer": "workflows.rf_mapping",
}
_SUBMODULES = ("io", "lca", "models", "spikes", "brian", "workflows", "cli", "analysis", "data", "plots", "stimuli",
               "errors", "records")

__all__ = ["__version__", "SpikeVAEError", "ArgumentError", "DataError", "CheckpointError", "RunInterrupted", "SpikeTrains",
           "Presentations", *_LAZY, *_SUBMODULES]


def __getattr__(name: str):
    if name in _LAZY:
        mod = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(mod, name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'spikevae' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
