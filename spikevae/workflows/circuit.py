"""The iP-VAE circuit's run folder and its read-out metrics."""
from __future__ import annotations

import numpy as np

from ..brian.ipvae import IPVAECircuitConfig, ipvae_brian
from ..errors import ArgumentError


def circuit_readout(model, x: np.ndarray, counts: np.ndarray, save_t=None) -> list[dict]:
    """Per-iteration metrics of a circuit's read-out counts (n_iter + 1, B, K): those of
    :func:`spikevae.analysis.code_metrics` (R² pooled, MSE, zeros, sparsities, distance), the spikes per patch
    in the iteration and the cumulative spikes of periods 0..t, at each saved iteration (default: the
    reference's iterations up to n_iter)."""
    from ..analysis import code_metrics
    from ..models.ipvae import SAVE_T

    phi = model.phi.detach().double().cpu().numpy()
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n_iter = len(counts) - 1
    rows = []
    for t in sorted({t for t in (save_t or SAVE_T) if 1 <= t <= n_iter} | {n_iter}):
        z = counts[t].astype(np.float64)
        rows.append({"t": t, **code_metrics(x, z @ phi.T, z), "spikes_per_patch": float(z.sum(1).mean()),
                     "cumulative_spikes": float(counts[:t + 1].sum((0, 2)).mean())})
    return rows


def simulate_circuit_to_folder(out, model, stimuli: str = "natural", n_stimuli: int = 50, repeats: int = 1,
                               n_iter: int = 64, config: IPVAECircuitConfig = IPVAECircuitConfig(), seed: int = 0,
                               neo: bool = True, overwrite: bool = False, command: str = "simulate",
                               subject=None) -> dict:
    """``simulate`` for an iP-VAE checkpoint: each (stimulus, repeat) is one presentation of ``n_iter + 1``
    iteration periods during which the circuit infers; writes ``spikes.nwb`` (with the stimuli),
    ``spikes.nix`` (unless ``neo=False``), ``summary.json`` (per-iteration read-out metrics) and figures."""
    import time as _time

    from .. import io, plots
    from ..stimuli import make_stimuli

    t0 = _time.perf_counter()
    if not 1 <= n_stimuli * repeats <= 10**6:
        raise ArgumentError(f"n_stimuli x repeats must be between 1 and 1e6, got {n_stimuli * repeats}")
    cfg = config.validate()
    K = model.config.n_latents
    s_stim, s_spk = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    stim = make_stimuli(stimuli, n_stimuli, model.preprocessing, s_stim)
    n = len(stim.images)
    x = np.tile(stim.images.reshape(n, -1), (repeats, 1))  # repeat-major, as the P-VAE's runs
    with io.RunFolder(out, command, overwrite) as files:
        res = ipvae_brian(model, x, n_iter, cfg, seed=s_spk, meta={"checkpoint": str(getattr(model, "path", ""))})
        st = res.spikes
        st.presentations.stimulus[:] = np.tile(np.arange(n), repeats)
        st.presentations.repeat[:] = np.repeat(np.arange(repeats), n)
        rows = circuit_readout(model, x, res.counts)
        summary = {"model": "ipvae-circuit", "n_units": K, "n_presentations": len(x), "n_stimuli": n,
                   "repeats": repeats, "stimuli": stimuli, "n_iter": n_iter, "period_s": cfg.period,
                   "substeps": cfg.substeps, "target": cfg.target, "inhibition": cfg.inhibition,
                   "presentation_s": (n_iter + 1) * cfg.period, "n_spikes": int(len(st.time)),
                   "clipped_spikes": res.clipped_spikes,
                   "mean_rate_hz": float(len(st.time) / (K * st.t_stop)), "readout": rows,
                   "wall_seconds": _time.perf_counter() - t0}
        path = files.path
        io.write_nwb(path / "spikes.nwb", st, stimuli=stim.images, subject=subject,
                     description=f"spikevae iP-VAE circuit: {n_iter} inference iterations of {cfg.period * 1e3:g} ms")
        plots.save_figure(plots.raster(st, title=f"iP-VAE circuit neurons (Brian2; {n_iter} inference iterations of "
                                                    f"{cfg.period * 1e3:g} ms per presentation)"),
                          path / "figures" / "raster.png")
        plots.save_figure(plots.convergence({"iP-VAE circuit (spikes)": rows}), path / "figures" / "convergence.png")
        if neo:
            io.check_free_space(path, 64 * 2**20 + 24 * len(st.time), "the Neo (NIX) file")
            io.write_neo(path / "spikes.nix", st)
        io.write_json(path / "summary.json", summary)
    return summary

