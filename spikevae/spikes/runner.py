"""Running the Brian2 Poisson layer: a run planned chunk by chunk, serially or in parallel, and its spikes.

:class:`PoissonRun` prepares a run of expected counts λ per presentation (the drive schedule of the spike
options, the presentation table, the rate-dt checks) and yields its spikes chunk by chunk (:meth:`PoissonRun.chunks`:
in this process, in local worker processes or on a Dask cluster; the spikes are those of a serial run).
:func:`simulate_poisson` and :func:`simulate_spikes` collect a whole run into a :class:`SpikeTrains`;
:func:`poisson_spikes_numpy` is the exact continuous-time baseline of the benchmarks. The networks themselves
are :mod:`spikevae.brian.poisson`'s; the same seed gives the same spikes on every target and for any chunking.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os

import numpy as np
from tqdm.auto import tqdm

from .._resources import bounded_workers, die_with_parent
from ..brian import before_fork
from ..brian.poisson import prepare_standalone, run_chunk, unit_kind
from ..errors import ArgumentError, RunInterrupted
from ..records import Presentations, SpikeTrains, window_counts, window_index
from .config import _AUTO_ORDER, PoissonLayerConfig, _dt_message, _dt_stats, _merge_dt_stats, rates_hz
from .plan import _check_expected, _chunk_table, _presentations, _slot_steps, _time_ordered
from .spike_model import SpikeModel, drive_schedule, refractory_drive

__all__ = ["PoissonRun", "simulate_poisson", "simulate_spikes", "poisson_spikes_numpy"]

log = logging.getLogger(__name__)


def _chunk_job(table, slot_steps, n_steps, dt, key, step0, target, build_dir, model):
    """One chunk without carried state, in a worker: its spikes (unit int32, local step) sorted by time."""
    u, st, _ = run_chunk(table, slot_steps, n_steps, dt, key, step0, target, build_dir, model, None)
    u, st = _time_ordered(u, st)
    return u.astype(np.int32), st


@contextlib.contextmanager
def _executor(scheduler: str | None, workers: int, target: str):
    """``(submit, workers)`` for chunk jobs: a Dask client at ``scheduler`` (as many workers as it has), or a pool of
    ``workers`` local processes (forked where the OS can: spawn would re-run a user's script that lacks a
    ``__main__`` guard). On exit the pool is shut down; when the block did not finish (an interrupt, an error,
    an abandoned generator) its workers are terminated at once, not at the end of their chunks."""
    import concurrent.futures
    import multiprocessing

    if scheduler:
        from dask.distributed import Client

        client = Client(scheduler, timeout="20s")
        try:
            yield (lambda *args: client.submit(_chunk_job, *args, pure=False),
                   max(workers, len(client.scheduler_info().get("workers", {})) or 1))
        finally:
            client.close()
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if target != "cpp_standalone" and method == "fork":
        before_fork()
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                                  initializer=die_with_parent)
    finished = False
    try:
        yield (lambda *args: pool.submit(_chunk_job, *args)), workers
        finished = True
    finally:
        if not finished:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


class PoissonRun:
    """A Poisson-layer run prepared chunk by chunk: what :func:`simulate_poisson` does, without holding it.

    ``rates`` (m, K) are λ, the expected counts per window of each stimulus, and ``index`` (n,) the row shown at each presentation
    (default: one row per presentation). :meth:`chunks` yields ``(p0, p1, unit, step)`` for presentations
    ``p0 .. p1`` (absolute time steps; the last chunk runs to the end of the last response); :attr:`target`
    is the Brian2 target used, :attr:`notes` what the run had to say. Memory is one chunk, whatever ``n``.
    """

    def __init__(self, rates: np.ndarray, cfg: PoissonLayerConfig, seed: int = 0, index: np.ndarray | None = None,
                 stimulus: np.ndarray | None = None, repeat: np.ndarray | None = None):
        from ..brian._streams import stream_key

        self.cfg = cfg.validate()
        rates = _check_expected(rates)
        if index is not None:
            index = np.asarray(index, dtype=np.int64)
            if index.ndim != 1 or not len(index) or index.min() < 0 or index.max() >= len(rates):
                raise ArgumentError(f"presentation index must be (n,) rows of the {len(rates)} rates")
        model = cfg.spikes
        # shared gains: one stream for the whole run, whatever the chunking
        self.sched = sched = drive_schedule(rates, cfg.window, cfg.dt, model, np.random.default_rng([seed, 0x5A1E]),
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
        """Peak event rate of presentations a..b (what one Bernoulli draw per step must carry: the drive, times k
        for gamma-renewal events), Hz."""
        model, sched = self.cfg.spikes, self.sched
        if model.is_plain:
            return rates_hz(sched.expected(slice(a, b)), self.cfg.window)
        peak = sched.evoked_hz(slice(a, b)) * sched.kernel.max() + model.spontaneous_hz
        if model.refractory and model.correct_refractory:
            drive, _ = refractory_drive(peak, model.refractory, self.cfg.dt)
            peak = np.where(peak * max(model.refractory - self.cfg.dt, 0.0) >= 0.99, 0.0, drive)  # reported apart
        return peak * model.gamma_order

    @property
    def index(self) -> np.ndarray:
        """Row of the rate table shown at each presentation (n,)."""
        return self.sched.index

    @property
    def hz_per_lambda(self) -> float:
        """The time base: Hz of evoked drive per unit of λ."""
        return self.sched.hz_per_lambda

    @property
    def latency_steps(self) -> int:
        """Response latency after each onset, steps."""
        return self.sched.latency_steps

    def expected(self, rows=slice(None)) -> np.ndarray:
        """Expected counts in the response windows of presentations ``rows`` (what drove the units)."""
        return self.sched.expected(rows)

    def blocks(self, size: int = 4096):
        """(first, stop) presentation ranges of at most ``size``: the expected counts computed a block at a time."""
        return self.sched.blocks(size)

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
            if unit_kind(cfg.spikes) == "poisson":
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
            table, slot, hist = _chunk_table(self.sched, cfg, a, b)
            while True:
                tgt = self.target or targets[0]
                try:
                    u, st, state = run_chunk(table, slot, b - a, cfg.dt, self.key, a, tgt,
                                                build_dir, cfg.spikes, carry, hist)
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

        cfg = self.cfg
        if not scheduler:  # local processes: no more than the cores (a cluster's size is its own)
            workers = bounded_workers(workers, self.n)
        size = cfg.chunk
        while size > 1 and -(-self.n // size) < 4 * workers:  # enough chunks to keep every worker busy
            size //= 2
        plan = self._plan(size)
        if not scheduler:
            workers = bounded_workers(workers, len(plan))
        target = self._settle_target(plan[0], build_dir)

        def job(k):
            s0, s1, a, b = plan[k]
            table, slot, _ = _chunk_table(self.sched, cfg, a, b)  # the plain layer: no history rows
            return (table, slot, b - a, cfg.dt, self.key, a, target, None if build_dir is None else str(build_dir),
                    cfg.spikes)

        pending = collections.deque()
        with _executor(scheduler, workers, target) as (submit, workers):
            nxt = 0
            for k in tqdm(range(len(plan)), disable=not progress or len(plan) == 1, desc=f"brian2 x{workers}",
                          unit="chunk"):
                while nxt < len(plan) and len(pending) < 2 * workers:
                    try:
                        pending.append(submit(*job(nxt)))
                    except Exception as exc:  # noqa: BLE001 - the pool broke (a worker died): the rest run here
                        pending.append(exc)
                    nxt += 1
                s0, s1, a, _ = plan[k]
                u, st = self._collect(pending.popleft(), k, len(plan), s0, s1, lambda k=k: _chunk_job(*job(k)))
                yield s0, s1, u.astype(np.int64), st + a
            for fut in pending:
                if not isinstance(fut, Exception):
                    fut.cancel()

    def _collect(self, fut, k: int, n_chunks: int, s0: int, s1: int, again) -> tuple:
        """A chunk's result from its worker, or, when the worker failed or died, from ``again()`` here (noted)."""
        try:
            if isinstance(fut, Exception):
                raise fut
            return fut.result()
        except Exception as exc:  # noqa: BLE001 - a worker failed or died: rerun the chunk here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            note = (f"chunk {k + 1} of {n_chunks} (presentations {s0}-{s1 - 1}) failed in a worker "
                    f"({type(exc).__name__}: {first}); running it again here")
            log.warning(note)
            self.notes.append(note)
            try:
                return again()
            except Exception as twice:
                raise RuntimeError(f"chunk {k + 1} of {n_chunks} (presentations {s0}-{s1 - 1}) failed twice: "
                                   f"{twice}") from None

    def _settle_target(self, chunk: tuple, build_dir) -> str:
        """The target parallel chunks use: cpp_standalone when its project builds here (built now, once), else the
        next of ``auto``'s order."""
        cfg = self.cfg
        targets = _AUTO_ORDER if cfg.target == "auto" else (cfg.target,)
        if targets[0] == "cpp_standalone":
            _, _, a, b = chunk
            try:
                prepare_standalone(self.n_units, _slot_steps(cfg, self.sched), b - a, cfg.dt, cfg.spikes, build_dir)
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
        of :meth:`SpikeTrains.counts` (:func:`~spikevae.records.window_index`)."""
        L, period, dt = self.sched.latency_steps, self.period, self.cfg.dt
        k0 = max(0, p0 - (L + period - 1) // period)
        k = window_index(step * dt, self.onset[k0:p1], self.offset[k0:p1], dt, L * dt)
        return k0, window_counts(unit, k, p1 - k0, self.n_units)

    def complete_before(self, p1: int) -> int:
        """Presentations below this index have all their response window simulated once chunks up to p1 have run."""
        if p1 >= self.n:
            return self.n
        end = p1 * self.period
        L, w, period = self.sched.latency_steps, self.window_steps, self.period
        return max(0, min(self.n, (end - L - w) // period + 1))


def simulate_poisson(rates: np.ndarray, cfg: PoissonLayerConfig, seed: int = 0, progress: bool = False,
                     build_dir: str | os.PathLike | None = None, stimulus: np.ndarray | None = None,
                     repeat: np.ndarray | None = None, meta: dict | None = None,
                     index: np.ndarray | None = None, workers: int = 1, scheduler: str | None = None) -> SpikeTrains:
    """Simulate Poisson neurons driven by expected counts per presentation.

    Parameters
    ----------
    rates : ndarray (n_presentations, K)
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
        Row of ``rates`` shown at each presentation.
    workers, scheduler
        Run the chunks in ``workers`` local processes, or on the Dask scheduler at this address
        (:meth:`PoissonRun.chunks`); the spikes do not change.

    Returns
    -------
    SpikeTrains
        Counting rule: :meth:`SpikeTrains.counts`.
    """
    run = PoissonRun(rates, cfg, seed, index, stimulus, repeat)
    units, steps = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for _, _, u, st in run.chunks(progress, build_dir, workers, scheduler):
        units.append(u)
        steps.append(st)
    return SpikeTrains(np.concatenate(units), np.concatenate(steps) * cfg.dt, run.n_units, run.total * cfg.dt, cfg.dt,
                       run.presentations(), {**(meta or {}), **run.meta()})


def simulate_spikes(rates: np.ndarray, window: float = 0.1, gap: float = 0.0, dt: float = 1e-4, target: str = "auto",
                    seed: int = 0, *, spikes: SpikeModel | str | None = None, chunk: int = 2000,
                    stimulus: np.ndarray | None = None, repeat: np.ndarray | None = None, meta: dict | None = None,
                    progress: bool = False) -> SpikeTrains:
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
    spikes : SpikeModel or str, optional
        The spike-generation settings (:class:`~spikevae.spikes.spike_model.SpikeModel`: time base, spontaneous
        rate, latency and onset transient, refractoriness, gamma-renewal order, shared gain) or the name of a
        preset (``'cortex'``, ``'poisson'``; :data:`~spikevae.spikes.spike_model.PRESETS`). None: the plain
        Poisson layer.
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
    >>> st = simulate_spikes(np.full((10, 3), 2.0), window=0.02, target="numpy", seed=1)
    >>> st.counts().shape
    (10, 3)
    >>> cortex = simulate_spikes(np.full((3, 3), 4.0), window=0.1, target="numpy", seed=1, spikes="cortex")
    >>> bool((np.diff(cortex.time[cortex.unit == 0]) >= 0.002 - 1e-9).all())  # its 2 ms refractory period
    True
    """
    if isinstance(spikes, str):
        from .spike_model import PRESETS

        if spikes not in PRESETS:
            raise ArgumentError(f"unknown spike preset {spikes!r}; presets: {', '.join(sorted(PRESETS))}")
        spikes = PRESETS[spikes]
    cfg = PoissonLayerConfig(window=window, gap=gap, dt=dt, target=target, chunk=chunk, spikes=spikes or SpikeModel())
    return simulate_poisson(rates, cfg, seed, progress=progress, stimulus=stimulus, repeat=repeat, meta=meta)


def poisson_spikes_numpy(rates: np.ndarray, cfg: PoissonLayerConfig, rng: np.random.Generator) -> SpikeTrains:
    """Exact continuous-time Poisson spikes in plain numpy (counts ~ Poisson(λ), times uniform in the window).

    The practical speed limit for piecewise-constant rates, used as the baseline in
    ``benchmarks/spiking.py``; times are not on the dt grid.
    """
    expected = _check_expected(rates)
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

