"""Planning a Poisson-layer run: rate tables per chunk, the presentation table, spike order."""
from __future__ import annotations

import math

import numpy as np

from ..brian.poisson import history_rows
from ..errors import ArgumentError
from ..records import Presentations
from .config import PoissonLayerConfig

__all__ = ["default_workers"]


def _slot_steps(cfg: PoissonLayerConfig, sched) -> int:
    """Steps per row of the rate table: every window, gap, kernel bin and the latency are whole rows."""
    w, g = cfg.steps(cfg.window, "window"), cfg.steps(cfg.gap, "gap")
    slot = math.gcd(w, g) if g else w
    if len(sched.kernel) > 1:
        slot = math.gcd(slot, sched.bin_steps)
    if sched.latency_steps:
        slot = math.gcd(slot, sched.latency_steps)
    return slot


def _chunk_table(sched, cfg: PoissonLayerConfig, start: int, stop: int) -> tuple[np.ndarray, int, int]:
    """Rate table (rows, K) in Hz for the time steps [start, stop) of the run, one row per slot, plus a
    trailing row (past its end a 2-D TimedArray repeats its last row), and the rows before ``start`` it
    begins with (the history the refractory correction looks back on, :func:`history_rows`). Responses are
    placed at their latency; the spontaneous rate fills everything. Returns (table, slot steps, history rows)."""
    w, g = cfg.steps(cfg.window, "window"), cfg.steps(cfg.gap, "gap")
    period, slot = w + g, _slot_steps(cfg, sched)
    n, K = len(sched), sched.n_units
    model = cfg.spikes
    hist = history_rows(model, cfg.dt, slot, start)
    start -= hist * slot
    n_rows = (stop - start) // slot
    table = np.full((n_rows + 1, K), float(model.spontaneous_hz))
    L, nb, q = sched.latency_steps, len(sched.kernel), sched.bin_steps // slot
    p_lo = max(0, (start - L - w) // period)
    p_hi = min(n, (stop - L) // period + 1)
    pres = np.arange(p_lo, p_hi)
    for j in range(nb):  # bin j of every presentation's response
        first = (pres * period + L + j * sched.bin_steps - start) // slot  # (m,) first row of the bin
        rows = first[:, None] + np.arange(q)[None, :]  # (m, q)
        ok = (rows >= 0) & (rows < n_rows)
        hz = sched.evoked_hz(pres) * sched.kernel[j] if nb > 1 else sched.evoked_hz(pres)
        if model.spontaneous_hz:
            hz = hz + model.spontaneous_hz
        table[rows[ok]] = np.repeat(hz, q, axis=0).reshape(len(pres), q, K)[ok]
    if model.spontaneous_hz == 0:
        table[-1] = 0.0
    return table, slot, hist


def _check_expected(expected) -> np.ndarray:
    expected = np.asarray(expected, dtype=np.float64)
    if expected.ndim != 2 or not expected.size:
        raise ArgumentError(f"rates must be a non-empty (n_presentations, K) array of expected counts, "
                            f"got shape {expected.shape}")
    if not np.all(np.isfinite(expected)) or expected.min() < 0:
        raise ArgumentError("rates (expected counts per window) must be finite and >= 0")
    return expected


def _presentations(expected: np.ndarray, cfg: PoissonLayerConfig, stimulus, repeat) -> Presentations:
    n = len(expected)
    w, g = cfg.steps(cfg.window, "window"), cfg.steps(cfg.gap, "gap")
    on = np.arange(n) * (w + g) * cfg.dt
    stimulus = np.arange(n, dtype=np.int64) if stimulus is None else np.asarray(stimulus, dtype=np.int64)
    repeat = np.zeros(n, dtype=np.int64) if repeat is None else np.asarray(repeat, dtype=np.int64)
    return Presentations(stimulus, repeat, on, on + w * cfg.dt, expected)


def _time_ordered(u: np.ndarray, st: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spikes in (step, unit) order: as they are when they already come so (a spike monitor's order, one check
    over the arrays), else sorted."""
    if len(st) < 2 or np.all((st[1:] > st[:-1]) | ((st[1:] == st[:-1]) & (u[1:] > u[:-1]))):
        return u, st
    order = np.lexsort((u, st))
    return u[order], st[order]


def default_workers(n_presentations: int, chunk: int) -> int:
    """Every core this process may use when a run has more than one chunk, else 1."""
    from .._resources import usable_cores

    return 1 if n_presentations <= chunk else usable_cores()

