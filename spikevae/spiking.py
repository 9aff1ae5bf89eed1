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

import dataclasses
import gc
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ._brian import brian_state, quiet_brian, run_checked, two_pass_thresholder
from .errors import ArgumentError, RunInterrupted
from .records import Presentations, SpikeTrains
from .spike_model import SpikeModel, drive_schedule, refractory_drive

__all__ = [
    "PoissonLayerConfig",
    "TARGETS",
    "rates_hz",
    "rate_dt_report",
    "simulate_poisson",
    "PoissonRun",
    "simulate_spikes",
    "poisson_spikes_numpy",
    "default_workers",
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


def rates_hz(expected: np.ndarray, window: float) -> np.ndarray:
    """Expected counts per window → firing rate in Hz (the one place this is computed)."""
    return np.asarray(expected, dtype=np.float64) / float(window)


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


def rate_dt_report(expected: np.ndarray, cfg: PoissonLayerConfig, hz: np.ndarray | None = None) -> str | None:
    """A warning when some rate·dt is too large for one Bernoulli draw per step, else None.

    ``hz``: the peak drive of each (presentation, unit), Hz (default λ / window).
    """
    p = (rates_hz(expected, cfg.window) if hz is None else np.asarray(hz)) * cfg.dt  # (n, K)
    return _dt_message(_dt_stats(p, cfg.p_warn), cfg, p.shape[1])


def _slot_steps(cfg: PoissonLayerConfig, sched) -> int:
    """Steps per row of the rate table: every window, gap, kernel bin and the latency are whole rows."""
    w, g = cfg.steps(cfg.window, "window"), cfg.steps(cfg.gap, "gap")
    slot = math.gcd(w, g) if g else w
    if len(sched.kernel) > 1:
        slot = math.gcd(slot, sched.bin_steps)
    if sched.latency_steps:
        slot = math.gcd(slot, sched.latency_steps)
    return slot


def _chunk_table(sched, cfg: PoissonLayerConfig, start: int, stop: int) -> tuple[np.ndarray, int]:
    """Rate table (rows, K) in Hz for the time steps [start, stop) of the run, one row per slot, plus a
    trailing row (past its end a 2-D TimedArray repeats its last row). Responses are placed at their
    latency; the spontaneous rate fills everything; the refractory drive correction is applied last."""
    w, g = cfg.steps(cfg.window, "window"), cfg.steps(cfg.gap, "gap")
    period, slot = w + g, _slot_steps(cfg, sched)
    n, K = len(sched), sched.n_units
    model = cfg.spikes
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
    if model.refractory and model.correct_refractory:
        table, _ = refractory_drive(table, model.refractory, cfg.dt)
    if model.spontaneous_hz == 0:
        table[-1] = 0.0
    return table, slot


def _brian_chunk(table: np.ndarray, slot_steps: int, n_steps: int, dt: float, key: int, step0: int, target: str,
                 build_dir: str | None, model: SpikeModel = SpikeModel(),
                 carry: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run one chunk (absolute steps ``step0`` .. ``step0 + n_steps``) in Brian2.

    Returns spikes as (unit, time step within the chunk) and the state the next chunk starts from
    (``carry``: what a unit remembers across the cut, in absolute steps). Every random draw is
    :mod:`spikevae._streams`' function of (key, unit, absolute step, stream), so the spikes do not
    depend on where the run is cut. ``build_dir``: the cache of compiled standalone projects.
    """
    if table.shape[0] * slot_steps < n_steps:  # guard the repeat-last-row trap
        raise AssertionError("rate table shorter than the run")
    if target == "cpp_standalone":
        return _standalone_chunk(table, slot_steps, n_steps, dt, model, key, step0, carry, build_dir)
    return _runtime_chunk(table, slot_steps, n_steps, dt, target, model, _unit_values(model, dt, key, step0, carry),
                          step0)


def _unit_kind(model: SpikeModel) -> str:
    """Which network the spike model needs (its parameters are run-time values, not part of the code)."""
    if model.gamma_order > 1:
        return "renewal"
    return "refractory" if model.refractory else "poisson"


#: state variables of each network kind that a unit carries into the next chunk
_CARRIED = {"poisson": (), "refractory": ("ref_end",), "renewal": ("Lam", "next_L", "c", "ref_end")}
# ... of which these are held in local steps inside a chunk and carried in absolute steps
_ABSOLUTE = ("ref_end",)


def _unit_values(model: SpikeModel, dt: float, key: int, step0: int, carry: dict | None) -> dict:
    """Initial values of the units' variables for one chunk: the run's key, the chunk's first absolute step,
    the model's parameters and the carried state (local steps)."""
    kind = _unit_kind(model)
    values = {"rng_key": float(key), "step0": float(step0)}
    if kind != "poisson":
        values["ref_steps"] = float(int(round(model.refractory / dt)) if model.refractory else 0)
        values["ref_end"] = -1.0
    if kind == "renewal":
        values.update(k_order=float(model.gamma_order), has_carry=0.0, Lam=0.0, c=0.0, next_L=1e300)
    if carry is not None:
        values.update({name: carry[name] - (step0 if name in _ABSOLUTE else 0) for name in _CARRIED[kind]})
        if kind == "renewal":
            values["has_carry"] = 1.0
    return values


@quiet_brian
def _runtime_chunk(table, slot_steps, n_steps, dt, target, model, values, step0):
    from ._streams import uniform_function

    K, kind = table.shape[1], _unit_kind(model)
    rows = _ladder(len(table))  # Brian2's Cython TimedArray bakes the table's shape into its code: a few lengths
    if rows > len(table):  # compile once and serve every run (the padded slots lie past the run, never read)
        table = np.vstack([table, np.zeros((rows - len(table), K))])
    with brian_state() as b2:
        b2.set_device("runtime")
        b2.prefs.codegen.target = target
        stim = b2.TimedArray(table * b2.Hz, dt=slot_steps * dt * b2.second, name="pvae_rates")
        ns = {"stim": stim, "sim_dt": dt * b2.second, "spikevae_uniform": uniform_function(b2)}
        G = _neurons(b2, K, ns, dt, slot_steps, n_steps, kind)
        for name, v in values.items():
            setattr(G, name, v)
        mon = b2.SpikeMonitor(G, variables=["c"] if kind == "renewal" else None, name="pvae_spikes")
        net = b2.Network(G, mon)
        run_checked(net, n_steps * dt * b2.second, namespace=ns)
        unit = np.asarray(mon.i[:], dtype=np.int64)
        steps = np.rint(np.asarray(mon.t_[:]) / dt).astype(np.int64)
        c = np.asarray(mon.c[:]) if kind == "renewal" else None
        state = {name: np.asarray(getattr(G, name)[:], dtype=np.float64) for name in _CARRIED[kind]}
        del net, mon, G, stim
    return _spikes_and_carry(unit, steps, c, state, model, step0)


def _spikes_and_carry(unit, steps, c, state, model, step0):
    if c is not None:  # gamma renewal: the k-th events are the spikes
        keep = np.rint(c) == model.gamma_order - 1
        unit, steps = unit[keep], steps[keep]
    carry = {name: v + (step0 if name in _ABSOLUTE else 0) for name, v in state.items()}
    return unit, steps, carry


def default_workers(n_presentations: int, chunk: int) -> int:
    """Every core this process may use when a run has more than one chunk, else 1."""
    from ._resources import usable_cores

    return 1 if n_presentations <= chunk else usable_cores()


def _time_ordered(u: np.ndarray, st: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spikes in (step, unit) order: as they are when they already come so (a spike monitor's order, one check
    over the arrays), else sorted."""
    if len(st) < 2 or np.all((st[1:] > st[:-1]) | ((st[1:] == st[:-1]) & (u[1:] > u[:-1]))):
        return u, st
    order = np.lexsort((u, st))
    return u[order], st[order]


def _chunk_job(table, slot_steps, n_steps, dt, key, step0, target, build_dir, model):
    """One chunk without carried state, in a worker: its spikes (unit int32, local step) sorted by time."""
    u, st, _ = _brian_chunk(table, slot_steps, n_steps, dt, key, step0, target, build_dir, model, None)
    u, st = _time_ordered(u, st)
    return u.astype(np.int32), st


def _ladder(rows: int) -> int:
    """Smallest of 1, 2, 3, 4, 6, 8, 12, ... (2^k and 3·2^(k−2)) at or above ``rows``: the run lengths compiled,
    so that a handful of binaries serve every run (at most a third of a chunk simulated in vain)."""
    p = 1 << max(rows - 1, 0).bit_length()  # the power of two at or above rows
    return 3 * p // 4 if p >= 4 and 3 * p // 4 >= rows else p


#: longest simulated time of one compiled run. Brian2's standalone network takes two clocks' ticks as simultaneous
#: when their times differ by at most 1e-14 s (an absolute tolerance; the runtime targets use one relative to dt),
#: so the slot-boundary clock and the units' clock, whose times differ by one rounding, fall apart past 64 s
#: (where one unit in the last place is 1.4e-14 s) and the boundary redraw runs after the threshold instead of
#: before: other spikes than numpy's and cython's. Longer chunks run as several compiled runs, state carried.
STANDALONE_MAX_SECONDS = 64.0


def _piece_rows(slot_steps: int, dt: float) -> int:
    """Rows (slots) of one compiled run: the longest ladder length within :data:`STANDALONE_MAX_SECONDS`."""
    max_rows = int(STANDALONE_MAX_SECONDS / (slot_steps * dt) + 1e-9)
    if max_rows < 1:
        raise ArgumentError(f"cpp_standalone runs at most {STANDALONE_MAX_SECONDS:g} s between rate changes; "
                            f"this protocol holds rates for {slot_steps * dt:g} s")
    p = 1 << (max_rows.bit_length() - 1)  # the power of two at or below max_rows
    return 3 * p // 2 if p >= 2 and 3 * p // 2 <= max_rows else p


def _standalone_chunk(table, slot_steps, n_steps, dt, model, key, step0, carry, build_dir):
    """One chunk with the cached cpp_standalone binary of its code shape (built on first use): the rate table,
    key, offset, parameters and carried state are run-time arguments. The binary runs a ladder length of
    whole slots; the rows past the chunk are silent, so nothing past ``n_steps`` spikes or changes a unit.
    A chunk longer than :data:`STANDALONE_MAX_SECONDS` runs as consecutive pieces of whole slots."""

    K, kind = table.shape[1], _unit_kind(model)
    rows, piece = -(-n_steps // slot_steps), _piece_rows(slot_steps, dt)
    if kind == "poisson" and rows > 1:
        return _stacked_chunk(table, slot_steps, n_steps, dt, key, step0, build_dir, rows, piece)
    units, times = [], []
    for r0 in range(0, rows, piece):
        r1 = min(rows, r0 + piece)
        n_sub = min(n_steps, r1 * slot_steps) - r0 * slot_steps
        rows_bin, folder, manifest = _standalone_project(K, slot_steps, n_sub, dt, kind, build_dir)
        padded = np.zeros((rows_bin + 1, K))
        padded[:r1 - r0] = table[r0:r1]
        s0 = step0 + r0 * slot_steps
        args = {"pvae_rates.values": padded}
        args.update({f"pvae_units.{k}": v for k, v in _unit_values(model, dt, key, s0, carry).items()})
        outputs = ("i", "t", "event_c") if kind == "renewal" else ("i", "t")
        unit, steps, res = _binary_spikes(folder, manifest, args, outputs + tuple(_CARRIED[kind]), dt, n_sub)
        state = {name: res[name].astype(np.float64) for name in _CARRIED[kind]}
        unit, steps, carry = _spikes_and_carry(unit, steps, res.get("event_c"), state, model, s0)
        units.append(unit)
        times.append(steps + r0 * slot_steps)
    return np.concatenate(units), np.concatenate(times), carry


#: pieces of a chunk simulated side by side, as STACK·K neurons on one clock (plain Poisson layer)
STACK = 16


def _stack_plan(rows: int, piece: int) -> tuple[int, int]:
    """(rows per piece, pieces) of a stacked chunk of ``rows`` slots, pieces at most ``piece`` rows."""
    p = min(piece, _ladder(-(-rows // STACK)))  # a ladder length
    return p, -(-rows // p)


def _prepare_standalone(K: int, slot_steps: int, n_steps: int, dt: float, model: SpikeModel, build_dir) -> None:
    """Build (if needed) the compiled project a chunk of ``n_steps`` will run: what :func:`_standalone_chunk` uses."""
    kind, rows, piece = _unit_kind(model), -(-n_steps // slot_steps), _piece_rows(slot_steps, dt)
    if kind == "poisson" and rows > 1:
        p, M = _stack_plan(rows, piece)
        _standalone_project(K, slot_steps, p * slot_steps, dt, kind, build_dir, M)
    else:
        _standalone_project(K, slot_steps, min(rows, piece) * slot_steps, dt, kind, build_dir)


def _stacked_chunk(table, slot_steps, n_steps, dt, key, step0, build_dir, rows, piece):
    """A chunk of the plain Poisson layer cut into up to :data:`STACK` pieces of whole slots that run at once, piece
    m as neurons m·K .. m·K + K − 1 (each starting at its own absolute step): Brian2's per-step cost, most of a
    step at 512 units, is paid once for all of them. Every draw is keyed by (unit, absolute step), so the spikes
    are those of one long run."""

    K = table.shape[1]
    p, M = _stack_plan(rows, piece)
    rows_bin, folder, manifest = _standalone_project(K, slot_steps, p * slot_steps, dt, "poisson", build_dir, M)
    padded = np.zeros((rows_bin + 1, M, K))
    for m in range(M):
        seg = table[m * p:min(rows, (m + 1) * p)]
        padded[:len(seg), m] = seg
    first = step0 + np.arange(M) * p * slot_steps  # absolute first step of each piece
    args = {"pvae_rates.values": padded.reshape(rows_bin + 1, M * K), "pvae_units.rng_key": float(key),
            "pvae_units.step0": np.repeat(first, K).astype(np.float64)}
    j, steps, _ = _binary_spikes(folder, manifest, args, ("i", "t"), dt, n_steps,
                                 offset=lambda j: (j // K) * p * slot_steps)  # piece m starts p·m slots later
    # the monitor's order is (local step, neuron); pieces follow one another in time, so a stable sort by
    # piece (a radix sort of small integers) gives the order of one long run: (step, unit)
    order = np.argsort((j // K).astype(np.int16), kind="stable")
    return j[order] % K, steps[order], {}


def _binary_spikes(folder, manifest, args: dict, outputs: tuple, dt: float, n_steps: int, offset=None) -> tuple:
    """Run a cached binary: (neuron index, step of each spike (+ ``offset(index)``), all outputs). A spike at or past
    ``n_steps`` would come from the padded silent rows, which must not change the run: it is an error."""
    from ._standalone import run_binary

    res = run_binary(folder, manifest, args, outputs)
    unit = res["i"].astype(np.int64)
    steps = np.rint(res["t"] / dt).astype(np.int64)
    if offset is not None:
        steps = steps + offset(unit)
    if len(steps) and steps.max() >= n_steps:
        raise AssertionError("a silent row spiked")
    return unit, steps, res


def _standalone_project(K: int, slot_steps: int, n_steps: int, dt: float, kind: str, build_dir,
                        stack: int = 1) -> tuple:
    """(rows, folder, manifest) of the cached compiled project that runs ``n_steps`` (rounded up the ladder) of
    ``stack`` pieces of ``K`` units side by side."""
    from ._standalone import cached_project

    rows_bin = _ladder(-(-n_steps // slot_steps))
    n_bin = rows_bin * slot_steps
    spec = {"kind": kind, "units": K, "stack": stack, "slot_steps": slot_steps, "steps": n_bin, "dt": dt}
    folder, manifest = cached_project(
        "poisson_layer", spec, lambda d: _build_standalone(d, K, slot_steps, rows_bin, n_bin, dt, kind, stack), build_dir)
    return rows_bin, folder, manifest


@quiet_brian
def _build_standalone(directory: Path, K: int, slot_steps: int, rows: int, n_steps: int, dt: float, kind: str,
                      stack: int = 1) -> dict:
    """Generate and compile the standalone project of one code shape in ``directory``; return its manifest."""
    from ._streams import uniform_function

    gc.collect()  # objects of an earlier build must be gone, or Brian2 renames the new ones (`_1`)
    with brian_state() as b2:
        b2.set_device("cpp_standalone", directory=str(directory), build_on_run=False, with_output=False)
        b2.prefs.devices.cpp_standalone.extra_make_args_unix = ["-j2"]
        try:
            stim = b2.TimedArray(np.zeros((rows + 1, stack * K)) * b2.Hz, dt=slot_steps * dt * b2.second,
                                 name="pvae_rates")
            ns = {"stim": stim, "sim_dt": dt * b2.second, "spikevae_uniform": uniform_function(b2)}
            G = _neurons(b2, stack * K, ns, dt, slot_steps, n_steps, kind, n_lat=K)
            two_pass_thresholder(G)
            mon = b2.SpikeMonitor(G, variables=["c"] if kind == "renewal" else None, name="pvae_spikes")
            net = b2.Network(G, mon)
            net.run(n_steps * dt * b2.second, namespace=ns)
            b2.device.build(directory=str(directory), compile=True, run=False, with_output=False)
            dev = b2.device

            def out(var):
                return {"file": dev.get_array_filename(var), "dtype": np.dtype(var.dtype).name}

            run_args = [name for name, var in G.variables.items()
                        if name in _UNIT_VARIABLES and not var.read_only]
            manifest = {
                "binary": "main", "duration": n_steps * dt, "dt": dt,
                "args": {"pvae_rates.values": {"dtype": "float64", "size": (rows + 1) * stack * K},
                         **{f"pvae_units.{n}": {"dtype": np.dtype(G.variables[n].dtype).name, "size": G.variables[n].size}
                            for n in run_args}},
                "outputs": {"i": out(mon.variables["i"]), "t": out(mon.variables["t"]),
                            **({"event_c": out(mon.variables["c"])} if kind == "renewal" else {}),
                            **{n: out(G.variables[n]) for n in _CARRIED[kind]},
                            "clock_t": out(G.clock.variables["t"])}}
            del net, mon, G, stim
        finally:
            b2.device.reinit()
            b2.device.activate()
    return manifest


#: the units' run-time variables (set per chunk, never compiled in)
_UNIT_VARIABLES = ("rng_key", "step0", "ref_steps", "k_order", "has_carry", "ref_end", "Lam", "next_L", "c")


def _neurons(b2, K: int, ns: dict, dt: float, slot_steps: int, n_steps: int, kind: str, n_lat: int | None = None):
    """The NeuronGroup that turns the rate table ``stim(t, i)`` (Hz) into spikes, for a network ``kind``
    (:func:`_unit_kind`); its run-time values (:func:`_unit_values`) are set by the caller.

    Poisson: one Bernoulli draw of probability p = rate·dt per step, realised by drawing the geometric number
    of steps to the next spike, redrawn at every slot boundary (memoryless). An absolute refractory period of
    r steps makes the earliest next spike r steps after the last one (``ref_end``); the geometric draw starts
    there. Gamma renewal (order k): the rate is integrated into an operational time Λ (frozen while
    refractory), and a spike is emitted each time Λ passes a Gamma(k, 1/k) increment. Draws: stream 0 at slot
    boundaries (and the first renewal increment), stream 1 at spikes. The key, the chunk's first step and the
    model's parameters are shared constants of the group, so one compiled object serves every run.
    """
    now = "timestep(t, sim_dt)"
    # step0: the absolute step of the neuron's first local step; lat: its unit (several pieces of a chunk can run
    # side by side as stack·n_lat neurons, neuron i playing unit i % n_lat of one piece)
    shared = "rng_key : 1 (shared, constant)\nstep0 : 1 (constant)\nlat : 1 (constant)\n"

    def draw(stream):
        return f"spikevae_uniform(rng_key, lat, {now} + step0, {stream})"

    if kind in ("poisson", "refractory"):
        # p: Bernoulli probability per step; gap to the next spiking step ~ Geometric(p)
        # (capped at 1e9 steps, far beyond a chunk, because Brian's floor() returns a 32-bit integer)
        def geo(stream):
            return f"floor(clip(log({draw(stream)}) / (log(clip(1 - p, 1e-300, 1)) - 1e-300), 0, 1e9))"

        eqs = shared + "next_step : 1\np = clip(stim(t, i) * sim_dt, 0, 1) : 1"
        if kind == "poisson":
            G = b2.NeuronGroup(K, eqs, threshold=f"{now} >= next_step", reset=f"next_step = {now} + 1 + {geo(1)}",
                               dt=dt * b2.second, namespace=ns, name="pvae_units")
            boundary = f"next_step = {now} + {geo(0)}"
        else:  # ref_end: the first step at which the unit may spike again
            G = b2.NeuronGroup(K, eqs + "\nref_steps : 1 (shared, constant)\nref_end : 1",
                               threshold=f"{now} >= next_step",
                               reset=f"ref_end = {now} + ref_steps\nnext_step = ref_end + {geo(1)}",
                               dt=dt * b2.second, namespace=ns, name="pvae_units")
            boundary = f"next_step = clip(ref_end, {now}, 1e300) + {geo(0)}"
        G.next_step = 1e300
        G.lat = f"i % {n_lat or K}"
        G.run_regularly(boundary, dt=slot_steps * dt * b2.second, when="start", name="pvae_slot_boundary")
        return G
    # gamma renewal of order k: events of a Poisson process at k·ν in operational time Λ = ∫ν dt; every k-th event
    # is a spike (event counter c; SpikeMonitor keeps c, and the spikes are the events with c = k − 1).
    # Λ is frozen for the refractory period after a spike (until step ref_end). A run that does not continue an
    # earlier chunk (has_carry 0) draws its first increment at its first step.
    G = b2.NeuronGroup(K, shared + "ref_steps : 1 (shared, constant)\nk_order : 1 (shared, constant)\n"
                       "has_carry : 1 (shared, constant)\n"
                       f"dLam/dt = stim(t, i) * int({now} >= ref_end) : 1\nnext_L : 1\nc : 1\nref_end : 1",
                       threshold="Lam >= next_L",
                       reset=f"ref_end = {now} + ref_steps * int(c >= k_order - 1)\nc = (c + 1) * int(c < k_order - 1)\n"
                             f"next_L = Lam - log(1 - {draw(1)}) / k_order",
                       method="euler", dt=dt * b2.second, namespace=ns, name="pvae_units")
    G.lat = f"i % {n_lat or K}"
    G.run_regularly(f"next_L = has_carry * next_L + (1 - has_carry) * (Lam - log(1 - {draw(0)}) / k_order)",
                    dt=(n_steps + 1) * dt * b2.second, when="start", name="pvae_renewal_start")  # once, at the start
    return G


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


class PoissonRun:
    """A Poisson-layer run prepared chunk by chunk: what :func:`simulate_poisson` does, without holding it.

    ``lam`` (m, K) are expected counts per stimulus and ``index`` (n,) the row shown at each presentation
    (default: one row per presentation). :meth:`chunks` yields ``(p0, p1, unit, step)`` for presentations
    ``p0 .. p1`` (absolute time steps; the last chunk runs to the end of the last response); :attr:`target`
    is the Brian2 target used, :attr:`notes` what the run had to say. Memory is one chunk, whatever ``n``.
    """

    def __init__(self, lam: np.ndarray, cfg: PoissonLayerConfig, seed: int = 0, index: np.ndarray | None = None,
                 stimulus: np.ndarray | None = None, repeat: np.ndarray | None = None):
        from ._streams import stream_key

        self.cfg = cfg.validate()
        lam = _check_expected(lam)
        if index is not None:
            index = np.asarray(index, dtype=np.int64)
            if index.ndim != 1 or not len(index) or index.min() < 0 or index.max() >= len(lam):
                raise ArgumentError(f"presentation index must be (n,) rows of the {len(lam)} rates")
        model = cfg.spikes
        # shared gains: one stream for the whole run, whatever the chunking
        self.sched = sched = drive_schedule(lam, cfg.window, cfg.dt, model, np.random.default_rng([seed, 0x5A1E]),
                                            index)
        self.n, self.n_units = len(sched), sched.n_units
        w, g = cfg.steps(cfg.window, "window"), cfg.steps(cfg.gap, "gap")
        self.window_steps, self.period = w, w + g
        self.total = self.n * self.period + sched.latency_steps  # the last response ends one latency after the last window
        on = np.arange(self.n) * self.period * cfg.dt
        self.stimulus = sched.index.copy() if stimulus is None else np.asarray(stimulus, dtype=np.int64)
        self.repeat = np.zeros(self.n, dtype=np.int64) if repeat is None else np.asarray(repeat, dtype=np.int64)
        self.onset, self.offset = on, on + w * cfg.dt
        self.key = stream_key(seed)
        self.notes: list = list(sched.notes)
        self.target = None
        stats = [_dt_stats(self._peak_hz(a, b) * cfg.dt, cfg.p_warn) for a, b in sched.blocks()]
        msg = _dt_message(_merge_dt_stats(stats), cfg, self.n_units)
        if msg:
            self.notes.append(msg)
        for note in self.notes:
            log.warning(note)

    def _peak_hz(self, a: int, b: int) -> np.ndarray:
        """Peak drive of presentations a..b (what one Bernoulli draw per step must carry), Hz."""
        model, sched = self.cfg.spikes, self.sched
        if model.is_plain:
            return rates_hz(sched.expected(slice(a, b)), self.cfg.window)
        peak = sched.evoked_hz(slice(a, b)) * sched.kernel.max() + model.spontaneous_hz
        if model.refractory and model.correct_refractory:
            drive, _ = refractory_drive(peak, model.refractory, self.cfg.dt)
            peak = np.where(peak * max(model.refractory - self.cfg.dt, 0.0) >= 0.99, 0.0, drive)  # reported apart
        return peak

    def presentations(self, expected=None) -> Presentations:
        """The presentation table (``expected``: default, every row computed in memory)."""
        return Presentations(self.stimulus, self.repeat, self.onset, self.offset,
                             self.sched.expected() if expected is None else expected)

    def meta(self) -> dict:
        """What the run adds to a record's provenance."""
        info = {"target": self.target, "notes": self.notes}
        if not self.cfg.spikes.is_plain:
            info.update(spike_model=dataclasses.asdict(self.cfg.spikes), hz_per_lambda=self.sched.hz_per_lambda,
                        response_latency_s=self.sched.latency_steps * self.cfg.dt)
        return info

    def chunks(self, progress: bool = False, build_dir: str | os.PathLike | None = None, workers: int = 1,
               scheduler: str | None = None):
        """Yield ``(p0, p1, unit, step)`` per chunk of presentations, in order, spikes time-sorted (absolute steps).

        ``workers`` > 1 runs the chunks in that many local processes, ``scheduler`` on the Dask cluster at
        that address; the spikes are those of a serial run. A spike model that carries state from one chunk
        to the next (refractoriness, gamma renewal) runs its chunks one after another."""
        cfg, n, period = self.cfg, self.n, self.period
        if workers < 1:
            raise ArgumentError(f"workers must be >= 1, got {workers}")
        if (workers > 1 or scheduler) and n > 1:
            if _unit_kind(cfg.spikes) == "poisson":
                yield from self._parallel_chunks(progress, build_dir, workers, scheduler)
                return
            note = ("the spike model carries state across chunks (refractoriness or renewal), so its chunks run one "
                    "after another (--workers and --scheduler apply to the plain Poisson layer)")
            self.notes.append(note)
            log.warning(note)
        targets = _AUTO_ORDER if cfg.target == "auto" else (cfg.target,)
        carry = None  # what each unit remembers across a chunk boundary (refractoriness, renewal state)
        starts = range(0, n, cfg.chunk)
        for s0 in tqdm(starts, disable=not progress or len(starts) == 1, desc="brian2", unit="chunk"):
            s1 = min(n, s0 + cfg.chunk)
            a, b = s0 * period, (self.total if s1 >= n else s1 * period)
            table, slot = _chunk_table(self.sched, cfg, a, b)
            while True:
                tgt = self.target or targets[0]
                try:
                    u, st, state = _brian_chunk(table, slot, b - a, cfg.dt, self.key, a, tgt,
                                                build_dir, cfg.spikes, carry)
                    self.target = tgt
                    break
                except RunInterrupted:
                    raise
                except Exception as exc:  # noqa: BLE001 - a target that cannot build falls back
                    if self.target is not None or cfg.target != "auto" or tgt == targets[-1]:
                        raise
                    targets = targets[targets.index(tgt) + 1:]
                    self._fell_back(tgt, targets[0], exc)
            carry = state
            u, st = _time_ordered(u, st)
            yield s0, s1, u, st + a

    def _plan(self, size: int) -> list:
        """Chunks of ``size`` presentations: (p0, p1, first absolute step, last)."""
        out = []
        for s0 in range(0, self.n, size):
            s1 = min(self.n, s0 + size)
            out.append((s0, s1, s0 * self.period, self.total if s1 >= self.n else s1 * self.period))
        return out

    def _parallel_chunks(self, progress: bool, build_dir, workers: int, scheduler: str | None):
        """:meth:`chunks` with the chunks run in ``workers`` local processes or on a Dask cluster, yielded in order.

        Chunks of a Poisson layer without carried state are independent (every draw is a function of the key,
        unit and absolute step), so each chunk's spikes are those of a serial run. The target is settled (and
        a cpp_standalone project built) here first; a chunk that fails in a worker is reported and run again
        here; a second failure names the chunk."""
        import collections
        import concurrent.futures
        import multiprocessing

        cfg = self.cfg
        size = cfg.chunk
        while size > 1 and -(-self.n // size) < 4 * workers:  # enough chunks to keep every worker busy
            size //= 2
        plan = self._plan(size)
        target = self._settle_target(plan[0], build_dir)
        client = pool = None
        if scheduler:
            from dask.distributed import Client

            client = Client(scheduler, timeout="20s")

            def submit(*args):
                return client.submit(_chunk_job, *args, pure=False)
            workers = max(workers, len(client.scheduler_info().get("workers", {})) or 1)
        else:
            # fork where there is one: spawn would re-run a user's script that lacks a __main__ guard
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            if target != "cpp_standalone" and method == "fork":
                # Brian2 opens its debug log files at import and removes them at exit, which forked workers skip
                # (they end with os._exit): imported here, the files are this process's and are removed
                import brian2  # noqa: F401
            pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))

            def submit(*args):
                return pool.submit(_chunk_job, *args)

        def job(k):
            s0, s1, a, b = plan[k]
            table, slot = _chunk_table(self.sched, cfg, a, b)
            return (table, slot, b - a, cfg.dt, self.key, a, target, None if build_dir is None else str(build_dir),
                    cfg.spikes)

        pending = collections.deque()
        finished = False
        try:
            nxt = 0
            for k in tqdm(range(len(plan)), disable=not progress or len(plan) == 1, desc=f"brian2 x{workers}",
                          unit="chunk"):
                while nxt < len(plan) and len(pending) < 2 * workers:
                    try:
                        pending.append(submit(*job(nxt)))
                    except Exception as exc:  # noqa: BLE001 - the pool broke (a worker died): the rest run here
                        pending.append(exc)
                    nxt += 1
                fut = pending.popleft()
                s0, s1, a, _ = plan[k]
                try:
                    if isinstance(fut, Exception):
                        raise fut
                    u, st = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker failed or died: rerun the chunk here
                    note = (f"chunk {k + 1} of {len(plan)} (presentations {s0}-{s1 - 1}) failed in a worker "
                            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                            "running it again here")
                    log.warning(note)
                    self.notes.append(note)
                    try:
                        u, st = _chunk_job(*job(k))
                    except Exception as again:
                        raise RuntimeError(f"chunk {k + 1} of {len(plan)} (presentations {s0}-{s1 - 1}) failed twice: "
                                           f"{again}") from None
                yield s0, s1, u.astype(np.int64), st + a
            finished = True
        finally:
            for fut in pending:
                if not isinstance(fut, Exception):
                    fut.cancel()
            if pool is not None:
                if not finished:  # interrupted, failed or abandoned: stop the workers' chunks now, not at their end
                    for proc in list((getattr(pool, "_processes", None) or {}).values()):
                        proc.terminate()
                pool.shutdown(wait=True, cancel_futures=True)
            if client is not None:
                client.close()

    def _settle_target(self, chunk: tuple, build_dir) -> str:
        """The target parallel chunks use: cpp_standalone when its project builds here (built now, once), else the
        next of ``auto``'s order."""
        cfg = self.cfg
        targets = _AUTO_ORDER if cfg.target == "auto" else (cfg.target,)
        if targets[0] == "cpp_standalone":
            _, _, a, b = chunk
            try:
                _prepare_standalone(self.n_units, _slot_steps(cfg, self.sched), b - a, cfg.dt, cfg.spikes, build_dir)
            except Exception as exc:  # noqa: BLE001 - cannot build here: fall back as chunks() does
                if len(targets) == 1:
                    raise
                targets = targets[1:]
                self._fell_back("cpp_standalone", targets[0], exc)
        self.target = targets[0]
        return self.target

    def _fell_back(self, target: str, instead: str, exc: Exception) -> None:
        """Record (in the run's notes and the log) that ``target`` failed here and ``instead`` runs the chunks."""
        first = str(exc).strip().splitlines()
        note = (f"Brian2 target {target} did not work here ({type(exc).__name__}: {first[0] if first else ''}); "
                f"using {instead}")
        self.notes.append(note)
        log.warning(note)

    def window_counts(self, p0: int, p1: int, unit: np.ndarray, step: np.ndarray) -> tuple[int, np.ndarray]:
        """Counts of a chunk's spikes in the response windows they fall in: ``(k0, counts)`` for presentations
        ``k0 .. k0 + len(counts)`` (a response may spill into the next chunk by the latency). The counting rule
        of :meth:`SpikeTrains.counts`, on the integer step grid."""
        L, w, period = self.sched.latency_steps, self.window_steps, self.period
        k0 = max(0, p0 - (L + period - 1) // period)
        rel = step - L
        k = np.floor_divide(rel, period)
        ok = (rel >= 0) & (rel - k * period < w) & (k < self.n)
        out = np.zeros((p1 - k0, self.n_units), dtype=np.int64)
        np.add.at(out, (k[ok] - k0, unit[ok]), 1)
        return k0, out

    def complete_before(self, p1: int) -> int:
        """Presentations below this index have all their response window simulated once chunks up to p1 have run."""
        if p1 >= self.n:
            return self.n
        end = p1 * self.period
        L, w, period = self.sched.latency_steps, self.window_steps, self.period
        return max(0, min(self.n, (end - L - w) // period + 1))


def simulate_poisson(expected: np.ndarray, cfg: PoissonLayerConfig, seed: int = 0, progress: bool = False,
                     build_dir: str | os.PathLike | None = None, stimulus: np.ndarray | None = None,
                     repeat: np.ndarray | None = None, meta: dict | None = None,
                     index: np.ndarray | None = None, workers: int = 1, scheduler: str | None = None) -> SpikeTrains:
    """Simulate Poisson neurons driven by expected counts per presentation.

    Parameters
    ----------
    expected : ndarray (n_presentations, K)
        λ, expected spike count of each unit in each presentation window (≥ 0, finite); with ``index``,
        one row per stimulus instead.
    cfg : PoissonLayerConfig
    seed : int
        Root seed; every draw is a function of (seed, unit, time step), so the spikes do not depend on the
        target or on ``cfg.chunk``.
    progress : bool
        tqdm progress bar over chunks.
    build_dir : path, optional
        cache of compiled cpp_standalone projects (default: ``$SPIKEVAE_CACHE`` or ``~/.cache/spikevae``).
    stimulus, repeat : ndarray (n_presentations,) int, optional
        The presentation table's stimulus index and repeat number (default: ``index`` or 0..n-1, and 0).
    meta : dict, optional
        Provenance stored in the record; ``target`` (the Brian2 target used) and ``notes`` (what the
        run had to say: fallbacks, rates too high for dt) are added.
    index : ndarray (n_presentations,) int, optional
        Row of ``expected`` shown at each presentation.
    workers, scheduler
        Run the chunks in ``workers`` local processes, or on the Dask scheduler at this address
        (:meth:`PoissonRun.chunks`); the spikes do not change.

    Returns
    -------
    SpikeTrains
        Counting rule: :meth:`SpikeTrains.counts`.
    """
    run = PoissonRun(expected, cfg, seed, index, stimulus, repeat)
    units, steps = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for _, _, u, st in run.chunks(progress, build_dir, workers, scheduler):
        units.append(u)
        steps.append(st)
    return SpikeTrains(np.concatenate(units), np.concatenate(steps) * cfg.dt, run.n_units, run.total * cfg.dt, cfg.dt,
                       run.presentations(), {**(meta or {}), **run.meta()})


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
