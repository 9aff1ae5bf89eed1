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
from pathlib import Path

import numpy as np

from ..errors import ArgumentError
from ._state import brian_state, quiet_brian, run_checked, runtime_build, two_pass_thresholder

__all__ = ["run_chunk", "unit_kind", "prepare_standalone", "STANDALONE_MAX_SECONDS", "STACK"]

log = logging.getLogger(__name__)


def run_chunk(table: np.ndarray, slot_steps: int, n_steps: int, dt: float, key: int, step0: int, target: str,
                 build_dir: str | None, model,
                 carry: dict | None = None, hist_rows: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run one chunk (absolute steps ``step0`` .. ``step0 + n_steps``) in Brian2.

    ``table``: the rates, one row per slot, its first ``hist_rows`` rows the slots before ``step0`` (what the
    refractory correction looks back on, :func:`history_rows`). Returns spikes as (unit, time step within the
    chunk) and the state the next chunk starts from (``carry``: what a unit remembers across the cut, in
    absolute steps). Every random draw is
    :mod:`spikevae.brian._streams`' function of (key, unit, absolute step, stream), so the spikes do not
    depend on where the run is cut. ``build_dir``: the cache of compiled standalone projects.
    """
    if (table.shape[0] - hist_rows) * slot_steps < n_steps:  # guard the repeat-last-row trap
        raise AssertionError("rate table shorter than the run")
    if target == "cpp_standalone":
        return _standalone_chunk(table, slot_steps, n_steps, dt, model, key, step0, carry, build_dir, hist_rows)
    return _runtime_chunk(table, slot_steps, n_steps, dt, target, model,
                          _unit_values(model, dt, key, step0, carry, hist_rows * slot_steps, n_steps), step0)


def unit_kind(model) -> str:
    """Which network the spike model needs (its parameters are run-time values, not part of the code)."""
    return "renewal" if model.gamma_order > 1 or model.refractory else "poisson"


def history_rows(model, dt: float, slot_steps: int, step0: int) -> int:
    """Rows of the rate table before a chunk that starts at absolute step ``step0``: enough whole slots to cover
    :func:`history_steps`, and none before the run's first step."""
    return min(step0 // slot_steps, _history_capacity(model, dt, slot_steps))


def _history_capacity(model, dt: float, slot_steps: int) -> int:
    """Whole slots that cover :func:`history_steps`: the history rows a rate table (and a compiled project) holds."""
    return -(-history_steps(model, dt) // slot_steps)


def history_steps(model, dt: float) -> int:
    """Steps of rates before a step that the refractory correction looks back on (r − 1 for r refractory
    steps; 0 without the correction)."""
    if not (model.refractory and model.correct_refractory):
        return 0
    return max(int(round(model.refractory / dt)) - 1, 0)


#: state variables of each network kind that a unit carries into the next chunk
_CARRIED = {"poisson": (), "renewal": ("Lam", "next_L", "c", "ref_end", "D")}


# ... of which these are held in local steps inside a chunk and carried in absolute steps
_ABSOLUTE = ("ref_end",)


def _unit_values(model, dt: float, key: int, step0: int, carry: dict | None, hist_steps: int = 0,
                 n_steps: int = 0) -> dict:
    """Initial values of the units' variables for one chunk of ``n_steps``: the run's key, the chunk's first
    absolute step, the model's parameters, the carried state (local steps) and the steps of history the rate
    table holds before the chunk's first step."""
    kind = unit_kind(model)
    values = {"rng_key": float(key), "step0": float(step0)}
    if kind == "renewal":
        values.update(ref_steps=float(int(round(model.refractory / dt)) if model.refractory else 0), ref_end=-1.0,
                      k_order=float(model.gamma_order), has_carry=0.0, Lam=0.0, c=0.0, next_L=1e300, D=0.0,
                      corr=float(history_steps(model, dt) > 0), hist_steps=float(hist_steps),
                      n_live=float(n_steps))
    if carry is not None:
        values.update({name: carry[name] - (step0 if name in _ABSOLUTE else 0) for name in _CARRIED[kind]})
        if kind == "renewal":
            values["has_carry"] = 1.0
    return values


@quiet_brian
def _runtime_chunk(table, slot_steps, n_steps, dt, target, model, values, step0):
    from ._streams import uniform_function

    K, kind = table.shape[1], unit_kind(model)
    rows = _ladder(len(table))  # Brian2's Cython TimedArray bakes the table's shape into its code: a few lengths
    if rows > len(table):  # compile once and serve every run (the padded slots lie past the run, never read)
        table = np.vstack([table, np.zeros((rows - len(table), K))])
    with runtime_build(target) as b2:
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


def _standalone_chunk(table, slot_steps, n_steps, dt, model, key, step0, carry, build_dir, hist_rows=0):
    """One chunk with the cached cpp_standalone binary of its code shape (built on first use): the rate table,
    key, offset, parameters and carried state are run-time arguments. The binary runs a ladder length of
    whole slots; the rows past the chunk are silent, so nothing past ``n_steps`` spikes or changes a unit.
    A chunk longer than :data:`STANDALONE_MAX_SECONDS` runs as consecutive pieces of whole slots, each with the
    rows of history its refractory correction looks back on."""

    K, kind = table.shape[1], unit_kind(model)
    rows, piece = -(-n_steps // slot_steps), _piece_rows(slot_steps, dt)
    if kind == "poisson" and rows > 1:
        return _stacked_chunk(table[hist_rows:], slot_steps, n_steps, dt, key, step0, build_dir, rows, piece)
    need = _history_capacity(model, dt, slot_steps)
    units, times = [], []
    for r0 in range(0, rows, piece):
        r1 = min(rows, r0 + piece)
        n_sub = min(n_steps, r1 * slot_steps) - r0 * slot_steps
        rows_bin, folder, manifest = _standalone_project(K, slot_steps, n_sub, dt, kind, build_dir, history=need)
        h = min(need, hist_rows + r0)  # history rows there are before this piece
        padded = np.zeros((need + rows_bin + 1, K))
        padded[:h + r1 - r0] = table[hist_rows + r0 - h:hist_rows + r1]
        s0 = step0 + r0 * slot_steps
        args = {"pvae_rates.values": padded}
        args.update({f"pvae_units.{k}": v for k, v in _unit_values(model, dt, key, s0, carry, h * slot_steps, n_sub).items()})
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


def prepare_standalone(K: int, slot_steps: int, n_steps: int, dt: float, model, build_dir) -> None:
    """Build (if needed) the compiled project a chunk of ``n_steps`` will run: what :func:`_standalone_chunk` uses."""
    kind, rows, piece = unit_kind(model), -(-n_steps // slot_steps), _piece_rows(slot_steps, dt)
    if kind == "poisson" and rows > 1:
        p, M = _stack_plan(rows, piece)
        _standalone_project(K, slot_steps, p * slot_steps, dt, kind, build_dir, M)
    else:
        _standalone_project(K, slot_steps, min(rows, piece) * slot_steps, dt, kind, build_dir,
                            history=_history_capacity(model, dt, slot_steps))


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
                        stack: int = 1, history: int = 0) -> tuple:
    """(rows, folder, manifest) of the cached compiled project that runs ``n_steps`` (rounded up the ladder) of
    ``stack`` pieces of ``K`` units side by side, its rate table holding ``history`` rows before the first step."""
    from ._standalone import cached_project

    rows_bin = _ladder(-(-n_steps // slot_steps))
    n_bin = rows_bin * slot_steps
    spec = {"kind": kind, "units": K, "stack": stack, "slot_steps": slot_steps, "steps": n_bin, "dt": dt}
    if history:
        spec["history_rows"] = history
    folder, manifest = cached_project(
        "poisson_layer", spec,
        lambda d: _build_standalone(d, K, slot_steps, rows_bin + history, n_bin, dt, kind, stack), build_dir)
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
_UNIT_VARIABLES = ("rng_key", "step0", "ref_steps", "k_order", "has_carry", "ref_end", "Lam", "next_L", "c", "D",
                   "corr", "hist_steps", "n_live")


def _neurons(b2, K: int, ns: dict, dt: float, slot_steps: int, n_steps: int, kind: str, n_lat: int | None = None):
    """The NeuronGroup that turns the rate table ``stim(t, i)`` (Hz) into spikes, for a network ``kind``
    (:func:`unit_kind`); its run-time values (:func:`_unit_values`) are set by the caller.

    Poisson: one Bernoulli draw of probability p = rate·dt per step, realised by drawing the geometric number
    of steps to the next spike, redrawn at every slot boundary (memoryless). Renewal (an absolute refractory
    period of r steps, gamma order k, or both): see below; its per-step chance changes within a slot (the
    refractory correction looks back r − 1 steps), so it sums a hazard per step instead. Draws: stream 0 at
    slot boundaries (and the first renewal threshold), stream 1 at spikes, stream 2 for the renewal's starting
    phase. The key, the chunk's first step and the model's parameters are run-time values of the group, so one
    compiled object serves every run.
    """
    now = "timestep(t, sim_dt)"
    # step0: the absolute step of the neuron's first local step; lat: its unit (several pieces of a chunk can run
    # side by side as stack·n_lat neurons, neuron i playing unit i % n_lat of one piece)
    shared = "rng_key : 1 (shared, constant)\nstep0 : 1 (constant)\nlat : 1 (constant)\n"

    def draw(stream):
        return f"spikevae_uniform(rng_key, lat, {now} + step0, {stream})"

    if kind == "poisson":
        # p: Bernoulli probability per step; gap to the next spiking step ~ Geometric(p)
        # (capped at 1e9 steps, far beyond a chunk, because Brian's floor() returns a 32-bit integer)
        def geo(stream):
            return f"floor(clip(log({draw(stream)}) / (log(clip(1 - p, 1e-300, 1)) - 1e-300), 0, 1e9))"

        G = b2.NeuronGroup(K, shared + "next_step : 1\np = clip(stim(t, i) * sim_dt, 0, 1) : 1",
                           threshold=f"{now} >= next_step", reset=f"next_step = {now} + 1 + {geo(1)}",
                           dt=dt * b2.second, namespace=ns, name="pvae_units")
        G.next_step = 1e300
        G.lat = f"i % {n_lat or K}"
        G.run_regularly(f"next_step = {now} + {geo(0)}", dt=slot_steps * dt * b2.second, when="start",
                        name="pvae_slot_boundary")
        return G
    # renewal (refractoriness, gamma order k): events of a Bernoulli process, at most one per step, of probability
    # q = k·ν·dt / (1 − D) while the unit is not refractory, realised as the steps where the summed hazard
    # Λ = Σ −log(1 − q) passes an Exp(1) threshold (a draw at each event, none per step); every k-th event is a
    # spike (event counter c; SpikeMonitor keeps c, and the spikes are the events with c = k − 1), after which Λ
    # is frozen for the r − 1 steps before ref_end. D = Σ_{j=1}^{r−1} ν(t − j·dt)·dt, the spikes the unit is
    # asked for in the steps a spike now would make it miss, is the refractory correction: with k = 1 the chance
    # of a spike at a step is then exactly ν·dt (P(not refractory) = 1 − D when every earlier step met its rate),
    # from the first step of every window whatever came before. The table holds hist_steps of history before
    # the chunk's first step, for the look-back; D stops at step n_live (the chunk's end, where a compiled run
    # of a ladder length goes on through silent rows), so it is carried as it stood there. A run that does not
    # continue an earlier chunk (has_carry 0) draws its first threshold and a uniform phase c ∈ {0, …, k − 1}
    # (the stationary one) at its first step.
    look = "(timestep(t, sim_dt) + hist_steps + 0.5)"  # mid-step: no rounding at a slot's edge on any target
    G = b2.NeuronGroup(K, shared + "ref_steps : 1 (shared, constant)\nk_order : 1 (shared, constant)\n"
                       "has_carry : 1 (shared, constant)\ncorr : 1 (shared, constant)\n"
                       "hist_steps : 1 (shared, constant)\nn_live : 1 (shared, constant)\n"
                       f"nu = stim({look} * sim_dt, i) : Hz\n"
                       f"nu_old = stim(({look} - ref_steps + 1) * sim_dt, i) * "
                       f"int({now} + step0 >= ref_steps - 1) : Hz\n"
                       "q = clip(k_order * nu * sim_dt / clip(1 - corr * D, 1e-12, 1), 0, 1 - 1e-12) : 1\n"
                       f"dLam/dt = -log(1 - q) / sim_dt * int({now} >= ref_end) : 1\n"
                       f"dD/dt = corr * (nu - nu_old) * int({now} < n_live) : 1\nnext_L : 1\nc : 1\nref_end : 1",
                       threshold="Lam >= next_L",
                       reset=f"ref_end = {now} + ref_steps * int(c >= k_order - 1)\nc = (c + 1) * int(c < k_order - 1)\n"
                             f"next_L = Lam - log(1 - {draw(1)})",
                       method="euler", dt=dt * b2.second, namespace=ns, name="pvae_units")
    G.lat = f"i % {n_lat or K}"
    G.run_regularly(f"next_L = has_carry * next_L + (1 - has_carry) * (Lam - log(1 - {draw(0)}))\n"
                    f"c = has_carry * c + (1 - has_carry) * floor(k_order * {draw(2)})",
                    dt=(n_steps + 1) * dt * b2.second, when="start", name="pvae_renewal_start")  # once, at the start
    return G

