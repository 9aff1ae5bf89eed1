"""The spike layer's presentation protocol and time base, and the rate and dt checks."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ArgumentError
from .spike_model import SpikeModel

__all__ = ["TARGETS", "PoissonLayerConfig", "rates_hz", "rate_dt_report"]

TARGETS = ("numpy", "cython", "cpp_standalone", "auto")


_AUTO_ORDER = ("cpp_standalone", "cython", "numpy")


@dataclass(frozen=True)
class PoissonLayerConfig:
    """Presentation protocol and simulation settings."""

    window: float = 0.100  # presentation length, s (λ is the expected count in this window)
    gap: float = 0.0  # blank between presentations, s
    dt: float = 1e-4  # simulation time step, s
    target: str = "auto"  # Brian2 code generation: numpy | cython | cpp_standalone | auto
    chunk: int = 2000  # presentations per Brian2 network run (bounds memory)
    p_warn: float = 0.05  # warn when rate·dt exceeds this (Bernoulli counts under-dispersed by p)
    spikes: SpikeModel = SpikeModel()  # time base, spontaneous rate, dynamics, refractoriness, variability

    def steps(self, seconds: float, what: str) -> int:
        """``seconds`` as a whole number of steps (error if dt does not divide it)."""
        n = seconds / self.dt
        if abs(n - round(n)) > 1e-6 * max(1.0, n):
            raise ArgumentError(f"dt = {self.dt * 1e3:g} ms does not divide the {what} ({seconds * 1e3:g} ms)")
        return int(round(n))

    def validate(self) -> PoissonLayerConfig:
        """Raise :class:`~spikevae.errors.ArgumentError` naming the bad field; return self."""
        if not (self.window > 0 and math.isfinite(self.window)):
            raise ArgumentError(f"window must be > 0 s, got {self.window!r}")
        if not (self.gap >= 0 and math.isfinite(self.gap)):
            raise ArgumentError(f"gap must be >= 0 s, got {self.gap!r}")
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ArgumentError(f"dt must be > 0 s, got {self.dt!r}")
        if self.target not in TARGETS:
            raise ArgumentError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.dt < 1e-7 or self.dt > 1e-2:
            raise ArgumentError(f"dt must be between 0.1 µs and 10 ms, got {self.dt!r} s")
        if self.window > 1e4 or self.gap > 1e4:
            raise ArgumentError(f"window and gap must be at most 10,000 s, got {self.window!r} and {self.gap!r}")
        if self.window / self.dt > 1e8:
            raise ArgumentError(f"window / dt = {self.window / self.dt:.3g} steps per presentation; at most 1e8")
        if self.chunk < 1:
            raise ArgumentError(f"chunk must be >= 1 presentation, got {self.chunk}")
        if self.window < self.dt:
            raise ArgumentError(f"window ({self.window!r} s) must be at least one time step dt ({self.dt!r} s)")
        self.steps(self.window, "window")
        self.steps(self.gap, "gap")
        if not isinstance(self.spikes, SpikeModel):
            raise ArgumentError(f"spikes must be a SpikeModel, got {type(self.spikes).__name__}")
        self.spikes.validate()
        return self


def rates_hz(rates: np.ndarray, window: float) -> np.ndarray:
    """Expected counts per window → firing rate in Hz (the one place this is computed)."""
    return np.asarray(rates, dtype=np.float64) / float(window)


def _dt_stats(p: np.ndarray, p_warn: float) -> tuple:
    """(bad pairs, units with a bad pair (bool, K), max p) of a block of per-step probabilities."""
    bad = p > p_warn
    return int(bad.sum()), bad.any(0), float(p.max()) if p.size else 0.0


def _merge_dt_stats(stats: list) -> tuple:
    return (sum(s[0] for s in stats), np.logical_or.reduce([s[1] for s in stats]), max(s[2] for s in stats))


def _dt_message(stats: tuple, cfg: PoissonLayerConfig, n_units: int) -> str | None:
    n_bad, units, pmax = stats
    if not n_bad:
        return None
    rate_max = pmax / cfg.dt
    k = math.ceil(pmax / cfg.p_warn - 1e-9)  # dt / k still divides the window and keeps rate·dt <= p_warn
    lost = "; above 1 the rate is clipped and spikes are lost" if pmax > 1 else ""
    msg = (f"{int(units.sum())} of {n_units} units reach rate·dt > {cfg.p_warn:g} in {n_bad} (presentation, unit) "
           f"pairs (max rate {rate_max:.4g} Hz, rate·dt = {pmax:.3g}): one Bernoulli draw per step "
           f"under-disperses their counts by up to {min(pmax, 1) * 100:.0f} %{lost}")
    return msg + f"; use --dt {cfg.dt / k * 1e3:.4g} ms or smaller"


def fitting_dt(peak_hz: float, cfg: PoissonLayerConfig) -> float:
    """The largest step ``cfg.dt / k`` (k = 1, 2, ...; it still divides the window) at which a unit firing at
    ``peak_hz`` keeps rate·dt <= ``cfg.p_warn``: the step a run picks for itself so that it never under-disperses."""
    if not (math.isfinite(peak_hz) and peak_hz >= 0):
        raise ArgumentError(f"peak rate must be finite and >= 0 Hz, got {peak_hz!r}")
    return cfg.dt / max(1, math.ceil(peak_hz * cfg.dt / cfg.p_warn - 1e-9))


def rate_dt_report(rates: np.ndarray, cfg: PoissonLayerConfig, hz: np.ndarray | None = None) -> str | None:
    """A warning when some rate·dt is too large for one Bernoulli draw per step, else None.

    ``hz``: the peak drive of each (presentation, unit), Hz (default λ / window).
    """
    p = (rates_hz(rates, cfg.window) if hz is None else np.asarray(hz)) * cfg.dt  # (n, K)
    return _dt_message(_dt_stats(p, cfg.p_warn), cfg, p.shape[1])

