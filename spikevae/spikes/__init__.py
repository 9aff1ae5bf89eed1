"""The spike layer: its time base and spike options, the chunk plan and runner of the Brian2 Poisson layer, and the
producer interface every model's spikes come through (:mod:`.producers`).

A rate enters as λ, the expected spike count per presentation window; Hz is ``λ / window``
(:func:`rates_hz`, the one place this is computed).
"""
from .config import TARGETS, PoissonLayerConfig, rate_dt_report, rates_hz
from .plan import default_workers
from .runner import PoissonRun, poisson_spikes_numpy, simulate_poisson, simulate_spikes
from .spike_model import PRESETS, SpikeModel

__all__ = ["PoissonLayerConfig", "TARGETS", "rates_hz", "rate_dt_report", "simulate_poisson", "PoissonRun",
           "simulate_spikes", "poisson_spikes_numpy", "default_workers", "SpikeModel", "PRESETS"]
