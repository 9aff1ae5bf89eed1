"""The producer interface: every model's spikes come through it.

A producer turns stimuli (model-input patches, ``(n, P, P)`` or ``(n, P·P)``) into spikes on its time base
(:class:`TimeBase`): :meth:`Producer.produce` returns a :class:`Produced` record, the :class:`SpikeTrains` of
``n × repeats`` presentations in repeat-major order (all stimuli, then again), presentation ``p`` shown during
``[p·(window + gap), p·(window + gap) + window)``, and the code those spikes encode. The response of a unit to
a presentation is its spike count in that window, :meth:`SpikeTrains.counts` (the one counting rule), and
:meth:`Producer.decode` maps such counts back to an input, so every producer is read out the same way.

Producers:

- :class:`PoissonProducer`: the P-VAE's posterior rates λ (expected counts per window) drive the Brian2 Poisson
  layer (:func:`spikevae.spikes.simulate_poisson`); its spike options are the layer's.
- :class:`LCAProducer`: the LCA's converged code (:func:`spikevae.lca.lca_fixed_point`), rectified into ON and
  OFF channels for signed codes and scaled by ``gain`` expected spikes per unit of code, drives the same layer.
- :class:`IPVAEProducer`: the iP-VAE's inference as a Brian2 circuit (:func:`spikevae.brian.ipvae.ipvae_brian`);
  one presentation is its ``n_iter + 1`` iteration periods.
- :class:`SpikingLCAProducer`: integrate-and-fire LCA neurons (:func:`spikevae.brian.lca.spiking_lca`); one
  presentation is one run of ``window`` seconds.

Adding a model means writing one producer: ``name``, ``n_units``, ``preprocessing``, ``time_base``,
``produce`` and ``decode``; every workflow (``simulate``, receptive-field mapping, the comparisons) and the
run-folder writer take it as it is.
"""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import ArgumentError
from ..records import SpikeTrains
from .config import PoissonLayerConfig

__all__ = ["N_ITER", "LCA_GAIN", "TimeBase", "Produced", "Producer", "RateProducer", "PoissonProducer", "LCAProducer",
           "IPVAEProducer", "SpikingLCAProducer", "repeat_major"]


#: default inference iterations per presentation of the iP-VAE circuit
N_ITER = 64
#: default expected spikes per window per unit of LCA code
LCA_GAIN = 1.0


@dataclass(frozen=True)
class TimeBase:
    """Where a producer's presentations lie in time."""

    window: float  # presentation window, s: a unit's response is its spike count in it
    gap: float = 0.0  # blank between presentations, s
    dt: float = 1e-4  # simulation step, s (the spike-time resolution)

    @property
    def period(self) -> float:
        """Onset to onset, s."""
        return self.window + self.gap


class Produced(NamedTuple):
    """What a producer returns."""

    spikes: SpikeTrains  # n_stimuli × repeats presentations, repeat-major; counts: SpikeTrains.counts()
    code: np.ndarray  # (n_stimuli, n_units) the code the spikes encode, expected spikes per window


def repeat_major(n: int, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Stimulus index and repeat number of each presentation, (n·repeats,) each: all stimuli, then again."""
    return np.tile(np.arange(n), repeats), np.repeat(np.arange(repeats), n)


def _flat(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (2, 3) or not len(x):
        raise ArgumentError(f"stimuli must be a non-empty (n, P, P) or (n, P*P) array, got shape {x.shape}")
    return x.reshape(len(x), -1)


def _unit_atoms(phi) -> np.ndarray:
    """Φ with unit-norm columns (as given when they already are, so a dictionary normalised once is used bit for
    bit)."""
    from ..lca import normalise_atoms

    phi = np.asarray(phi, dtype=np.float64)
    norms = np.linalg.norm(phi, axis=0) if phi.ndim == 2 else None
    if norms is not None and np.all(np.abs(norms - 1) <= 1e-12):
        return phi
    return normalise_atoms(phi)


def _check_repeats(repeats: int) -> int:
    if not (isinstance(repeats, (int, np.integer)) and repeats >= 1):
        raise ArgumentError(f"repeats must be an integer >= 1, got {repeats!r}")
    return int(repeats)


class Producer(abc.ABC):
    """A model whose response to a stimulus is spikes (see the module's description)."""

    name: str  # what the model is, as files record it (pvae, lca, ipvae-circuit, spiking-lca)
    n_units: int  # spiking units (an LCA with signed codes has an ON and an OFF unit per atom)
    preprocessing: object  # spikevae.data.Preprocessing: how a raw image becomes this producer's input

    @property
    @abc.abstractmethod
    def time_base(self) -> TimeBase:
        """Window, gap and step of the presentations."""

    @abc.abstractmethod
    def produce(self, x: np.ndarray, repeats: int = 1, seed: int = 0, progress: bool = False,
                meta: dict | None = None) -> Produced:
        """Spikes of ``n × repeats`` presentations of the stimuli ``x`` and the code they encode."""

    @abc.abstractmethod
    def decode(self, counts: np.ndarray) -> np.ndarray:
        """Inputs (n, P·P) reconstructed from spike counts per window (n, n_units)."""

    def describe(self) -> dict:
        """Provenance of the producer (plain values, for a file's metadata)."""
        return {"model": self.name, "n_units": self.n_units, "time_base": dataclasses.asdict(self.time_base)}


class RateProducer(Producer):
    """A producer whose code is a table of expected counts per window driving the Brian2 Poisson layer: the spikes
    come from :func:`spikevae.spikes.simulate_poisson` (or, streamed chunk by chunk, :class:`PoissonRun`)."""

    def __init__(self, layer: PoissonLayerConfig = PoissonLayerConfig(), workers: int = 1,
                 scheduler: str | None = None, auto_dt: bool = False):
        self.layer, self.workers, self.scheduler = layer.validate(), workers, scheduler
        # auto_dt: each produce() runs at the largest step <= layer.dt that keeps every rate·dt <= p_warn (a plain layer)
        if auto_dt and not layer.spikes.is_plain:
            raise ArgumentError("a step chosen from the rates needs the plain Poisson layer (no spike options)")
        self.auto_dt = auto_dt

    @abc.abstractmethod
    def rates(self, x: np.ndarray) -> np.ndarray:
        """λ (n, n_units): the expected spike count of each unit in one window."""

    @property
    def time_base(self) -> TimeBase:
        return TimeBase(self.layer.window, self.layer.gap, self.layer.dt)

    def layer_for(self, lam: np.ndarray) -> PoissonLayerConfig:
        """The layer a run of the rates ``lam`` uses: ``layer``, at the step :func:`~spikevae.spikes.config.fitting_dt`
        picks from their peak rate when the producer chooses its own step (``auto_dt``)."""
        if not (self.auto_dt and len(lam)):
            return self.layer
        from .config import fitting_dt, rates_hz

        peak = float(rates_hz(np.asarray(lam), self.layer.window).max())
        return dataclasses.replace(self.layer, dt=fitting_dt(peak, self.layer)).validate()

    def produce(self, x, repeats=1, seed=0, progress=False, meta=None) -> Produced:
        from .runner import simulate_poisson

        repeats = _check_repeats(repeats)
        lam = self.rates(x)
        stim, rep = repeat_major(len(lam), repeats)
        st = simulate_poisson(lam, self.layer_for(lam), seed, progress=progress, index=stim, stimulus=stim, repeat=rep,
                              meta={**self.describe(), **(meta or {})}, workers=self.workers, scheduler=self.scheduler)
        return Produced(st, lam)


class PoissonProducer(RateProducer):
    """The P-VAE's Poisson latents as Brian2 Poisson neurons: λ = ``model.rates(x)``.

    ``model``: a :class:`~spikevae.models.trained.TrainedModel` of the Poisson family."""

    def __init__(self, model, layer: PoissonLayerConfig = PoissonLayerConfig(), workers: int = 1,
                 scheduler: str | None = None, auto_dt: bool = False):
        model._need_poisson("spike trains")
        super().__init__(layer, workers, scheduler, auto_dt)
        self.model, self.name = model, "pvae"
        self.n_units, self.preprocessing = model.config.n_latents, model.preprocessing

    def rates(self, x):
        return self.model.rates(x)

    def decode(self, counts):
        """Counts on the λ scale (a layer with spike options: (count − spontaneous) / (Hz per λ · window) first, as
        :mod:`spikevae.workflows.simulate` does)."""
        z = np.asarray(counts, dtype=np.float64)
        return self.model.decode(z).reshape(len(z), -1)

    def describe(self):
        m = self.model
        from ..workflows.run_folder import checkpoint_record

        return {**super().describe(), "checkpoint": checkpoint_record(m), "model_config": m.checkpoint["model_config"],
                "train_config": m.checkpoint["train_config"], "preprocessing": m.checkpoint["preprocessing"],
                "prior_rates": m.prior_rates.tolist()}


class LCAProducer(RateProducer):
    """The LCA's converged code as Brian2 Poisson neurons: λ = ``gain`` × the code's rectified channels.

    ``phi`` (P·P, K) is normalised here; with a signed threshold (``soft``) unit k is atom k's ON half
    (a > 0) and unit K + k its OFF half (a < 0), as a recording would see them; ``nonneg`` codes have one
    unit per atom. ``gain``: expected spikes per window per unit of code."""

    def __init__(self, phi: np.ndarray, preprocessing, cfg=None, gain: float = LCA_GAIN,
                 layer: PoissonLayerConfig = PoissonLayerConfig(), workers: int = 1, scheduler: str | None = None,
                 source: dict | None = None):
        from ..lca import LCAConfig

        cfg = (cfg or LCAConfig(threshold="nonneg")).validate()
        if cfg.threshold == "hard":
            raise ArgumentError("the LCA producer takes the soft (ON/OFF) or nonneg threshold")
        if not (np.isfinite(gain) and gain > 0):
            raise ArgumentError(f"gain must be > 0 expected spikes per unit of code, got {gain!r}")
        super().__init__(layer, workers, scheduler)
        self.phi, self.cfg, self.gain = _unit_atoms(phi), cfg, float(gain)
        self.preprocessing, self.name, self.source = preprocessing, "lca", source
        K = self.phi.shape[1]
        self.n_units = 2 * K if cfg.threshold == "soft" else K

    def codes(self, x: np.ndarray) -> np.ndarray:
        """The converged LCA codes a (n, K) of the stimuli."""
        from ..lca import lca_fixed_point

        return lca_fixed_point(_flat(x), self.phi, self.cfg).codes

    def rates(self, x):
        a = self.codes(x)
        if self.cfg.threshold == "soft":
            a = np.concatenate([np.clip(a, 0, None), np.clip(-a, 0, None)], axis=1)
        return self.gain * a

    def decode(self, counts):
        a = np.asarray(counts, dtype=np.float64) / self.gain
        K = self.phi.shape[1]
        if self.cfg.threshold == "soft":
            a = a[:, :K] - a[:, K:]
        return a @ self.phi.T

    def describe(self):
        return {**super().describe(), "lca_config": dataclasses.asdict(self.cfg), "gain": self.gain,
                **({"dictionary": self.source} if self.source else {})}


class IPVAEProducer(Producer):
    """The iP-VAE's inference as a Brian2 spiking circuit: one presentation is ``n_iter + 1`` iteration periods
    (period 0 at the prior rates, then one per iteration), so the window is ``(n_iter + 1) × period``.

    ``model``: an :class:`~spikevae.models.ipvae.IPVAE` (or its
    :class:`~spikevae.brian.ipvae.CircuitParameters` and ``preprocessing``)."""

    def __init__(self, model, n_iter: int = N_ITER, circuit=None, preprocessing=None):
        from ..brian.ipvae import CircuitParameters, IPVAECircuitConfig

        if not (isinstance(n_iter, (int, np.integer)) and n_iter >= 1):
            raise ArgumentError(f"the number of iterations must be an integer >= 1, got {n_iter!r}")
        self.circuit = (circuit or IPVAECircuitConfig()).validate()
        self.params = model if isinstance(model, CircuitParameters) else model.circuit_parameters()
        self.model, self.n_iter, self.name = model, int(n_iter), "ipvae-circuit"
        self.n_units = self.params.phi.shape[1]
        self.preprocessing = preprocessing if preprocessing is not None else getattr(model, "preprocessing", None)

    @property
    def time_base(self):
        return TimeBase((self.n_iter + 1) * self.circuit.period, 0.0, self.circuit.dt)

    def produce(self, x, repeats=1, seed=0, progress=False, meta=None) -> Produced:
        from ..brian.ipvae import ipvae_brian

        repeats = _check_repeats(repeats)
        xf = _flat(x)
        stim, rep = repeat_major(len(xf), repeats)
        res = ipvae_brian(self.params, xf[stim], self.n_iter, self.circuit, seed=seed,
                          meta={**self.describe(), **(meta or {})})
        st = res.spikes
        p = st.presentations
        pres = type(p)(stim, rep, p.onset, p.offset, p.expected)
        st = dataclasses.replace(st, presentations=pres, meta={**st.meta, "clipped_spikes": res.clipped_spikes})
        code = st.counts().reshape(repeats, len(xf), -1).mean(0)
        return Produced(st, code)

    def decode(self, counts):
        """The read-out of the circuit's mean spike count per iteration period: (counts / (n_iter + 1)) Φᵀ."""
        return np.asarray(counts, dtype=np.float64) / (self.n_iter + 1) @ self.params.phi.T

    def describe(self):
        return {**super().describe(), "n_iter": self.n_iter, "circuit": dataclasses.asdict(self.circuit)}


class SpikingLCAProducer(Producer):
    """Integrate-and-fire LCA neurons with spike-carried inhibition: one presentation is one run of ``window`` s.

    Signed codes (``soft``) run as ON/OFF pairs (2K units, ON first); ``nonneg`` as K units. The code a unit encodes
    is τ × its rate, so a count c in the window decodes as a = τ·c/window."""

    def __init__(self, phi: np.ndarray, preprocessing, cfg=None, window: float = 0.5, tau_syn: float = 0.005,
                 target: str = "numpy"):
        from ..lca import LCAConfig

        cfg = (cfg or LCAConfig(threshold="nonneg")).validate()
        if cfg.threshold == "hard":
            raise ArgumentError("the spiking LCA implements the soft (ON/OFF pairs) and nonneg thresholds")
        if not (np.isfinite(window) and cfg.tau <= window <= 100.0):
            raise ArgumentError(f"window must be at least the LCA's time constant ({cfg.tau:g} s) and at most 100 s, "
                                f"got {window!r}")
        self.phi, self.cfg, self.window = _unit_atoms(phi), cfg, float(window)
        self.tau_syn, self.target, self.preprocessing, self.name = tau_syn, target, preprocessing, "spiking-lca"
        K = self.phi.shape[1]
        self.n_units = 2 * K if cfg.threshold == "soft" else K

    @property
    def time_base(self):
        return TimeBase(self.window, 0.0, self.cfg.dt)

    def produce(self, x, repeats=1, seed=0, progress=False, meta=None) -> Produced:
        from ..brian.lca import spiking_lca

        repeats = _check_repeats(repeats)
        xf = _flat(x)
        stim, rep = repeat_major(len(xf), repeats)
        res = spiking_lca(xf[stim], self.phi, self.cfg, duration=self.window, tau_syn=self.tau_syn, seed=seed,
                          target=self.target, meta={**self.describe(), **(meta or {})})
        st = res.spikes
        p = st.presentations
        st = dataclasses.replace(st, presentations=type(p)(stim, rep, p.onset, p.offset, p.expected))
        return Produced(st, st.counts().reshape(repeats, len(xf), -1).mean(0))

    def codes(self, counts: np.ndarray) -> np.ndarray:
        """The LCA code (n, K) that spike counts per window encode: a = τ·count/window (ON minus OFF when signed)."""
        a = np.asarray(counts, dtype=np.float64) * self.cfg.tau / self.window
        K = self.phi.shape[1]
        return a[:, :K] - a[:, K:] if self.cfg.threshold == "soft" else a

    def decode(self, counts):
        return self.codes(counts) @ self.phi.T

    def describe(self):
        return {**super().describe(), "lca_config": dataclasses.asdict(self.cfg), "tau_syn": self.tau_syn}
