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

import numpy as np
from tqdm.auto import tqdm

from ._brian import brian_state, quiet_brian, run_checked
from .errors import ArgumentError
from .records import Presentations, SpikeTrains

__all__ = [
    "PoissonLayerConfig",
    "TARGETS",
    "rates_hz",
    "rate_dt_report",
    "simulate_poisson",
    "simulate_spikes",
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
        return self


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
    """Run one chunk in Brian2; spikes as (unit, time step within the chunk)."""
    K = table.shape[1]
    if table.shape[0] * slot_steps < n_steps:  # guard the repeat-last-row trap
        raise AssertionError("rate table shorter than the run")
    standalone = target == "cpp_standalone"
    # objects of the previous chunk must be gone, or Brian2 gives the new ones suffixed names (`_1`),
    # which changes every generated file and forces a full C++ rebuild
    gc.collect()
    with brian_state() as b2:
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
            run_checked(net, n_steps * dt * b2.second, namespace=ns)
            unit = np.asarray(mon.i[:], dtype=np.int64)
            steps = np.rint(np.asarray(mon.t_[:]) / dt).astype(np.int64)
            del net, mon, G, stim
        finally:
            if standalone:
                b2.device.reinit()
                b2.device.activate()
    return unit, steps


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


def poisson_spikes_numpy(expected: np.ndarray, cfg: PoissonLayerConfig, rng: np.random.Generator) -> SpikeTrains:
    """Exact continuous-time Poisson spikes in plain numpy (counts ~ Poisson(λ), times uniform in the window).

    The practical speed limit for piecewise-constant rates, used as the baseline in
    ``benchmarks/spiking.py``; times are not on the dt grid.
    """
    expected = _check_expected(expected)
    w, g = cfg.steps(cfg.window, "window"), cfg.steps(cfg.gap, "gap")
    n, K = expected.shape
    counts = rng.poisson(expected)  # (n, K)
    flat = counts.ravel()
    unit = np.repeat(np.tile(np.arange(K), n), flat)
    pres = np.repeat(np.repeat(np.arange(n), K), flat)
    time = pres * (w + g) * cfg.dt + rng.uniform(0, cfg.window, len(unit))
    order = np.argsort(time, kind="stable")
    return SpikeTrains(unit[order].astype(np.int64), time[order], K, n * (w + g) * cfg.dt, cfg.dt,
                       _presentations(expected, cfg, None, None), {"target": "numpy-exact", "notes": []})


def simulate_poisson(expected: np.ndarray, cfg: PoissonLayerConfig, seed: int = 0, progress: bool = False,
                     build_dir: str | os.PathLike | None = None, stimulus: np.ndarray | None = None,
                     repeat: np.ndarray | None = None, meta: dict | None = None) -> SpikeTrains:
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
    stimulus, repeat : ndarray (n_presentations,) int, optional
        The presentation table's stimulus index and repeat number (default: 0..n-1 and 0).
    meta : dict, optional
        Provenance stored in the record; ``target`` (the Brian2 target used) and ``notes`` (what the
        run had to say: fallbacks, rates too high for dt) are added.

    Returns
    -------
    SpikeTrains
        Counting rule: :meth:`SpikeTrains.counts`.
    """
    cfg.validate()
    expected = _check_expected(expected)
    pres = _presentations(expected, cfg, stimulus, repeat)
    notes: list = []
    msg = rate_dt_report(expected, cfg)
    if msg:
        notes.append(msg)
        log.warning(msg)
    n, K = expected.shape
    w, g = cfg.steps(cfg.window, "window"), cfg.steps(cfg.gap, "gap")
    period = w + g
    n_chunks = (n + cfg.chunk - 1) // cfg.chunk
    seeds = [int(s.generate_state(1)[0] % (2**31 - 1)) for s in np.random.SeedSequence(seed).spawn(n_chunks)]
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
                    note = (f"Brian2 target {tgt} did not work here ({type(exc).__name__}: "
                            f"{first[0] if first else ''}); using {nxt}")
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
    return SpikeTrains(unit[order], step[order] * cfg.dt, K, n * period * cfg.dt, cfg.dt, pres,
                       {**(meta or {}), "target": used, "notes": notes})


def simulate_spikes(rates: np.ndarray, window: float = 0.1, gap: float = 0.0, dt: float = 1e-4, target: str = "auto",
                    seed: int = 0, *, chunk: int = 2000, stimulus: np.ndarray | None = None,
                    repeat: np.ndarray | None = None, meta: dict | None = None, progress: bool = False) -> SpikeTrains:
    """Real spike trains from expected counts: one Brian2 Poisson neuron per unit, one presentation per row.

    Parameters
    ----------
    rates : ndarray (n_presentations, K)
        λ, the expected spike count of each unit in each presentation window (e.g. ``model.rates(x)``;
        ``np.tile(lam, (repeats, 1))`` repeats every stimulus). Hz = λ / window.
    window, gap, dt : float
        Presentation length, blank between presentations and simulation step, s.
    target : {'auto', 'cpp_standalone', 'cython', 'numpy'}
        Brian2 code generation (the same seed gives the same spikes on every target).
    seed : int
    chunk : int
        Presentations per Brian2 run (bounds Brian2's memory).
    stimulus, repeat, meta, progress
        See :func:`simulate_poisson`.

    Returns
    -------
    SpikeTrains

    Examples
    --------
    >>> import numpy as np
    >>> st = simulate_spikes(np.full((10, 3), 2.0), window=0.1, target="numpy", seed=1)
    >>> st.counts().shape
    (10, 3)
    """
    cfg = PoissonLayerConfig(window=window, gap=gap, dt=dt, target=target, chunk=chunk)
    return simulate_poisson(rates, cfg, seed, progress=progress, stimulus=stimulus, repeat=repeat, meta=meta)
