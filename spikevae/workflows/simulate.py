"""The spine as one call: model → stimuli → rates λ → Brian2 Poisson spikes → files.

:func:`run_simulation` runs it in memory and returns a :class:`SimulationResult`;
:func:`write_simulation` writes that result as ``spikes.nwb``, ``spikes.nix``, ``summary.json`` and
figures. ``python -m spikevae.simulate`` and ``make demo`` are these two calls; a notebook can make
them too.
"""
from __future__ import annotations

import dataclasses
import os
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import ArgumentError
from ..io.files import provenance
from ..records import SpikeTrains
from ..seeds import child_seeds
from ..spikes import PoissonLayerConfig, rates_hz
from ..spikes.producers import repeat_major
from ..stimuli import StimulusSet, make_stimuli
from .run_folder import write_run_files

__all__ = ["SimulationResult", "run_simulation", "rate_producer", "write_simulation", "simulate_to_folder",
           "describe_simulation", "SpilledSpikes"]


class SimulationResult(NamedTuple):
    """Outcome of :func:`run_simulation`."""

    spikes: SpikeTrains  # the spike trains, presentation table and provenance
    stimuli: StimulusSet  # what was shown, in model-input space
    rates: np.ndarray  # λ per stimulus (n_stimuli, K), expected counts per window
    counts: np.ndarray  # spikes per (presentation, unit) window (SpikeTrains.counts)
    summary: dict  # numbers printed and written to summary.json

    def __repr__(self) -> str:
        return (f"SimulationResult({self.spikes!r}, {len(self.stimuli.images)} {self.stimuli.kind} stimuli, "
                f"rates {self.rates.shape}, counts {self.counts.shape})")


#: presentations whose counts a streamed run keeps for its figures (a fixed bound, whatever the run length)
FIGURE_PRESENTATIONS = 2000


class _Tally:
    """Reduces a run's window counts chunk by chunk to the summary: per-unit counts, decode errors, expected
    spikes; keeps the counts of every presentation (``keep=None``) or of the first ``keep`` ones."""

    def __init__(self, model, images: np.ndarray, lam: np.ndarray, run, layer: PoissonLayerConfig, keep):
        self.model, self.run, self.layer, self.keep = model, run, layer, keep
        self.x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        self.energy = np.square(self.x).sum(1)  # per stimulus
        self.err_rate = np.square(self.x - model.decode(lam).reshape(len(self.x), -1)).sum(1)
        self.pending = np.zeros((0, run.n_units), np.int64)
        self.p_start = 0  # presentation of pending row 0
        self.kept = []
        self.per_unit = np.zeros(run.n_units, np.int64)
        self.err_spk = self.expected = self.n_in = 0.0

    def add(self, k0: int, counts: np.ndarray, done: int):
        """Counts of presentations k0.. from one chunk; presentations below ``done`` are complete."""
        end = k0 + len(counts)
        if end - self.p_start > len(self.pending):
            grown = np.zeros((end - self.p_start, self.pending.shape[1]), np.int64)
            grown[:len(self.pending)] = self.pending
            self.pending = grown
        self.pending[k0 - self.p_start:end - self.p_start] += counts
        n_done = done - self.p_start
        if n_done > 0:
            self._reduce(self.p_start, self.pending[:n_done])
            self.pending = self.pending[n_done:].copy()
            self.p_start = done

    def _reduce(self, k0: int, c: np.ndarray):
        run, layer = self.run, self.layer
        rows = slice(k0, k0 + len(c))
        stim = run.index[rows]
        z = c
        if not layer.spikes.is_plain:  # back to the model's scale: λ̂ = (count − spontaneous) / (Hz per λ · window)
            z = (c - layer.spikes.spontaneous_hz * layer.window) / (run.hz_per_lambda * layer.window)
        self.err_spk += float(np.square(self.x[stim] - self.model.decode(z).reshape(len(c), -1)).sum())
        exp = run.expected(rows)
        self.expected += float(exp.sum())
        self.per_unit += c.sum(0)
        self.n_in += int(c.sum())
        if self.keep is None or k0 < self.keep:
            m = len(c) if self.keep is None else min(len(c), self.keep - k0)
            self.kept.append((c[:m], exp[:m]))

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Kept (counts, expected) of the first presentations."""
        if not self.kept:
            return np.zeros((0, self.run.n_units), np.int64), np.zeros((0, self.run.n_units))
        return np.concatenate([k[0] for k in self.kept]), np.concatenate([k[1] for k in self.kept])

    def reconstruction(self) -> dict:
        stim = self.run.index
        energy = float(self.energy[stim].sum())
        err_rate = float(self.err_rate[stim].sum())
        n = len(stim)
        return {"mse_spikes": self.err_spk / n, "mse_rates": err_rate / n, "patch_energy": energy / n,
                "r2_spikes": 1 - self.err_spk / energy, "r2_rates": 1 - err_rate / energy}


class SpilledSpikes:
    """A run's spikes and expected counts in a temporary HDF5 file: the record a long run writes from.

    Has the fields :func:`spikevae.io.write_nwb` reads (``n_units``, ``t_stop``, ``dt``, ``meta``,
    ``presentations`` with ``expected`` an h5py dataset, :meth:`unit_major`), so the NWB file is written
    by copying datasets, never holding the run in memory.
    """

    def __init__(self, path: Path, n_units: int, dt: float, n_presentations: int):
        import h5py

        self.path, self.n_units, self.dt = Path(path), n_units, dt
        self.h5 = h5py.File(self.path, "w")
        self.unit = self.h5.create_dataset("unit", (0,), "i4", maxshape=(None,), chunks=(1 << 18,))
        self.step = self.h5.create_dataset("step", (0,), "i8", maxshape=(None,), chunks=(1 << 18,))
        self.expected = self.h5.create_dataset("expected", (n_presentations, n_units), "f8",
                                               chunks=(max(1, min(n_presentations, (1 << 17) // n_units)), n_units))
        self.per_unit = np.zeros(n_units, np.int64)
        self.t_stop, self.presentations, self.meta, self._sorted = 0.0, None, {}, None

    def append(self, unit: np.ndarray, step: np.ndarray):
        n0, m = len(self.unit), len(unit)
        self.unit.resize((n0 + m,))
        self.step.resize((n0 + m,))
        self.unit[n0:] = unit
        self.step[n0:] = step
        self.per_unit += np.bincount(unit, minlength=self.n_units)

    @property
    def n_spikes(self) -> int:
        return len(self.unit)

    def unit_major(self):
        """Spike times sorted by unit then time (an h5py dataset), and each unit's end offset: a counting sort
        on disk, block by block (spikes are appended in time order, so each unit's run stays sorted)."""
        if self._sorted is None:
            ends = np.cumsum(self.per_unit)
            out = self.h5.create_dataset("spike_times", (int(ends[-1]) if len(ends) else 0,), "f8")  # contiguous
            cursor = ends - self.per_unit
            block = 1 << 22
            for a in range(0, len(self.unit), block):
                u, t = self.unit[a:a + block], self.step[a:a + block] * self.dt
                order = np.argsort(u, kind="stable")
                u, t = u[order], t[order]
                bounds = np.searchsorted(u, np.arange(self.n_units + 1))
                for k in np.flatnonzero(np.diff(bounds)):
                    seg = t[bounds[k]:bounds[k + 1]]
                    out[cursor[k]:cursor[k] + len(seg)] = seg
                    cursor[k] += len(seg)
            self._sorted = (out, ends)
        return self._sorted

    def load(self) -> SpikeTrains:
        """The whole run as an in-memory record (for writers that need one: Neo)."""
        p = self.presentations
        pres = type(p)(p.stimulus, p.repeat, p.onset, p.offset, self.expected[:])
        return SpikeTrains(self.unit[:].astype(np.int64), self.step[:] * self.dt, self.n_units, self.t_stop, self.dt,
                           pres, self.meta)

    def close(self):
        try:
            self.h5.close()
        finally:
            self.path.unlink(missing_ok=True)


def rate_producer(model, layer: PoissonLayerConfig = PoissonLayerConfig(), device="cpu", workers: int = 1,
                  scheduler: str | None = None):
    """``model`` as a producer of Poisson-layer spikes: a :class:`~spikevae.spikes.producers.RateProducer` as it is,
    else a P-VAE (a loaded model, a checkpoint path, or None for the shipped one) in a
    :class:`~spikevae.spikes.producers.PoissonProducer` on ``layer``.

    A lin|lin checkpoint is read without torch (:mod:`spikevae.models.linear`: its rates are one matrix product, on
    the CPU whatever ``device`` says, unless it is ``'cuda'``); any other is loaded with torch on ``device``
    (``'auto'``: CUDA when available)."""
    from ..spikes.producers import PoissonProducer, RateProducer

    if isinstance(model, RateProducer):
        return model
    layer.validate()
    if model is None or isinstance(model, (str, os.PathLike)):
        from ..models.linear import load_linear

        fast = load_linear(model) if str(device) != "cuda" else None
        if fast is None:
            from ..models.trained import load_model, resolve_device

            fast = load_model(model, resolve_device(device))
        model = fast
    return PoissonProducer(model, layer, workers, scheduler)


def _simulate(producer, stimuli, n_stimuli, repeats, seed, progress, spill_dir=None):
    """The one simulation loop of a rate producer: chunks of Brian2 spikes → a tally, and either memory or a
    spill file."""
    from .._resources import check_memory
    from ..spikes import PoissonRun

    t0 = time.perf_counter()
    layer = producer.layer
    if not 1 <= n_stimuli <= 10**8 or not 1 <= repeats <= 10**8:
        raise ArgumentError(f"n_stimuli and repeats must be between 1 and 1e8, got {n_stimuli} and {repeats}")
    K = producer.n_units
    n_pres = n_stimuli * repeats
    # the presentation table (~64 bytes a presentation); in memory also λ, counts and spikes of every presentation
    held = n_pres * (64.0 + (K * 8.0 * 3 if spill_dir is None else 0))
    check_memory(held + 8.0 * n_stimuli * K * 2 + 8.0 * min(layer.chunk, n_pres) * K * 4,
                 f"{n_stimuli} stimuli x {repeats} repeats x {K} units")
    s_stim, s_spk = child_seeds(seed, 2)
    stim = make_stimuli(stimuli, n_stimuli, producer.preprocessing, s_stim)
    lam = producer.rates(stim.images)
    n = len(stim.images)
    stim_idx, rep = repeat_major(n, repeats)
    meta = {
        **producer.describe(),
        "model": getattr(getattr(producer, "model", None), "name", producer.name),
        "layer_config": dataclasses.asdict(layer),
        "stimuli": stimuli,
        "stimulus_description": stim.description,
        "n_stimuli": n,
        "repeats": repeats,
        "seed": seed,
        "provenance": provenance(seed),
        "run_id": str(uuid.uuid4()),
    }
    meta["spikevae_version"] = meta["provenance"]["packages"].get("spikevae")
    run = PoissonRun(lam, layer, s_spk, index=stim_idx, stimulus=stim_idx, repeat=rep)
    if spill_dir is not None:  # λ of every presentation and the spikes, in the spill file and again in the NWB file
        from ..io import check_free_space

        spikes = float(lam[stim_idx[:min(len(stim_idx), 100_000)]].mean()) * n_pres * K if lam.size else 0.0
        check_free_space(spill_dir, 2 * (8.0 * n_pres * K + 12.0 * spikes) + 16 * 2**20, "this run's spikes")
    tally = _Tally(producer, stim.images, lam, run, layer, None if spill_dir is None else FIGURE_PRESENTATIONS)
    spill = None
    units, steps, first = [], [], []  # in memory: every spike; spilled: those of the first presentations (raster)
    n_raster = min(run.n, 20)
    try:
        if spill_dir is not None:
            spill = SpilledSpikes(Path(spill_dir) / f".spikes-spill-{uuid.uuid4().hex}.h5", K, layer.dt, run.n)
        for p0, p1, u, st in run.chunks(progress, workers=producer.workers, scheduler=producer.scheduler):
            if spill is None:
                units.append(u)
                steps.append(st)
            else:
                spill.append(u.astype(np.int32), st)
                for a, b in run.blocks():
                    if a >= p1:
                        break
                    if b > p0:
                        spill.expected[max(a, p0):min(b, p1)] = run.expected(slice(max(a, p0), min(b, p1)))
                if p0 < n_raster:
                    first.append((u, st))
            tally.add(*run.window_counts(p0, p1, u, st), run.complete_before(p1))
    except BaseException:
        if spill is not None:
            spill.close()
        raise
    info = {**meta, **run.meta()}
    t_stop = run.total * layer.dt
    if spill is None:
        st = SpikeTrains(np.concatenate(units), np.concatenate(steps) * layer.dt, K, t_stop, layer.dt,
                         run.presentations(), info)
        raster = st
    else:
        spill.t_stop, spill.meta = t_stop, info
        spill.presentations = run.presentations(spill.expected)
        st = spill
        raster = _first_presentations(first, run, n_raster, info)
    counts, expected = tally.counts()
    return st, stim, lam, counts, expected, raster, _summary(st, tally, run, stimuli, n, repeats, info, t0)


def _first_presentations(first: list, run, n_raster: int, info: dict) -> SpikeTrains:
    """The spikes of a spilled run's first ``n_raster`` presentations (for its raster), from the chunks' (unit,
    step) arrays kept while the run went to disk."""
    dt = run.cfg.dt
    u = np.concatenate([f[0] for f in first])
    t = np.concatenate([f[1] for f in first]) * dt
    small = run.presentations(np.zeros((run.n, 0)))
    keep = t < small.offset[n_raster - 1] + run.latency_steps * dt
    return SpikeTrains(u[keep], t[keep], run.n_units, run.total * dt, dt, type(small)(
        small.stimulus[:n_raster], small.repeat[:n_raster], small.onset[:n_raster], small.offset[:n_raster],
        np.zeros((n_raster, 0))), info)


def _summary(st, tally: _Tally, run, stimuli: str, n: int, repeats: int, info: dict, t0: float) -> dict:
    """The numbers a simulation prints and writes to ``summary.json``."""
    layer, K = run.cfg, run.n_units
    t_stop = run.total * layer.dt
    summary = {
        "n_spikes": int(st.n_spikes),
        "n_spikes_in_windows": int(tally.n_in),
        "expected_spikes": float(tally.expected),  # in the (response) windows
        "n_presentations": run.n,
        "n_units": K,
        "stimuli": stimuli,
        "n_stimuli": n,
        "repeats": repeats,
        "simulated_seconds": float(t_stop),
        "mean_rate_hz": float(rates_hz(tally.n_in / (run.n * K), layer.window)),
        "expected_mean_rate_hz": float(rates_hz(tally.expected / (run.n * K), layer.window)),
        "per_unit_counts": tally.per_unit.tolist(),
        "reconstruction": tally.reconstruction(),
        "target": run.target,
        "notes": run.notes,
        "wall_seconds": time.perf_counter() - t0,
        # the input, by name, size and SHA-256 (never its folder), and the package that made the run
        **{k: info[k] for k in ("checkpoint", "dictionary") if info.get(k)},
        "spikevae_version": info["provenance"]["packages"]["spikevae"],
    }
    if not layer.spikes.is_plain:
        summary.update(spike_model=info["spike_model"], hz_per_lambda=info["hz_per_lambda"],
                       response_latency_s=info["response_latency_s"])
    return summary


def run_simulation(model=None, stimuli: str = "natural", n_stimuli: int = 50, repeats: int = 5,
                   layer: PoissonLayerConfig = PoissonLayerConfig(), seed: int = 0, device="cpu",
                   progress: bool = False, workers: int = 1, scheduler: str | None = None) -> SimulationResult:
    """Stimuli → the model's rates λ → Brian2 Poisson spikes, all in memory (no files written).

    Parameters
    ----------
    model : TrainedModel, path or None
        A loaded model, a checkpoint path, or None for the shipped P-VAE.
    stimuli : str
        ``natural`` (held-out patches), ``white-noise``, ``gratings`` or a folder of images.
    n_stimuli, repeats : int
        Distinct stimuli and presentations of each (repeat-major order: all stimuli, then again).
    layer : PoissonLayerConfig
        Window, gap, dt, Brian2 target, chunk.
    seed : int
        Root seed (stimuli and spikes get child seeds).
    device : str
        Model device when ``model`` is a path.
    workers, scheduler
        Brian2 chunks in this many local processes, or on the Dask scheduler at this address (the spikes do
        not change; :meth:`spikevae.spikes.PoissonRun.chunks`).

    Notes
    -----
    A run too long to hold in memory goes to :func:`simulate_to_folder`, which streams it to disk.
    """
    producer = rate_producer(model, layer, device, workers, scheduler)
    st, stim, lam, counts, _, _, summary = _simulate(producer, stimuli, n_stimuli, repeats, seed, progress)
    return SimulationResult(st, stim, lam, counts, summary)


def _draw_figures(out: Path, raster, counts, expected) -> dict:
    from .. import plots

    return {"raster": plots.save_figure(plots.raster(raster), out / "figures" / "raster.png"),
            "counts_vs_expected": plots.save_figure(plots.counts_vs_expected(counts, expected),
                                                    out / "figures" / "counts_vs_expected.png")}


def _write_outputs(out: Path, st, stimuli, raster, counts, expected, summary, neo: bool, subject=None,
                   command: str = "simulate") -> dict:
    return write_run_files(out, st, summary, command=command, stimuli=stimuli, draw=_draw_figures,
                           draw_args=(raster, counts, expected), neo=neo, subject=subject)


def write_simulation(out: str | os.PathLike, result: SimulationResult, neo: bool = True, overwrite: bool = False,
                     command: str = "simulate", subject=None) -> dict:
    """Write a simulation's files into ``out`` (a new or empty folder, or an earlier run of ``command`` with
    ``overwrite``); return their paths by name.

    ``spikes.nwb`` (pynwb), figures, ``spikes.nix`` (Neo NixIO; skipped with ``neo=False``) and
    ``summary.json`` last. Every file is written to a temporary name and renamed when complete; if any
    write fails, every file of the run is removed (:class:`spikevae.io.RunFolder`).
    """
    from ..io import RunFolder

    with RunFolder(out, command, overwrite) as files:
        counts, expected = result.counts, result.spikes.presentations.expected
        return _write_outputs(files.path, result.spikes, result.stimuli, result.spikes, counts, expected,
                              result.summary, neo, subject, command)


def simulate_to_folder(out: str | os.PathLike, model=None, stimuli: str = "natural", n_stimuli: int = 50,
                       repeats: int = 5, layer: PoissonLayerConfig = PoissonLayerConfig(), seed: int = 0, device="cpu",
                       progress: bool = False, neo: bool = True, overwrite: bool = False,
                       command: str = "simulate", workers: int = 1, scheduler: str | None = None,
                       subject=None) -> dict:
    """:func:`run_simulation` + :func:`write_simulation` with memory that does not grow with the run.

    Spikes and λ go to a temporary HDF5 file in ``out`` chunk by chunk and are copied into ``spikes.nwb``;
    counts are reduced per chunk (figures use the first :data:`FIGURE_PRESENTATIONS` presentations). The
    Neo file needs the whole run in memory: use ``neo=False`` for long runs. Returns the summary.
    """
    from ..io import RunFolder

    with RunFolder(out, command, overwrite) as files:
        producer = rate_producer(model, layer, device, workers, scheduler)
        st, stim, _, counts, expected, raster, summary = _simulate(producer, stimuli, n_stimuli, repeats, seed,
                                                                   progress, spill_dir=files.work)
        try:
            _write_outputs(files.path, st, stim, raster, counts, expected, summary, neo, subject, command)
        finally:
            st.close()
    return summary


def describe_simulation(res: SimulationResult | dict, out: str | os.PathLike, neo: bool = True) -> str:
    """What a simulation did and wrote (a result or its summary), as the lines a command prints (its warnings,
    logged when they arose, are in ``summary["notes"]``)."""
    out = Path(out)
    s = meta = res.summary if isinstance(res, SimulationResult) else res
    r = s["reconstruction"]
    lines = [
        f"simulated {s['n_presentations']} presentations ({meta['n_stimuli']} {meta['stimuli']} stimuli x "
        f"{meta['repeats']}) of {s['n_units']} units, {s['simulated_seconds']:.1f} s, Brian2 target {s['target']}",
        f"spikes: {s['n_spikes']} emitted"
        + (f", {s['n_spikes_in_windows']} in the response windows" if s["n_spikes_in_windows"] != s["n_spikes"] else "")
        + f", {s['expected_spikes']:.1f} expected there; mean rate in the windows {s['mean_rate_hz']:.2f} Hz",
        f"reconstruction error (sum over pixels, patch energy {r['patch_energy']:.1f}): "
        f"from spike counts {r['mse_spikes']:.1f} (R² {r['r2_spikes']:.3f}), from rates λ {r['mse_rates']:.1f} "
        f"(R² {r['r2_rates']:.3f})",
        f"wrote {out / 'spikes.nwb'}" + (f", {out / 'spikes.nix'}" if neo else "") +
        f", {out / 'summary.json'} and figures in {out / 'figures'}",
    ]
    return "\n".join(lines)
