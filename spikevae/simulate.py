"""``python -m spikevae.simulate --checkpoint pvae.pt --out run/``: real spike trains from a P-VAE.

Stimuli → the checkpoint's preprocessing → posterior rates λ (expected counts
per presentation window) → Brian2 Poisson neurons, one per latent unit
(:mod:`spikevae.spiking`) → a :class:`~spikevae.records.SpikeTrains` record →
``spikes.nwb`` (pynwb), ``spikes.nix`` (Neo NixIO), ``summary.json`` and
figures. Each presentation's spike counts are also decoded through the model's
decoder, next to the rate-based (λ) reconstruction.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ._cli import Parser, UserError, cli_entry, resolve_device
from .checkpoint import default_checkpoint_path, file_sha256, load_model, provenance, write_json
from .data import Preprocessing
from .records import Presentations, SpikeTrains
from .spiking import TARGETS, PoissonLayerConfig, rates_hz, simulate_poisson
from .stimuli import StimulusSet, make_stimuli

__all__ = ["SimulationResult", "run_simulation", "decode_errors", "main"]


class SimulationResult(NamedTuple):
    """Outcome of :func:`run_simulation`."""

    spikes: SpikeTrains
    stimuli: StimulusSet
    rates: np.ndarray  # λ per stimulus (n_stimuli, K)
    counts: np.ndarray  # spikes per (presentation, unit) window
    summary: dict


@torch.no_grad()
def decode_errors(model, stimuli: np.ndarray, rates: np.ndarray, counts: np.ndarray, stim_index: np.ndarray,
                  device="cpu") -> dict:
    """Squared reconstruction error (summed over pixels) from spike counts and from rates λ, per presentation mean."""
    x = torch.as_tensor(stimuli[stim_index], device=device).flatten(1)
    dec = lambda z: model.decode(torch.as_tensor(z, dtype=torch.float32, device=device)).flatten(1)  # noqa: E731
    err_spk = (x - dec(counts)).square().sum(1).cpu().numpy()
    err_rate = (x - dec(rates[stim_index])).square().sum(1).cpu().numpy()
    energy = x.square().sum(1).cpu().numpy()
    return {"mse_spikes": float(err_spk.mean()), "mse_rates": float(err_rate.mean()),
            "patch_energy": float(energy.mean()),
            "r2_spikes": float(1 - err_spk.sum() / energy.sum()), "r2_rates": float(1 - err_rate.sum() / energy.sum())}


def run_simulation(checkpoint: str | Path | None = None, stimuli: str = "natural", n_stimuli: int = 50,
                   repeats: int = 5, layer: PoissonLayerConfig = PoissonLayerConfig(), seed: int = 0,
                   device: str | torch.device = "cpu", progress: bool = False) -> SimulationResult:
    """Run the whole pipeline in memory (no files written)."""
    t0 = time.perf_counter()
    layer.validate()
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    ck_path = Path(checkpoint) if checkpoint is not None else default_checkpoint_path()
    model, ck = load_model(ck_path, device)
    if model.config.family != "poisson":
        raise UserError(f"{ck_path} holds a {model.config.family} VAE; only the Poisson family emits spike counts")
    prep = Preprocessing(**ck["preprocessing"])
    s_stim, s_spk = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    stim = make_stimuli(stimuli, n_stimuli, prep, s_stim)
    x = torch.as_tensor(stim.images, device=device).unsqueeze(1)
    with torch.no_grad():
        lam = torch.cat([model.posterior(x[i:i + 4096]).mean for i in range(0, len(x), 4096)]).double().cpu().numpy()
    n = len(stim.images)
    stim_idx = np.tile(np.arange(n), repeats)  # repeat-major order: all stimuli, then again
    rep = np.repeat(np.arange(repeats), n)
    expected = lam[stim_idx]
    run = simulate_poisson(expected, layer, s_spk, progress=progress)
    meta = {
        "model": f"pvae-{model.config.encoder}-{model.config.decoder}-K{model.config.n_latents}",
        "checkpoint": str(ck_path),
        "checkpoint_sha256": file_sha256(ck_path),
        "model_config": ck["model_config"],
        "train_config": ck.get("train_config"),
        "preprocessing": ck["preprocessing"],
        "layer_config": dataclasses.asdict(layer),
        "stimuli": stimuli,
        "stimulus_description": stim.description,
        "n_stimuli": n,
        "repeats": repeats,
        "seed": seed,
        "prior_rates": torch.exp(model.log_r.detach()).double().cpu().tolist(),  # r, expected counts per window
        "target": run.target,
        "provenance": provenance(seed),
        "run_id": str(uuid.uuid4()),
        "spikevae_version": provenance()["packages"].get("spikevae"),
    }
    pres = Presentations(stim_idx.astype(np.int64), rep.astype(np.int64), run.onset, run.offset, expected)
    st = SpikeTrains(run.unit, run.time, lam.shape[1], run.t_stop, layer.dt, pres, meta)
    counts = st.counts()
    errs = decode_errors(model, stim.images, lam, counts, stim_idx, device)
    per_unit = counts.sum(0)
    summary = {
        "n_spikes": int(st.n_spikes),
        "expected_spikes": float(expected.sum()),
        "n_presentations": len(pres),
        "n_units": st.n_units,
        "simulated_seconds": float(st.t_stop),
        "mean_rate_hz": float(rates_hz(counts.mean(), layer.window)),
        "expected_mean_rate_hz": float(rates_hz(expected.mean(), layer.window)),
        "per_unit_counts": per_unit.tolist(),
        "reconstruction": errs,
        "target": run.target,
        "notes": run.notes,
        "wall_seconds": time.perf_counter() - t0,
    }
    return SimulationResult(st, stim, lam, counts, summary)


def _parser() -> Parser:
    p = Parser(prog="python -m spikevae.simulate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="P-VAE checkpoint (default: the shipped model)")
    p.add_argument("--out", default="run", help="output folder (default run/)")
    p.add_argument("--stimuli", default="natural", help="natural | white-noise | gratings | DIR of images")
    p.add_argument("--n-stimuli", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5, help="presentations of each stimulus")
    p.add_argument("--window", type=float, default=100.0, help="presentation window, ms (default 100)")
    p.add_argument("--gap", type=float, default=0.0, help="blank between presentations, ms (default 0)")
    p.add_argument("--dt", type=float, default=0.1, help="simulation time step, ms (default 0.1)")
    p.add_argument("--target", default="auto", help=f"Brian2 code generation: {' | '.join(TARGETS)}")
    p.add_argument("--chunk", type=int, default=2000, help="presentations per Brian2 run (memory bound)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="model device: auto | cpu | cuda")
    p.add_argument("--no-neo", action="store_true", help="skip the Neo (NixIO) file (slow for long runs)")
    p.add_argument("--quiet", action="store_true")
    return p


@cli_entry("python -m spikevae.simulate")
def main(argv=None) -> int:
    """Command-line entry point."""
    from . import io, plots

    args = _parser().parse_args(argv)
    if args.target not in TARGETS:
        raise UserError(f"--target must be one of {', '.join(TARGETS)}, got {args.target!r}")
    for name in ("window", "dt"):
        v = getattr(args, name)
        if not (v > 0 and np.isfinite(v)):
            raise UserError(f"--{name} must be > 0 ms, got {v}")
    if not (args.gap >= 0 and np.isfinite(args.gap)):
        raise UserError(f"--gap must be >= 0 ms, got {args.gap}")
    if args.n_stimuli <= 0 or args.repeats <= 0:
        raise UserError("--n-stimuli and --repeats must be > 0")
    layer = PoissonLayerConfig(window=args.window * 1e-3, gap=args.gap * 1e-3, dt=args.dt * 1e-3,
                               target=args.target, chunk=args.chunk)
    try:
        layer.validate()
    except ValueError as exc:
        raise UserError(str(exc).replace("window (", "--window (").replace("gap (", "--gap (")) from None
    out = Path(args.out)
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    probe = out / f".write-test-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output folder {out} is not writable: {exc.strerror or exc}") from None
    device = resolve_device(args.device)
    if args.checkpoint is None:
        print(f"no --checkpoint given: using the shipped model {default_checkpoint_path()}")
    import logging

    logging.getLogger("spikevae.spiking").addHandler(logging.NullHandler())
    res = run_simulation(args.checkpoint, args.stimuli, args.n_stimuli, args.repeats, layer, args.seed, device,
                         progress=not args.quiet)
    for note in res.summary["notes"]:
        print(f"warning: {note}")
    st, s = res.spikes, res.summary
    io.write_nwb(out / "spikes.nwb", st, stimuli=res.stimuli.images)
    if not args.no_neo:
        io.write_neo(out / "spikes.nix", st)
    plots.save_figure(plots.raster(st), out / "figures" / "raster.png")
    plots.save_figure(plots.counts_vs_expected(res.counts, st.presentations.expected),
                      out / "figures" / "counts_vs_expected.png")
    write_json(out / "summary.json", s)
    r = s["reconstruction"]
    print(f"simulated {s['n_presentations']} presentations ({args.n_stimuli} {args.stimuli} stimuli x {args.repeats}) "
          f"of {s['n_units']} units, {s['simulated_seconds']:.1f} s, Brian2 target {s['target']}")
    print(f"spikes: {s['n_spikes']} emitted, {s['expected_spikes']:.1f} expected; mean rate {s['mean_rate_hz']:.2f} Hz")
    print(f"reconstruction error (sum over pixels, patch energy {r['patch_energy']:.1f}): "
          f"from spike counts {r['mse_spikes']:.1f} (R² {r['r2_spikes']:.3f}), from rates λ {r['mse_rates']:.1f} "
          f"(R² {r['r2_rates']:.3f})")
    print(f"wrote {out / 'spikes.nwb'}" + ("" if args.no_neo else f", {out / 'spikes.nix'}") +
          f", {out / 'summary.json'} and figures in {out / 'figures'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
