"""Receptive-field mapping of model units: white noise (STA), sparse noise (ON/OFF maps) and gratings.

    python simulations/rf_mapping.py --checkpoint pvae.pt --out rf/
    python simulations/rf_mapping.py --model lca --dictionary dict.npz --out rf_lca/
    python simulations/rf_mapping.py --model lca --checkpoint pvae.pt --out rf_lca/   # LCA on the P-VAE's atoms

P-VAE units respond with real spikes: frames → posterior rates λ → Brian2 Poisson neurons
(spikevae.spiking) → counts per frame window. LCA units respond with their sparse-code activity
(reference solver). Writes ``white_noise.nwb`` (stimuli + spikes, P-VAE), ``sta.npy``,
``gabor_fits.csv`` (one row per unit), ``tuning.npz`` and figures (RF grid, nx–ny scatter, tuning
curves, ON/OFF maps, and ``agreement.png``: each unit's STA beside its encoder filter and decoder
atom, with the distributions of their correlations).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from spikevae._cli import UserError, cli_entry


def _responses_pvae(model, frames, window, dt, target, seed, progress):
    import torch

    from spikevae.spiking import PoissonLayerConfig, simulate_poisson

    with torch.no_grad():
        x = torch.as_tensor(frames, dtype=torch.float32).unsqueeze(1)
        lam = torch.cat([model.posterior(x[i:i + 8192]).mean for i in range(0, len(x), 8192)]).double().numpy()
    run = simulate_poisson(lam, PoissonLayerConfig(window=window, dt=dt, target=target, chunk=20_000), seed=seed,
                           progress=progress)
    return run.counts(lam.shape[1]), lam, run


def _responses_lca(phi, frames, lam_lca):
    from spikevae.lca import LCAConfig, lca

    x = frames.reshape(len(frames), -1).astype(np.float64)
    out = np.concatenate([lca(x[i:i + 500], phi, LCAConfig(lam=lam_lca, n_steps=300)).codes
                          for i in range(0, len(x), 500)])
    return out


def _sparse_noise(n, P, rng, amplitude=4.0):
    """One pixel at ±amplitude on a zero background per frame; returns frames, pixel index, sign."""
    pix = rng.integers(0, P * P, n)
    sign = rng.choice([-1.0, 1.0], n)
    frames = np.zeros((n, P * P), np.float32)
    frames[np.arange(n), pix] = amplitude * sign
    return frames.reshape(n, P, P), pix, sign


@cli_entry("rf_mapping")
def main(argv=None) -> int:
    from spikevae import plots
    from spikevae.analysis.receptive_fields import fit_gabor, grating_tuning, sta
    from spikevae.checkpoint import atomic_write, load_model, write_csv, write_npz
    from spikevae.spiking import PoissonLayerConfig
    from spikevae.stimuli import gratings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="pvae", choices=("pvae", "lca"))
    p.add_argument("--checkpoint", help="P-VAE checkpoint (default: the shipped model); with --model lca, "
                   "LCA runs on its normalised decoder atoms")
    p.add_argument("--dictionary", help="LCA dictionary .npz (for --model lca)")
    p.add_argument("--out", default="rf")
    p.add_argument("--frames", type=int, default=20_000, help="white-noise frames")
    p.add_argument("--sparse-frames", type=int, default=5_000, help="sparse-noise frames")
    p.add_argument("--grating-repeats", type=int, default=4, help="repeats of the 128 gratings")
    p.add_argument("--window", type=float, default=50.0, help="frame duration, ms (P-VAE)")
    p.add_argument("--dt", type=float, default=0.25, help="simulation step, ms (P-VAE)")
    p.add_argument("--target", default="auto", help="Brian2 target (P-VAE)")
    p.add_argument("--lam", type=float, default=0.5, help="LCA threshold (--model lca)")
    p.add_argument("--space", default="pixel", choices=("pixel", "model"),
                   help="pixel: white noise is an image, passed through the checkpoint's whitening filter "
                        "R(f) before the model (a retina-like stage) and the STA is taken against the image; "
                        "model: white noise directly in model-input space")
    p.add_argument("--fit-units", type=int, default=512, help="fit Gabors to this many units (most active first)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if min(args.frames, args.sparse_frames, args.grating_repeats, args.fit_units) < 1:
        raise UserError("--frames, --sparse-frames, --grating-repeats and --fit-units must be >= 1")
    try:
        PoissonLayerConfig(window=args.window * 1e-3, dt=args.dt * 1e-3, target=args.target).validate()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    out = Path(args.out)
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    rng = np.random.default_rng(args.seed)
    model = phi = None
    if args.model == "pvae":
        model, ck = load_model(args.checkpoint)
        if model.config.family != "poisson":
            raise UserError("RF mapping through spikes needs a Poisson VAE checkpoint")
        P, K = model.config.patch_size, model.config.n_latents
        encoder = model.encoder[-1].weight.detach().double().numpy().reshape(K, P, P) \
            if model.config.encoder == "lin" else None
        decoder = model.dictionary.detach().double().numpy().T.reshape(K, P, P) if model.config.decoder == "lin" else None
    else:
        if bool(args.dictionary) == bool(args.checkpoint):
            raise UserError("--model lca needs exactly one of --dictionary or --checkpoint")
        from spikevae.lca import normalise_atoms

        if args.dictionary:
            from spikevae.lca_cli import load_dictionary

            phi, prep, _ = load_dictionary(args.dictionary)
        else:
            from spikevae.data import Preprocessing

            vae, ck = load_model(args.checkpoint)
            if vae.config.decoder != "lin":
                raise UserError(f"{args.checkpoint}: LCA needs a linear decoder's atoms")
            phi, prep = vae.dictionary.detach().double().numpy(), Preprocessing(**ck["preprocessing"])
        phi = normalise_atoms(phi)
        P, K = prep.patch_size, phi.shape[1]
        encoder, decoder = None, phi.T.reshape(K, P, P)

    def respond(frames, seed):
        if args.model == "pvae":
            return _responses_pvae(model, frames, args.window * 1e-3, args.dt * 1e-3, args.target, seed,
                                   not args.quiet)
        return _responses_lca(phi, frames, args.lam), None, None

    # white noise → STA
    wn = rng.standard_normal((args.frames, P, P)).astype(np.float32)
    shown = wn
    if args.space == "pixel" and args.model == "pvae":
        from spikevae.data import Preprocessing, whitening_filter

        prep = Preprocessing(**ck["preprocessing"])
        if prep.kind == "natural":  # the checkpoint's whitening filter, frame by frame
            shown = np.fft.irfft2(np.fft.rfft2(wn) * whitening_filter((P, P), prep.whiten_f0, prep.whiten_n), s=(P, P))
            shown = (shown / shown.std()).astype(np.float32)  # unit variance per pixel, like the training data
    counts, lam, run = respond(shown, args.seed + 1)
    maps = sta(wn, counts)
    atomic_write(out / "sta.npy", lambda tmp: np.save(tmp, maps))
    if run is not None:
        from spikevae.io import write_nwb
        from spikevae.records import Presentations, SpikeTrains

        n = len(wn)
        st = SpikeTrains(run.unit, run.time, K, run.t_stop, args.dt * 1e-3,
                         Presentations(np.arange(n), np.zeros(n, np.int64), run.onset, run.offset, lam),
                         {"protocol": "white-noise RF mapping", "seed": args.seed, "model": "pvae"})
        write_nwb(out / "white_noise.nwb", st, stimuli=shown, description="spikevae white-noise RF mapping")
    # sparse noise → ON / OFF maps (mean response when the pixel is on, per sign)
    sp, pix, sign = _sparse_noise(args.sparse_frames, P, rng)
    c_sp, _, _ = respond(sp, args.seed + 2)
    on_map = np.zeros((K, P * P))
    off_map = np.zeros((K, P * P))
    for m, s in ((on_map, 1.0), (off_map, -1.0)):
        sel = sign == s
        tot = np.zeros((P * P, K))
        np.add.at(tot, pix[sel], c_sp[sel])
        n_pix = np.bincount(pix[sel], minlength=P * P)[:, None]
        m[:] = (tot / np.maximum(n_pix, 1)).T
    write_npz(out / "sparse_noise.npz", on=on_map.reshape(K, P, P), off=off_map.reshape(K, P, P))
    # gratings → tuning
    g = gratings(128 * args.grating_repeats, P)
    c_g, _, _ = respond(g.images, args.seed + 3)
    tun = grating_tuning(c_g, g.params["orientation"], g.params["spatial_frequency"])
    write_npz(out / "tuning.npz", **tun._asdict())
    # Gabor fits and agreement of STA with encoder filter and decoder atom
    order = np.argsort(-counts.sum(0))[: args.fit_units]
    rows = []
    for k in order:
        if not np.all(np.isfinite(maps[k])):
            continue
        f = fit_gabor(maps[k])
        row = {"unit": int(k), "spikes": float(counts[:, k].sum()), **f._asdict(), "osi": float(tun.osi[k]),
               "preferred_orientation": float(tun.preferred_orientation[k]),
               "preferred_frequency": float(tun.preferred_frequency[k])}
        for name, ref in (("corr_sta_encoder", encoder), ("corr_sta_decoder", decoder)):
            row[name] = float(np.corrcoef(maps[k].ravel(), ref[k].ravel())[0, 1]) if ref is not None else np.nan
        rows.append(row)
    write_csv(out / "gabor_fits.csv", list(rows[0]), (list(r.values()) for r in rows))
    r2 = np.array([r["r2"] for r in rows])
    plots.save_figure(plots.basis_grid(maps, order, n_show=min(128, len(order)),
                                       title="spike-triggered averages (white noise), most active units first"),
                      out / "figures" / "rf_grid.png")
    plots.save_figure(plots.nx_ny_scatter(np.array([r["nx"] for r in rows]), np.array([r["ny"] for r in rows]), r2),
                      out / "figures" / "nx_ny.png")
    plots.save_figure(plots.tuning_curves(tun, order), out / "figures" / "tuning.png")
    onoff = np.concatenate([on_map[order[:32]], off_map[order[:32]]]).reshape(-1, P, P)
    plots.save_figure(plots.basis_grid(onoff, n_show=64, ncols=16,
                                       title="sparse noise: ON maps (rows 1-2), OFF maps (rows 3-4)"),
                      out / "figures" / "on_off.png")
    plots.save_figure(plots.rf_agreement({"STA": maps, "encoder": encoder, "decoder": decoder}, order,
                                         title=f"{args.model}: STA against encoder filter and decoder atom, "
                                               "most active units first"), out / "figures" / "agreement.png")
    good = r2 >= 0.5
    corr = {name: np.array([r[f"corr_sta_{name}"] for r in rows]) for name in ("encoder", "decoder")}
    corr_txt = "; ".join(f"median corr(STA, {name}) {np.median(v[np.isfinite(v)]):.2f}"
                         for name, v in corr.items() if np.isfinite(v).any())
    print(f"mapped {K} {args.model} units with {args.frames} white-noise, {args.sparse_frames} sparse-noise and "
          f"{len(g.images)} grating frames in {time.perf_counter() - t0:.0f} s; Gabor fit R² ≥ 0.5 for "
          f"{good.sum()} of {len(rows)} units; median OSI {np.nanmedian(tun.osi):.2f}; {corr_txt}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
