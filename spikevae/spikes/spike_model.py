"""How expected counts λ become a firing-rate schedule: time base, spontaneous rate, response dynamics,
refractoriness and variability (the description; :mod:`spikevae.spikes` builds and runs it in Brian2).

Every part is off by default, and the defaults give exactly the plain Poisson layer (rate λ / window
during the window, nothing in the gaps). The parts, with their biological sources
(``docs/spike_generation.md`` gives the values from the literature):

- **time base**: ``rate_scale`` ``'window'`` (Hz = λ / window, the default), ``'gain'`` (Hz =
  ``gain_hz`` · λ) or ``'target'`` (λ scaled so that the mean evoked rate over the run's presentations
  and units is ``target_rate_hz``); plus a ``spontaneous_hz`` baseline during windows and gaps;
- **response dynamics**: a ``latency`` (s) and an onset transient: the rate starts at
  ``transient_ratio`` times the sustained level and decays to it with ``transient_tau``; the kernel
  is normalised so that its mean over the window is 1, so the expected count is unchanged, and it is
  written into the rate table in bins of ``kernel_dt``;
- **refractoriness**: an absolute ``refractory`` period (s; the minimum inter-spike interval); with
  ``correct_refractory`` the chance of a spike at a step is raised to ν·dt / (1 − D), D the count asked
  for over the τ_ref − dt before it, so that the unit fires at the rate asked for at every step, from
  rest as in steady firing (where ν is steady, the dead-time drive ν / (1 − ν (τ_ref − dt)));
  impossible, and reported, where ν (τ_ref − dt) ≥ 0.99;
- **variability**: ``gamma_order`` k > 1 gives gamma-renewal spikes (every k-th event of a Bernoulli
  process of chance k·ν·dt per step, from a uniform phase: sub-Poisson, count Fano factor → 1/k);
  ``gain_cv`` > 0 multiplies all units' rates in
  a presentation by one shared gain G ~ Gamma with mean 1 and s.d. ``gain_cv`` (a doubly stochastic,
  super-Poisson process: Fano = 1 + λ·var(G); Goris, Movshon & Simoncelli 2014).

Expected counts per window (what :attr:`DriveSchedule.expected` records and the tests check) are
``(hz_per_λ · λ · G + spontaneous_hz) · window``; responses are counted in the window shifted by the
latency (``SpikeTrains.counts(delay=latency)``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ArgumentError

__all__ = ["SpikeModel", "PRESETS", "DriveSchedule", "drive_schedule", "transient_kernel", "refractory_drive"]

RATE_SCALES = ("window", "gain", "target")


@dataclass(frozen=True)
class SpikeModel:
    """Spike-generation settings (all off by default: the plain Poisson layer)."""

    rate_scale: str = "window"  # window (Hz = λ / window) | gain (Hz = gain_hz · λ) | target (mean rate = target_rate_hz)
    gain_hz: float = 0.0  # Hz per unit λ, rate_scale='gain'
    target_rate_hz: float = 0.0  # mean evoked rate over presentations and units, Hz, rate_scale='target'
    spontaneous_hz: float = 0.0  # baseline rate added in windows and gaps, Hz
    latency: float = 0.0  # response onset after the stimulus onset, s
    transient_ratio: float = 1.0  # rate at response onset / sustained rate (1: a flat response)
    transient_tau: float = 0.020  # decay time constant of the onset transient, s
    kernel_dt: float = 0.005  # bin width of the response kernel in the rate table, s
    refractory: float = 0.0  # absolute refractory period (minimum inter-spike interval), s; 0: off
    correct_refractory: bool = True  # raise the drive so the expected count is kept (dead-time correction)
    gamma_order: int = 1  # gamma-renewal order k (1: Poisson; k > 1: more regular, Fano → 1/k)
    gain_cv: float = 0.0  # s.d. of a gain shared by all units in a presentation (mean 1); 0: off

    def validate(self) -> SpikeModel:
        """Raise :class:`~spikevae.errors.ArgumentError` naming the bad field; return self."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ArgumentError(f"spike model: {f.name} must be finite, got {v!r}")
        if self.rate_scale not in RATE_SCALES:
            raise ArgumentError(f"rate_scale must be one of {', '.join(RATE_SCALES)}, got {self.rate_scale!r}")
        if self.rate_scale == "gain" and not self.gain_hz > 0:
            raise ArgumentError(f"rate_scale 'gain' needs gain_hz > 0, got {self.gain_hz!r}")
        if self.rate_scale == "target" and not self.target_rate_hz > 0:
            raise ArgumentError(f"rate_scale 'target' needs target_rate_hz > 0, got {self.target_rate_hz!r}")
        checks = [
            (0 <= self.spontaneous_hz <= 1e4, f"spontaneous_hz must be in [0, 1e4], got {self.spontaneous_hz!r}"),
            (0 <= self.latency <= 10.0, f"latency must be in [0, 10] s, got {self.latency!r}"),
            (self.transient_ratio > 0, f"transient_ratio must be > 0, got {self.transient_ratio!r}"),
            (self.transient_tau > 0, f"transient_tau must be > 0 s, got {self.transient_tau!r}"),
            (self.kernel_dt > 0, f"kernel_dt must be > 0 s, got {self.kernel_dt!r}"),
            (0 <= self.refractory <= 0.1, f"refractory must be in [0, 0.1] s, got {self.refractory!r}"),
            (isinstance(self.gamma_order, int) and 1 <= self.gamma_order <= 32,
             f"gamma_order must be an integer in [1, 32], got {self.gamma_order!r}"),
            (self.gain_cv == 0 or 1e-3 <= self.gain_cv <= 10,
             f"gain_cv must be 0 (off) or in [0.001, 10], got {self.gain_cv!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ArgumentError(msg)
        return self

    def describe(self) -> str:
        """The settings that differ from the plain layer, in the command line's units (``'plain Poisson'`` if none)."""
        plain = SpikeModel()
        parts = {
            "rate_scale": lambda: {"gain": f"{self.gain_hz:g} Hz per unit λ",
                                   "target": f"mean evoked rate {self.target_rate_hz:g} Hz"}.get(self.rate_scale, ""),
            "spontaneous_hz": lambda: f"spontaneous {self.spontaneous_hz:g} Hz",
            "latency": lambda: f"latency {self.latency * 1e3:g} ms",
            "transient_ratio": lambda: f"onset transient {self.transient_ratio:g}x decaying with {self.transient_tau * 1e3:g} ms",
            "refractory": lambda: f"refractory {self.refractory * 1e3:g} ms",
            "correct_refractory": lambda: "no refractory correction",
            "gamma_order": lambda: f"gamma order {self.gamma_order}",
            "gain_cv": lambda: f"shared gain s.d. {self.gain_cv:g}",
        }
        text = [f() for name, f in parts.items() if getattr(self, name) != getattr(plain, name)]
        return ", ".join(t for t in text if t) or "plain Poisson"

    @property
    def has_transient(self) -> bool:
        """Whether the response has an onset transient (a kernel that is not flat)."""
        return self.transient_ratio != 1.0

    @property
    def is_plain(self) -> bool:
        """The defaults: the plain Poisson layer."""
        return self == SpikeModel()


#: named settings. ``cortex``: a V1-like layer for the shipped model (docs/spike_generation.md gives the
#: sources): 5 Hz mean evoked rate, 2 Hz spontaneous, 2 ms absolute refractory period, 50 ms latency,
#: an onset transient 3x the sustained rate decaying with 30 ms, and a shared gain of s.d. 0.3.
PRESETS = {
    "poisson": SpikeModel(),
    "cortex": SpikeModel(rate_scale="target", target_rate_hz=5.0, spontaneous_hz=2.0, latency=0.050,
                         transient_ratio=3.0, transient_tau=0.030, refractory=0.002, gain_cv=0.3),
}


def transient_kernel(window: float, model: SpikeModel) -> np.ndarray:
    """Mean of the response kernel h in each ``kernel_dt`` bin of the window (mean over the window = 1).

    ``h(t) ∝ 1 + (ratio − 1) exp(−t / τ)``, integrated exactly over each bin, so the kernel's integral —
    the expected count — is preserved. A flat response is one bin of 1.
    """
    if not model.has_transient:
        return np.ones(1)
    n = int(round(window / model.kernel_dt))
    edges = np.arange(n + 1) * model.kernel_dt
    tau, a = model.transient_tau, model.transient_ratio - 1.0
    integral = np.diff(edges + a * tau * (1.0 - np.exp(-edges / tau)))  # ∫ 1 + a e^(−t/τ) over each bin
    h = integral / model.kernel_dt
    return h / h.mean()


def refractory_drive(hz: np.ndarray, refractory: float, dt: float) -> tuple[np.ndarray, int]:
    """Dead-time correction: the drive ν / (1 − ν (τ_ref − dt)) whose refractory spike rate is ν.

    With the Bernoulli step the shortest interval is one step, so the extra dead time is τ_ref − dt.
    Where the rate cannot be reached (ν (τ_ref − dt) ≥ 0.99) the drive is 1 / dt: a spike at the first
    step the refractory period allows, the highest rate there is. Returns the drive and the number of
    such entries.
    """
    dead = max(refractory - dt, 0.0)
    x = np.asarray(hz, dtype=np.float64) * dead
    bad = x >= 0.99
    out = np.where(bad, 1.0 / dt, hz / (1.0 - np.minimum(x, 0.99)))
    return out, int(bad.sum())


@dataclass(frozen=True)
class DriveSchedule:
    """The rate schedule of a run, presentation by presentation (see :func:`drive_schedule`).

    Held per stimulus (``lam``, (m, K)) with each presentation's row ``index`` and gain, so a long run
    never holds an (n_presentations, K) array: :meth:`evoked_hz` and :meth:`expected` give any rows.
    """

    lam: np.ndarray  # (m, K) expected counts λ per stimulus
    index: np.ndarray  # (n,) row of lam shown at each presentation
    kernel: np.ndarray  # (n_bins,) response kernel per bin of the window, mean 1
    bin_steps: int  # time steps per kernel bin
    latency_steps: int  # time steps from stimulus onset to response onset
    hz_per_lambda: float  # the time base: Hz per unit λ
    gains: np.ndarray  # (n,) shared gain per presentation (ones when off)
    notes: list  # what the schedule had to say (unreachable rates under refractoriness)
    window: float
    model: SpikeModel

    def __len__(self) -> int:
        return len(self.index)

    @property
    def n_units(self) -> int:
        return self.lam.shape[1]

    def evoked_hz(self, rows=slice(None)) -> np.ndarray:
        """Sustained-equivalent evoked rate of the presentations ``rows``, Hz (gain included), (len, K)."""
        lam = self.lam[self.index[rows]]
        evoked = lam / self.window if self.model.rate_scale == "window" else self.hz_per_lambda * lam  # today's law
        return evoked * self.gains[rows, None] if self.model.gain_cv > 0 else evoked

    def expected(self, rows=slice(None)) -> np.ndarray:
        """Expected spike count of the presentations ``rows`` in their (latency-shifted) windows, (len, K)."""
        m = self.model
        if m.rate_scale == "window":  # λ itself (bit for bit) when nothing else is on
            lam = self.lam[self.index[rows]]
            base = lam * self.gains[rows, None] if m.gain_cv > 0 else lam
            return base + m.spontaneous_hz * self.window if m.spontaneous_hz else base
        return (self.evoked_hz(rows) + m.spontaneous_hz) * self.window

    def blocks(self, size: int = 4096):
        """``(start, stop)`` of consecutive blocks of presentations (bounded memory for passes over the run)."""
        return ((a, min(a + size, len(self))) for a in range(0, len(self), size))


def drive_schedule(expected: np.ndarray, window: float, dt: float, model: SpikeModel,
                   rng: np.random.Generator | None = None, index: np.ndarray | None = None) -> DriveSchedule:
    """Expected counts λ → the evoked rates, expected counts and response kernel of a run.

    ``expected``: λ per presentation (n, K), or per stimulus (m, K) with ``index`` (n,) giving the row
    shown at each presentation. ``rng`` draws the shared gains (needed only when ``model.gain_cv > 0``).
    """
    model.validate()
    lam = np.asarray(expected, dtype=np.float64)
    index = np.arange(len(lam)) if index is None else np.asarray(index, dtype=np.int64)
    if model.rate_scale == "window":
        f = 1.0 / window
    elif model.rate_scale == "gain":
        f = model.gain_hz
    else:
        m = float((np.bincount(index, minlength=len(lam)) @ lam).sum() / (len(index) * lam.shape[1]))
        if not m > 0:
            raise ArgumentError("rate_scale 'target' needs some expected counts > 0 (their mean is 0)")
        f = model.target_rate_hz / m
    gains = np.ones(len(index))
    if model.gain_cv > 0:
        if rng is None:
            raise ArgumentError("a shared gain (gain_cv > 0) needs a random generator")
        shape = 1.0 / model.gain_cv**2
        gains = rng.gamma(shape, 1.0 / shape, len(index))  # mean 1, s.d. gain_cv
    kernel = transient_kernel(window, model)
    bin_steps = int(round(window / dt)) // len(kernel)
    if bin_steps * len(kernel) != int(round(window / dt)):
        raise ArgumentError(f"kernel_dt ({model.kernel_dt * 1e3:g} ms) must divide the window into whole time steps")
    latency_steps = int(round(model.latency / dt))
    if abs(latency_steps * dt - model.latency) > 1e-9:
        raise ArgumentError(f"dt does not divide the latency ({model.latency * 1e3:g} ms)")
    if model.refractory and abs(round(model.refractory / dt) * dt - model.refractory) > 1e-9:
        raise ArgumentError(f"dt does not divide the refractory period ({model.refractory * 1e3:g} ms)")
    if model.refractory and model.refractory < dt:
        raise ArgumentError(f"the refractory period ({model.refractory * 1e3:g} ms) is shorter than dt")
    sched = DriveSchedule(lam, index, kernel, bin_steps, latency_steps, f, gains, [], window, model)
    if model.refractory and model.correct_refractory:
        dead = max(model.refractory - dt, 0.0)
        n_bad = sum(int(((sched.evoked_hz(slice(a, b)) * kernel.max() + model.spontaneous_hz) * dead >= 0.99).sum())
                    for a, b in sched.blocks())
        if n_bad:
            sched.notes.append(f"{n_bad} (presentation, unit) pairs ask for a rate near or above 1 / refractory period "
                               f"({1 / model.refractory:.4g} Hz): their expected counts cannot be reached and are lower")
    return sched
