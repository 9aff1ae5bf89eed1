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

from .errors import ArgumentError
from .io.files import provenance, write_json
from .records import SpikeTrains
from .spiking import PoissonLayerConfig, rates_hz, simulate_poisson
from .stimuli import StimulusSet, make_stimuli

__all__ = ["SimulationResult", "run_simulation", "decode_errors", "write_simulation", "prepare_output_folder",
           "describe_simulation"]


class SimulationResult(NamedTuple):
    """Outcome of :func:`run_simulation`."""

    spikes: SpikeTrains  # the spike trains, presentation table and provenance
    stimuli: StimulusSet  # what was shown, in model-input space
    rates: np.ndarray  # λ per stimulus (n_stimuli, K), expected counts per window
    counts: np.ndarray  # spikes per (presentation, unit) window (SpikeTrains.counts)
    summary: dict  # numbers printed and written to summary.json


def decode_errors(model, stimuli: np.ndarray, rates: np.ndarray, counts: np.ndarray, stim_index: np.ndarray) -> dict:
    """Squared reconstruction error (summed over pixels) from spike counts and from rates λ, per presentation mean.

    ``model`` is a :class:`~spikevae.model.TrainedModel`; R² = 1 − Σ error / Σ patch energy.
    """
    x = np.asarray(stimuli, dtype=np.float64)[stim_index].reshape(len(stim_index), -1)
    err_spk = np.square(x - model.decode(counts).reshape(len(x), -1)).sum(1)
    err_rate = np.square(x - model.decode(rates[stim_index]).reshape(len(x), -1)).sum(1)
    energy = np.square(x).sum(1)
    return {"mse_spikes": float(err_spk.mean()), "mse_rates": float(err_rate.mean()),
            "patch_energy": float(energy.mean()),
            "r2_spikes": float(1 - err_spk.sum() / energy.sum()), "r2_rates": float(1 - err_rate.sum() / energy.sum())}


def run_simulation(model=None, stimuli: str = "natural", n_stimuli: int = 50, repeats: int = 5,
                   layer: PoissonLayerConfig = PoissonLayerConfig(), seed: int = 0, device="cpu",
                   progress: bool = False) -> SimulationResult:
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
    """
    from .model import TrainedModel, load_model

    t0 = time.perf_counter()
    layer.validate()
    if not 1 <= n_stimuli <= 10**8 or not 1 <= repeats <= 10**8:
        raise ArgumentError(f"n_stimuli and repeats must be between 1 and 1e8, got {n_stimuli} and {repeats}")
    if not isinstance(model, TrainedModel):
        model = load_model(model, device)
    model._need_poisson("spike trains")
    K = model.config.n_latents
    from ._resources import check_memory

    # λ for every presentation (float64), the Brian2 rate table of a chunk and the count matrix
    check_memory(8.0 * n_stimuli * repeats * K * 3, f"{n_stimuli} stimuli x {repeats} repeats x {K} units")
    s_stim, s_spk = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    stim = make_stimuli(stimuli, n_stimuli, model.preprocessing, s_stim)
    lam = model.rates(stim.images)
    n = len(stim.images)
    stim_idx = np.tile(np.arange(n), repeats)  # repeat-major order: all stimuli, then again
    rep = np.repeat(np.arange(repeats), n)
    expected = lam[stim_idx]
    meta = {
        "model": model.name,
        "checkpoint": str(model.path),
        "checkpoint_sha256": model.sha256,
        "model_config": model.checkpoint["model_config"],
        "train_config": model.checkpoint["train_config"],
        "preprocessing": model.checkpoint["preprocessing"],
        "layer_config": dataclasses.asdict(layer),
        "stimuli": stimuli,
        "stimulus_description": stim.description,
        "n_stimuli": n,
        "repeats": repeats,
        "seed": seed,
        "prior_rates": model.prior_rates.tolist(),  # r, expected counts per window
        "provenance": provenance(seed),
        "run_id": str(uuid.uuid4()),
    }
    meta["spikevae_version"] = meta["provenance"]["packages"].get("spikevae")
    st = simulate_poisson(expected, layer, s_spk, progress=progress, stimulus=stim_idx, repeat=rep, meta=meta)
    counts = st.counts()  # in the windows shifted by the response latency, if any
    drive = st.presentations.expected  # expected counts per window (λ itself for the plain Poisson layer)
    z = counts
    if not layer.spikes.is_plain:  # back to the model's scale: λ̂ = (count − spontaneous) / (Hz per λ · window)
        z = (counts - layer.spikes.spontaneous_hz * layer.window) / (st.meta["hz_per_lambda"] * layer.window)
    errs = decode_errors(model, stim.images, lam, z, stim_idx)
    summary = {
        "n_spikes": int(st.n_spikes),
        "n_spikes_in_windows": int(counts.sum()),
        "expected_spikes": float(drive.sum()),  # in the (response) windows
        "n_presentations": len(st.presentations),
        "n_units": st.n_units,
        "simulated_seconds": float(st.t_stop),
        "mean_rate_hz": float(rates_hz(counts.mean(), layer.window)),
        "expected_mean_rate_hz": float(rates_hz(drive.mean(), layer.window)),
        "per_unit_counts": counts.sum(0).tolist(),
        "reconstruction": errs,
        "target": st.meta["target"],
        "notes": st.meta["notes"],
        "wall_seconds": time.perf_counter() - t0,
    }
    if not layer.spikes.is_plain:
        summary.update(spike_model=st.meta["spike_model"], hz_per_lambda=st.meta["hz_per_lambda"],
                       response_latency_s=st.meta["response_latency_s"])
    return SimulationResult(st, stim, lam, counts, summary)


def write_simulation(out: str | os.PathLike, result: SimulationResult, neo: bool = True) -> dict:
    """Write a simulation's files into ``out`` (created if needed); return their paths by name.

    ``spikes.nwb`` (pynwb), ``spikes.nix`` (Neo NixIO; skipped with ``neo=False``), figures, and
    ``summary.json`` last. Every file is written to a temporary name and renamed when complete.
    """
    from . import io, plots

    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    st = result.spikes
    paths = {"nwb": io.write_nwb(out / "spikes.nwb", st, stimuli=result.stimuli.images)}
    if neo:
        paths["nix"] = io.write_neo(out / "spikes.nix", st)
    paths["raster"] = out / "figures" / "raster.png"
    plots.save_figure(plots.raster(st), paths["raster"])
    paths["counts_vs_expected"] = out / "figures" / "counts_vs_expected.png"
    plots.save_figure(plots.counts_vs_expected(result.counts, st.presentations.expected), paths["counts_vs_expected"])
    paths["summary"] = write_json(out / "summary.json", result.summary)
    return paths


def prepare_output_folder(out: str | os.PathLike) -> Path:
    """Create ``out`` (and ``out/figures``) and check that it is writable (:class:`ArgumentError` otherwise)."""
    out = Path(out)
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArgumentError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    probe = out / f".write-test-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ArgumentError(f"output folder {out} is not writable: {exc.strerror or exc}") from None
    return out


def describe_simulation(res: SimulationResult, out: str | os.PathLike, neo: bool = True) -> str:
    """What a simulation did and wrote, as the lines a command prints."""
    out = Path(out)
    s = res.summary
    meta = res.spikes.meta
    r = s["reconstruction"]
    lines = [f"warning: {note}" for note in s["notes"]]
    lines += [
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
