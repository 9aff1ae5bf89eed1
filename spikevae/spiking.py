"""Brian2 Poisson neurons driven by the P-VAE's posterior rates.

One neuron per latent unit. The rate of unit ``k`` during presentation ``n`` is
``λ[n, k] / window`` (Hz; :func:`rates_hz` is the only place this conversion is
made), held in a 2-D ``TimedArray`` with one row per time slot (a slot is the
greatest common divisor of the window and the gap, so blanks are rows of zeros)
plus a trailing zero row: past its end a 2-D TimedArray repeats its last row.

Spike generation has exactly the law of Brian2's ``PoissonGroup`` (one
Bernoulli draw of probability ``p = rate·dt`` per step), but draws the *gap* to
the next spiking step instead of one random number per neuron per step: the
number of steps to the next spike is geometric, ``1 + floor(log U / log(1 - p))``,
redrawn at every slot boundary (the Bernoulli process is memoryless, so the
redraw is exact when the rate changes). The per-step work is one comparison per
neuron; random numbers are drawn only at spikes and at slot boundaries. Rate 0
gives no spikes, rate ``1/dt`` a spike every step.

Long runs are simulated in chunks of presentations, each a fresh Brian2 network
with its own child seed, so memory stays bounded. Code generation: ``numpy``
(no compiler), ``cython`` (compiled once, cached) or ``cpp_standalone`` (one
build per chunk in a reused directory); ``auto`` tries them fastest first and
says which it used. The same seed gives the same spikes on every target.
"""
from __future__ import annotations

import gc
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from ._brian import quiet_brian

__all__ = [
    "PoissonLayerConfig",
    "PoissonRun",
    "TARGETS",
    "rates_hz",
    "rate_dt_report",
    "simulate_poisson",
    "poisson_spikes_numpy",
]

log = logging.getLogger(__name__)
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

    def steps(self, seconds: float, what: str) -> int:
        """``seconds`` as a whole number of steps (error if dt does not divide it)."""
        n = seconds / self.dt
        if abs(n - round(n)) > 1e-6 * max(1.0, n):
            raise ValueError(f"dt = {self.dt * 1e3:g} ms does not divide the {what} ({seconds * 1e3:g} ms)")
        return int(round(n))

    def validate(self) -> "PoissonLayerConfig":
        """Raise ``ValueError`` naming the bad field; return self."""
        if not (self.window > 0 and math.isfinite(self.window)):
            raise ValueError(f"window must be > 0 s, got {self.window!r}")
        if not (self.gap >= 0 and math.isfinite(self.gap)):
            raise ValueError(f"gap must be >= 0 s, got {self.gap!r}")
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ValueError(f"dt must be > 0 s, got {self.dt!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1 presentation, got {self.chunk}")
        self.steps(self.window, "window")
        self.steps(self.gap, "gap")
        return self


class PoissonRun(NamedTuple):
    """Spikes from :func:`simulate_poisson`."""

    unit: np.ndarray  # (n_spikes,) int64 unit index
    time: np.ndarray  # (n_spikes,) float64 spike time, s, sorted
    onset: np.ndarray  # (n_presentations,) window start, s
    offset: np.ndarray  # (n_presentations,) window end, s
    t_stop: float  # end of the run, s
    target: str  # code-generation target actually used
    notes: list  # what the run had to say (fallbacks, clipped rates)

    def counts(self, n_units: int) -> np.ndarray:
        """Spikes per (presentation, unit) window, (n_presentations, n_units) (windows are sorted, disjoint)."""
        k = np.searchsorted(self.onset, self.time + 1e-9, side="right") - 1
        ok = (k >= 0) & (self.time < self.offset[np.maximum(k, 0)])
        out = np.zeros((len(self.onset), n_units))
        np.add.at(out, (k[ok], self.unit[ok]), 1)
        return out


def rates_hz(expected: np.ndarray, window: float) -> np.ndarray:
    """Expected counts per window → firing rate in Hz (the one place this is computed)."""
    return np.asarray(expected, dtype=np.float64) / float(window)


def rate_dt_report(expected: np.ndarray, cfg: PoissonLayerConfig) -> str | None:
    """A warning when some rate·dt is too large for one Bernoulli draw per step, else None."""
    p = rates_hz(expected, cfg.window) * cfg.dt  # (n, K)
    bad = p > cfg.p_warn
    if not bad.any():
        return None
    units = int(bad.any(0).sum())
    pmax = float(p.max())
    rate_max = pmax / cfg.dt
    k = math.ceil(pmax / cfg.p_warn - 1e-9)  # dt / k still divides the window and keeps rate·dt <= p_warn
    lost = "; above 1 the rate is clipped and spikes are lost" if pmax > 1 else ""
    msg = (f"{units} of {p.shape[1]} units reach rate·dt > {cfg.p_warn:g} in {int(bad.sum())} (presentation, unit) "
           f"pairs (max rate {rate_max:.4g} Hz, rate·dt = {pmax:.3g}): one Bernoulli draw per step "
           f"under-disperses their counts by up to {min(pmax, 1) * 100:.0f} %{lost}")
    msg += f"; use --dt {cfg.dt / k * 1e3:.4g} ms or smaller"
    return msg


def _slot_table(expected: np.ndarray, cfg: PoissonLayerConfig) -> tuple[np.ndarray, int]:
    """Rate table (rows, K) in Hz with one row per slot, blanks as zeros, and a trailing zero row."""
    w, g = cfg.steps(cfg.window, "window"), cfg.steps(cfg.gap, "gap")
    slot = math.gcd(w, g) if g else w
    rw, rg = w // slot, g // slot
    n, K = expected.shape
    table = np.zeros((n * (rw + rg) + 1, K))
    hz = rates_hz(expected, cfg.window)
    rows = (np.arange(n)[:, None] * (rw + rg) + np.arange(rw)[None, :]).ravel()
    table[rows] = np.repeat(hz, rw, axis=0)
    return table, slot


@quiet_brian
def _brian_chunk(table: np.ndarray, slot_steps: int, n_steps: int, dt: float, seed: int, target: str,
                 build_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Run one chunk in Brian2; spikes as (unit, time within the chunk)."""
    import brian2 as b2

    K = table.shape[1]
    if table.shape[0] * slot_steps < n_steps:  # guard the repeat-last-row trap
        raise AssertionError("rate table shorter than the run")
    standalone = target == "cpp_standalone"
    # objects of the previous chunk must be gone, or Brian2 gives the new ones suffixed names (`_1`),
    # which changes every generated file and forces a full C++ rebuild
    gc.collect()
    if standalone:
        b2.set_device("cpp_standalone", directory=build_dir, build_on_run=True, with_output=False)
        b2.prefs.devices.cpp_standalone.extra_make_args_unix = ["-j2"]
    else:
        b2.set_device("runtime")
        b2.prefs.codegen.target = target
    try:
        b2.seed(seed)
        stim = b2.TimedArray(table * b2.Hz, dt=slot_steps * dt * b2.second, name="pvae_rates")
        ns = {"stim": stim, "sim_dt": dt * b2.second}
        # p: Bernoulli probability per step; gap to the next spiking step ~ Geometric(p)
        # (capped at 1e9 steps, far beyond a chunk, because Brian's floor() returns a 32-bit integer)
        geo = "floor(clip(log(rand()) / (log(clip(1 - p, 1e-300, 1)) - 1e-300), 0, 1e9))"
        G = b2.NeuronGroup(
            K, "next_step : 1\np = clip(stim(t, i) * sim_dt, 0, 1) : 1",
            threshold="timestep(t, sim_dt) >= next_step",
            reset=f"next_step = timestep(t, sim_dt) + 1 + {geo}",
            dt=dt * b2.second, namespace=ns, name="pvae_units",
        )
        G.next_step = 1e300
        G.run_regularly(f"next_step = timestep(t, sim_dt) + {geo}", dt=slot_steps * dt * b2.second,
                        when="start", name="pvae_slot_boundary")
        mon = b2.SpikeMonitor(G, name="pvae_spikes")
        net = b2.Network(G, mon)
        net.run(n_steps * dt * b2.second, namespace=ns)
        unit = np.asarray(mon.i[:], dtype=np.int64)
        steps = np.rint(np.asarray(mon.t_[:]) / dt).astype(np.int64)
        del net, mon, G, stim
    finally:
        if standalone:
            b2.device.reinit()
            b2.device.activate()
            b2.set_device("runtime")
    return unit, steps


def poisson_spikes_numpy(expected: np.ndarray, cfg: PoissonLayerConfig, rng: np.random.Generator) -> PoissonRun:
    """Exact continuous-time Poisson spikes in plain numpy (counts ~ Poisson(λ), times uniform in the window).

    The practical speed limit for piecewise-constant rates, used as the baseline in
    ``benchmarks/spiking.py``; times are not on the dt grid.
    """
    w, g = cfg.steps(cfg.window, "window"), cfg.steps(cfg.gap, "gap")
    n, K = expected.shape
    counts = rng.poisson(np.asarray(expected, dtype=np.float64))  # (n, K)
    flat = counts.ravel()
    unit = np.repeat(np.tile(np.arange(K), n), flat)
    pres = np.repeat(np.repeat(np.arange(n), K), flat)
    time = pres * (w + g) * cfg.dt + rng.uniform(0, cfg.window, len(unit))
    order = np.argsort(time, kind="stable")
    on = np.arange(n) * (w + g) * cfg.dt
    return PoissonRun(unit[order].astype(np.int64), time[order], on, on + w * cfg.dt, n * (w + g) * cfg.dt,
                      "numpy-exact", [])


def simulate_poisson(expected: np.ndarray, cfg: PoissonLayerConfig, seed: int = 0, progress: bool = False,
                     build_dir: str | os.PathLike | None = None) -> PoissonRun:
    """Simulate Poisson neurons driven by expected counts per presentation.

    Parameters
    ----------
    expected : ndarray (n_presentations, K)
        λ, expected spike count of each unit in each presentation window (≥ 0, finite).
    cfg : PoissonLayerConfig
    seed : int
        Root seed; chunk ``c`` runs with a child seed, so results do not depend on the target.
    progress : bool
        tqdm progress bar over chunks.
    build_dir : path, optional
        cpp_standalone build directory (reused between chunks; default: a temporary folder).

    Returns
    -------
    PoissonRun
    """
    cfg.validate()
    expected = np.asarray(expected, dtype=np.float64)
    if expected.ndim != 2 or not expected.size:
        raise ValueError(f"expected counts must be a non-empty (n_presentations, K) array, got shape {expected.shape}")
    if not np.all(np.isfinite(expected)) or expected.min() < 0:
        raise ValueError("expected counts must be finite and >= 0")
    notes: list = []
    msg = rate_dt_report(expected, cfg)
    if msg:
        notes.append(msg)
        log.warning(msg)
    n, K = expected.shape
    w, g = cfg.steps(cfg.window, "window"), cfg.steps(cfg.gap, "gap")
    period = w + g
    seeds = [int(s.generate_state(1)[0] % (2**31 - 1)) for s in np.random.SeedSequence(seed).spawn((n + cfg.chunk - 1) // cfg.chunk)]
    tmp = None
    if build_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="spikevae-brian-")
        build_dir = tmp.name
    targets = _AUTO_ORDER if cfg.target == "auto" else (cfg.target,)
    used = None
    units, steps = [], []
    try:
        starts = range(0, n, cfg.chunk)
        for c, s0 in enumerate(tqdm(starts, disable=not progress or len(starts) == 1, desc="brian2", unit="chunk")):
            block = expected[s0:s0 + cfg.chunk]
            table, slot = _slot_table(block, cfg)
            n_steps = len(block) * period
            while True:
                tgt = used or targets[0]
                try:
                    u, st = _brian_chunk(table, slot, n_steps, cfg.dt, seeds[c], tgt, str(Path(build_dir) / tgt))
                    used = tgt
                    break
                except Exception as exc:  # noqa: BLE001 - a target that cannot build falls back
                    if used is not None or cfg.target != "auto" or tgt == targets[-1]:
                        raise
                    nxt = targets[targets.index(tgt) + 1]
                    first = str(exc).strip().splitlines()
                    note = f"Brian2 target {tgt} did not work here ({type(exc).__name__}: {first[0] if first else ''}); using {nxt}"
                    notes.append(note)
                    log.warning(note)
                    targets = targets[targets.index(tgt) + 1:]
            units.append(u)
            steps.append(st + s0 * period)
    finally:
        if tmp is not None:
            tmp.cleanup()
    unit = np.concatenate(units)
    step = np.concatenate(steps)
    order = np.lexsort((unit, step))
    on = np.arange(n) * period * cfg.dt
    return PoissonRun(unit[order], step[order] * cfg.dt, on, on + w * cfg.dt, n * period * cfg.dt, used, notes)
