"""Receptive-field mapping of model units: white noise (STA), sparse noise (ON/OFF maps) and gratings.

    python simulations/rf_mapping.py --checkpoint pvae.pt --out rf/
    python simulations/rf_mapping.py --model lca --dictionary dict.npz --out rf_lca/
    python simulations/rf_mapping.py --model lca --checkpoint pvae.pt --out rf_lca/   # LCA on the P-VAE's atoms

P-VAE units respond with real spikes: frames → posterior rates λ → Brian2 Poisson neurons
(spikevae.spiking) → counts per frame window. LCA units respond with their sparse-code activity
(reference solver). The mapping is :func:`spikevae.rf.map_receptive_fields`; this script writes
``white_noise.nwb`` (stimuli + spikes, P-VAE), ``sta.npy``, ``gabor_fits.csv`` (one row per unit),
``tuning.npz`` and figures (RF grid, nx–ny scatter, tuning curves, ON/OFF maps, and
``agreement.png``: each unit's STA beside its encoder filter and decoder atom, with the
distributions of their correlations).
"""
from __future__ import annotations

import time

import numpy as np

from spikevae._cli import ArgumentError, Parser, cli_entry, positive_float, positive_int, seed


def _parser() -> Parser:
    p = Parser(prog="rf_mapping", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="pvae", choices=("pvae", "lca"))
    p.add_argument("--checkpoint", help="P-VAE checkpoint (default: the shipped model); with --model lca, "
                   "LCA runs on its normalised decoder atoms")
    p.add_argument("--dictionary", help="LCA dictionary .npz (for --model lca)")
    p.add_output("rf_mapping", "rf")
    p.add_argument("--frames", type=positive_int, default=20_000, help="white-noise frames")
    p.add_argument("--sparse-frames", type=positive_int, default=5_000, help="sparse-noise frames")
    p.add_argument("--grating-repeats", type=positive_int, default=4, help="repeats of the 128 gratings")
    p.add_argument("--window", type=positive_float, default=50.0, help="frame duration, ms (P-VAE)")
    p.add_argument("--dt", type=positive_float, default=0.25, help="simulation step, ms (P-VAE)")
    p.add_argument("--target", default="auto", choices=("auto", "cpp_standalone", "cython", "numpy"),
                   help="Brian2 target (P-VAE)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="processes running the Brian2 chunks (the spikes do not change; default: every core for a "
                        "protocol of more than one chunk)")
    p.add_argument("--lam", type=positive_float, default=0.5, help="LCA threshold (--model lca)")
    p.add_argument("--space", default="pixel", choices=("pixel", "model"),
                   help="pixel: white noise is an image, passed through the checkpoint's whitening filter "
                        "R(f) before the model (a retina-like stage) and the STA is taken against the image; "
                        "model: white noise directly in model-input space")
    p.add_argument("--fit-units", type=positive_int, default=512, help="fit Gabors to this many units (most active first)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--quiet", action="store_true")
    return p


@cli_entry("rf_mapping")
def main(argv=None) -> int:
    from spikevae import plots
    from spikevae.io import RunFolder, atomic_write, load_dictionary, write_csv, write_npz, write_nwb
    from spikevae.model import load_model
    from spikevae.rf import map_receptive_fields, rf_summary
    from spikevae.spiking import PoissonLayerConfig

    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    PoissonLayerConfig(window=args.window * 1e-3, dt=args.dt * 1e-3, target=args.target).validate()
    kw = dict(frames=args.frames, sparse_frames=args.sparse_frames, grating_repeats=args.grating_repeats,
              window=args.window * 1e-3, dt=args.dt * 1e-3, target=args.target, space=args.space,
              fit_units=args.fit_units, seed=args.seed, progress=not args.quiet, workers=args.workers)
    if args.model == "pvae":
        model = load_model(args.checkpoint)
        model._need_poisson("RF mapping through spikes")
        source = dict(model=model)
    else:
        if bool(args.dictionary) == bool(args.checkpoint):
            raise ArgumentError("--model lca needs exactly one of --dictionary or --checkpoint")
        if args.dictionary:
            phi, prep, _ = load_dictionary(args.dictionary)
        else:
            vae = load_model(args.checkpoint)
            phi, prep = vae.dictionary, vae.preprocessing
        source = dict(dictionary=phi, preprocessing=prep, lam=args.lam)
    with RunFolder(args.out, "rf_mapping", args.overwrite) as run:
        out = run.path
        m = map_receptive_fields(**source, **kw)
        atomic_write(out / "sta.npy", lambda tmp: np.save(tmp, m.sta))
        if m.white_noise_spikes is not None:
            write_nwb(out / "white_noise.nwb", m.white_noise_spikes, stimuli=m.shown,
                      description="spikevae white-noise RF mapping")
        write_npz(out / "sparse_noise.npz", on=m.on, off=m.off)
        write_npz(out / "tuning.npz", **m.tuning._asdict())
        rows = m.fits
        write_csv(out / "gabor_fits.csv", list(rows[0]), (list(r.values()) for r in rows))
        r2 = np.array([r["r2"] for r in rows])
        for name, fig in plots.rf_mapping_figures(m, args.model).items():
            plots.save_figure(fig, out / "figures" / f"{name}.png")
        s = rf_summary(m)
        corr_txt = "; ".join(f"median corr(STA, {name}) {s[f'median_corr_sta_{name}']:.2f}"
                             for name in ("encoder", "decoder") if s[f"median_corr_sta_{name}"] is not None)
        print(f"mapped {m.sta.shape[0]} {args.model} units with {args.frames} white-noise, {args.sparse_frames} "
              f"sparse-noise and {m.n_gratings} grating frames in {time.perf_counter() - t0:.0f} s; Gabor fit R² ≥ 0.5 "
              f"for {int((r2 >= 0.5).sum())} of {len(rows)} units; median OSI {np.nanmedian(m.tuning.osi):.2f}; "
              f"{corr_txt}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
