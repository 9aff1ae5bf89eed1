"""The iP-VAE circuit's run folder and its per-iteration read-out metrics."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..brian.ipvae import IPVAECircuitConfig, iteration_counts
from ..errors import ArgumentError, DataError
from ..seeds import child_seeds
from ..spikes.producers import N_ITER
from .run_folder import checkpoint_record, write_run_files

__all__ = ["circuit_readout", "simulate_circuit_to_folder"]


def circuit_readout(model, x: np.ndarray, counts: np.ndarray, save_t=None) -> list[dict]:
    """``model``: the iP-VAE or its dictionary Φ (M, K). Per-iteration metrics of a circuit's read-out counts
    (n_iter + 1, B, K): those of
    :func:`spikevae.analysis.code_metrics` (the reference's R² and the pooled one, MSE, zeros, sparsities, distance
    from each), the spikes per patch
    in the iteration and the cumulative spikes of periods 0..t, at each saved iteration (default: the
    reference's iterations up to n_iter)."""
    from ..analysis import code_metrics
    from ..models.ipvae import SAVE_T

    phi = model if isinstance(model, np.ndarray) else model.circuit_parameters().phi
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n_iter = len(counts) - 1
    rows = []
    for t in sorted({t for t in (save_t or SAVE_T) if 1 <= t <= n_iter} | {n_iter}):
        z = counts[t].astype(np.float64)
        rows.append({"t": t, **code_metrics(x, z @ phi.T, z), "spikes_per_patch": float(z.sum(1).mean()),
                     "cumulative_spikes": float(counts[:t + 1].sum((0, 2)).mean())})
    return rows


def _draw_circuit(out: Path, raster, rows: list, title: str) -> dict:
    from .. import plots

    return {"raster": plots.save_figure(plots.raster(raster, title=title), out / "figures" / "raster.png"),
            "convergence": plots.save_figure(plots.convergence({"iP-VAE circuit (spikes)": rows}),
                                             out / "figures" / "convergence.png")}


def simulate_circuit_to_folder(out, model, stimuli: str = "natural", n_stimuli: int = 50, repeats: int = 1,
                               n_iter: int = N_ITER, config: IPVAECircuitConfig = IPVAECircuitConfig(), seed: int = 0,
                               neo: bool = True, overwrite: bool = False, command: str = "simulate",
                               subject=None) -> dict:
    """``simulate`` for an iP-VAE checkpoint: each (stimulus, repeat) is one presentation of ``n_iter + 1``
    iteration periods during which the circuit infers (:class:`~spikevae.spikes.producers.IPVAEProducer`); writes
    the run folder (:func:`~spikevae.workflows.run_folder.write_run_files`) with per-iteration read-out metrics in
    ``summary.json``."""
    from ..io import RunFolder
    from ..spikes.producers import IPVAEProducer
    from ..stimuli import make_stimuli

    t0 = time.perf_counter()
    if not 1 <= n_stimuli * repeats <= 10**6:
        raise ArgumentError(f"n_stimuli x repeats must be between 1 and 1e6, got {n_stimuli * repeats}")
    producer = IPVAEProducer(model, n_iter, config)
    cfg = producer.circuit
    K = producer.n_units
    s_stim, s_spk = child_seeds(seed, 2)
    stim = make_stimuli(stimuli, n_stimuli, model.preprocessing, s_stim)
    n = len(stim.images)
    with RunFolder(out, command, overwrite) as files:
        st = producer.produce(stim.images, repeats, s_spk, meta={"checkpoint": checkpoint_record(model)}).spikes
        x = stim.images.reshape(n, -1)[st.presentations.stimulus]
        rows = circuit_readout(producer.params.phi, x, iteration_counts(st, n_iter))
        _check_plausible(rows, st, cfg)
        summary = {"model": "ipvae-circuit", "n_units": K, "n_presentations": len(x), "n_stimuli": n,
                   "repeats": repeats, "stimuli": stimuli, "n_iter": n_iter, "period_s": cfg.period,
                   "substeps": cfg.substeps, "target": cfg.target, "inhibition": cfg.inhibition,
                   "presentation_s": (n_iter + 1) * cfg.period, "n_spikes": int(len(st.time)),
                   "clipped_spikes": st.meta["clipped_spikes"],
                   "mean_rate_hz": float(len(st.time) / (K * st.t_stop)), "readout": rows,
                   "wall_seconds": time.perf_counter() - t0}
        title = (f"iP-VAE circuit neurons (Brian2; {n_iter} inference iterations of {cfg.period * 1e3:g} ms per "
                 "presentation)")
        write_run_files(files.path, st, summary, command=command, stimuli=stim, draw=_draw_circuit,
                        draw_args=(st, rows, title), neo=neo, subject=subject,
                        description=f"spikevae iP-VAE circuit: {n_iter} inference iterations of {cfg.period * 1e3:g} ms")
    return summary


def _check_plausible(rows: list, st, cfg) -> None:
    """Refuse (nothing is written) a run whose read-out is not a code: a non-finite R², a pooled R² below −1 at the
    last iteration (worse than predicting blank patches twice over), or more than 1 % of the drawn spikes lost
    because they did not fit their iteration period."""
    last = rows[-1]
    if not all(np.isfinite(r["r2_pooled"]) for r in rows) or last["r2_pooled"] < -1:
        raise DataError(f"the circuit's read-out at t = {last['t']} has pooled R² {last['r2_pooled']:.3g} with "
                        f"{last['spikes_per_patch']:.3g} spikes per patch per iteration: this model gives no usable "
                        "code (check the checkpoint); nothing was written")
    lost = st.meta.get("clipped_spikes", 0)
    if lost > 0.01 * max(st.n_spikes, 1):
        raise DataError(f"{lost} drawn spikes ({100 * lost / max(st.n_spikes + lost, 1):.1f} %) did not fit their "
                        f"iteration period of {cfg.substeps} steps: raise --substeps; nothing was written")
