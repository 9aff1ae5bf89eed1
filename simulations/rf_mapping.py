"""Receptive-field mapping of model units: white noise, sparse noise, gratings and the V1 property battery.

    python simulations/rf_mapping.py --checkpoint pvae.pt --out rf/
    python simulations/rf_mapping.py --model lca --dictionary dict.npz --out rf_lca/
    python simulations/rf_mapping.py --model lca --checkpoint pvae.pt --out rf_lca/   # LCA on the P-VAE's atoms
    python simulations/rf_mapping.py --checkpoint ipvae.pt --out rf_ip/   # an iP-VAE through its Brian2 circuit

P-VAE units respond with real spikes: frames → posterior rates λ → Brian2 Poisson neurons
(spikevae.spikes) → counts per frame window. LCA units respond with their sparse-code activity
(reference solver); iP-VAE units by the spikes of their Brian2 inference circuit over ``--iterations``
iterations per frame, with the spatiotemporal STA over iterations in ``sta_lags.npz`` (``sta`` (T + 1, units, P,
P) and the white-noise ``spikes`` of each iteration). The mapping is
:func:`spikevae.workflows.rf_mapping.map_receptive_fields`; this script writes ``white_noise.nwb`` (stimuli + spikes, P-VAE),
``sta.npy``, ``gabor_fits.csv`` (one row per unit),
``tuning.npz`` and figures (RF grid, nx–ny scatter, tuning curves, ON/OFF maps, and
``agreement.png``: each unit's STA beside its encoder filter and decoder atom, with the
distributions of their correlations).

The V1 property battery (docs/rf_mapping.md): ``properties.csv`` (one row per channel: orientation, spatial
frequency, size, F1/F0, ON/OFF overlap, Gabor shape, response level and flags), ``summary.md`` (per property the
model's median beside V1's, with the KS distance where a V1 distribution ships), ``figures/v1_<property>.png``, and
for the P-VAE ``gratings.nwb`` and ``size.nwb``, whose trials tables hold each presentation's grating parameters
(``analysis/tuning_from_nwb.py`` recomputes the tuning from them).
"""
from __future__ import annotations

import time

import numpy as np

from spikevae.cli.common import Parser, cli_entry, positive_float, positive_int, seed, subject_from
from spikevae.errors import ArgumentError


def _defaults():
    """The mapping's defaults, as the library writes them: the protocols' (RFConfig) and the producers' (rf_producer)."""
    import inspect

    from spikevae.workflows.rf_mapping import RF_DT, RFConfig, rf_producer

    model = {k: v.default for k, v in inspect.signature(rf_producer).parameters.items()}
    return RFConfig(), {**model, "max_dt": RF_DT}


def _parser() -> Parser:
    cfg, model = _defaults()
    p = Parser(prog="rf_mapping", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="pvae", choices=("pvae", "lca"),
                   help="pvae: a P-VAE or iP-VAE checkpoint's spiking units; lca: LCA units on a dictionary")
    p.add_argument("--checkpoint", help="P-VAE checkpoint (default: the shipped model); with --model lca, "
                   "LCA runs on its normalised decoder atoms")
    p.add_argument("--dictionary", help="LCA dictionary .npz (for --model lca)")
    p.add_output("rf_mapping", "rf")
    p.add_argument("--frames", type=positive_int, default=None,
                   help="white-noise frames (default: 20,000 for a P-VAE; 5,000 for an iP-VAE, whose circuit runs 16 "
                        "iterations per frame, and for the LCA, whose converged code has no spike noise)")
    p.add_argument("--sparse-frames", type=positive_int, default=None, help="sparse-noise frames (default: 5,000; "
                   "2,000 for an iP-VAE or the LCA)")
    p.add_argument("--grating-repeats", type=positive_int, default=None,
                   help="repeats of the grating grid (default: 4; 2 for an iP-VAE)")
    p.add_argument("--window", type=positive_float, default=model["window"] * 1e3, help="frame duration, ms (P-VAE)")
    p.add_argument("--dt", type=positive_float, default=None,
                   help=f"simulation step, ms (P-VAE; default: per protocol, the largest step <= {model['max_dt'] * 1e3:g} ms at "
                        "which every rate·dt <= 0.05)")
    p.add_argument("--target", default=model["target"], choices=("auto", "cpp_standalone", "cython", "numpy"),
                   help="Brian2 target (P-VAE)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="processes running the Brian2 chunks (the spikes do not change; default: every core for a "
                        "protocol of more than one chunk)")
    p.add_argument("--lam", type=positive_float, default=model["lam"], help="LCA threshold (--model lca)")
    p.add_argument("--iterations", type=positive_int, default=model["n_iter"],
                   help="inference iterations per frame (an iP-VAE checkpoint; its training T is 16)")
    p.add_argument("--space", default=cfg.space, choices=("pixel", "model"),
                   help="pixel: white noise is an image, passed through the checkpoint's whitening filter "
                        "R(f) before the model (a retina-like stage) and the STA is taken against the image; "
                        "model: white noise directly in model-input space")
    p.add_argument("--fit-units", type=positive_int, default=cfg.fit_units,
                   help="fit Gabors to (and run the size protocol on) this many channels, most active first")
    p.add_argument("--orientations", type=positive_int, default=cfg.n_orientations,
                   help="grating orientations over 180 deg")
    p.add_argument("--phases", type=positive_int, default=cfg.n_phases, help="frames per drifting-grating cycle (F1/F0)")
    p.add_argument("--size-repeats", type=positive_int, default=None,
                   help="repeats of the aperture gratings (default: 2; 1 for an iP-VAE)")
    p.add_argument("--pixels-per-degree", type=positive_float, default=None,
                   help="visual-angle mapping of the model's input: adds cycles/deg and degree columns and compares "
                        "peak SF and summation field with V1 (no default: the training photographs have none)")
    p.add_subject()
    p.add_argument("--seed", type=seed, default=cfg.seed, help="seed of the stimuli and the spikes")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


@cli_entry("rf_mapping")
def main(argv=None) -> int:
    from spikevae import plots
    from spikevae.analysis.battery import repeat_draws, rf_summary, v1_properties, v1_summary
    from spikevae.io import RunFolder, atomic_write, load_dictionary, write_csv, write_npz, write_nwb
    from spikevae.io.files import write_text
    from spikevae.models.trained import load_model
    from spikevae.spikes import PoissonLayerConfig
    from spikevae.workflows.rf_mapping import map_receptive_fields

    args = _parser().parse_args(argv)
    subject = subject_from(args)  # refused before anything is loaded
    t0 = time.perf_counter()
    from spikevae.workflows.rf_mapping import is_ipvae

    is_ip = args.model == "pvae" and args.checkpoint is not None and is_ipvae(args.checkpoint)
    full = _defaults()[0]  # a P-VAE's protocol is RFConfig's; an iP-VAE's circuit and the LCA's code need less
    for name, ip, lca in (("frames", 5_000, 5_000), ("sparse_frames", 2_000, 2_000), ("grating_repeats", 2, 1),
                          ("size_repeats", 1, 1)):
        if getattr(args, name) is None:
            setattr(args, name, ip if is_ip else lca if args.model == "lca" else getattr(full, name))
    dt = None if args.dt is None else args.dt * 1e-3
    PoissonLayerConfig(window=args.window * 1e-3, dt=_defaults()[1]["max_dt"] if dt is None else dt,
                       target=args.target).validate()
    kw = dict(frames=args.frames, sparse_frames=args.sparse_frames, grating_repeats=args.grating_repeats,
              window=args.window * 1e-3, dt=dt, target=args.target, space=args.space,
              fit_units=args.fit_units, seed=args.seed, progress=not args.quiet, workers=args.workers,
              n_orientations=args.orientations, n_phases=args.phases, size_repeats=args.size_repeats,
              n_iter=args.iterations)
    if is_ip:
        from spikevae.models.ipvae import load

        source = dict(model=load(args.checkpoint))
        label_model = "ipvae"
    elif args.model == "pvae":
        model = load_model(args.checkpoint)
        model._need_poisson("RF mapping through spikes")
        source = dict(model=model)
        label_model = "pvae"
    else:
        label_model = "lca"
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
        draws = repeat_draws(m.battery) if m.battery is not None else None  # once, for intervals and scores
        props = v1_properties(m, args.pixels_per_degree, draws=draws)
        atomic_write(out / "sta.npy", lambda tmp: np.save(tmp, m.sta))
        if m.sta_lags is not None:
            write_npz(out / "sta_lags.npz", sta=m.sta_lags, spikes=m.lag_spikes)
            plots.save_figure(plots.sta_lags(m.sta_lags, m.order[:12]), out / "figures" / "sta_lags.png")
        if m.white_noise_spikes is not None:
            write_nwb(out / "white_noise.nwb", m.white_noise_spikes, stimuli=m.shown, subject=subject,
                      description="spikevae white-noise RF mapping")
            _write_protocol_nwb(out, m, subject, write_nwb, props)
        write_npz(out / "sparse_noise.npz", on=m.on, off=m.off)
        write_npz(out / "tuning.npz", **{k: v for k, v in m.tuning._asdict().items() if v is not None})  # no pickles
        rows = m.fits
        write_csv(out / "gabor_fits.csv", list(rows[0]), (list(r.values()) for r in rows))
        r2 = np.array([r["r2"] for r in rows])
        for name, fig in plots.rf_mapping_figures(m, label_model).items():
            plots.save_figure(fig, out / "figures" / f"{name}.png")
        write_csv(out / "properties.csv", list(props[0]), (list(r.values()) for r in props))
        summ = v1_summary(props, draws=draws)
        label = {"pvae": "P-VAE units (spikes)", "ipvae": f"iP-VAE units (circuit spikes, {args.iterations} iterations)",
                 "lca": f"LCA channels (λ = {args.lam:g}, ON/OFF rectified)"}[label_model]
        write_text(out / "summary.md", _summary_md(summ, props, label, args))
        from spikevae.analysis.battery import PROPERTIES
        from spikevae.analysis.v1_reference import V1_DATA

        for row in summ:
            if row["property"] not in PROPERTIES or row["unit"] == "fraction":
                continue
            ref = PROPERTIES[row["property"]][2]
            pop = [r for r in props if not r["weak"] and (r["ssi"] > 0.1 or not row["property"].startswith("gsf"))]
            note = (f"{row['label']}: V1 score {row['score']:.2f} [{row['score_lo']:.2f}, {row['score_hi']:.2f}]"
                    if np.isfinite(row["score"]) else "")
            fig = plots.v1_property(np.array([r[row["property"]] for r in pop]), row["label"], row["unit"], label,
                                    V1_DATA.get(ref) if ref else None, note=note)
            plots.save_figure(fig, out / "figures" / f"v1_{row['property']}.png")
        s = rf_summary(m)
        corr_txt = "; ".join(f"median corr(STA, {name}) {s[f'median_corr_sta_{name}']:.2f} over the {len(rows)} fitted"
                             for name in ("encoder", "decoder") if s[f"median_corr_sta_{name}"] is not None)
        what = (f"{m.sta.shape[0]} lca channels ({m.sta.shape[0] // 2} units, ON and OFF)" if label_model == "lca"
                else f"{m.sta.shape[0]} {label_model} units")
        print(f"mapped {what} with {args.frames} white-noise, {args.sparse_frames} "
              f"sparse-noise and {m.n_gratings} grating frames in {time.perf_counter() - t0:.0f} s; Gabor fit R² ≥ 0.5 "
              f"for {int((r2 >= 0.5).sum())} of {len(rows)} fitted units; median OSI {np.nanmedian(m.tuning.osi):.2f} over all "
              f"{len(m.tuning.osi)} channels; "
              f"{corr_txt}; wrote {out}")
        for row in summ:
            if row["property"] in ("circular_variance", "peak_sf_cpp", "sf_bandwidth_octaves", "ssi", "f1_f0",
                                   "on_off_overlap"):
                v1 = f", V1 {row['v1_median']:.3g} (KS {row['ks']:.2f})" if np.isfinite(row["v1_median"]) else ""
                print(f"  {row['label']}: median {row['median']:.3g} over {row['n']} channels{v1}")
            if row["property"] == "overall":
                print(f"  V1 similarity score (Marques et al. 2021), {row['label']}: {row['score']:.2f} "
                      f"[{row['score_lo']:.2f}, {row['score_hi']:.2f}]")
    return 0


def _unit_columns(props: list) -> dict:
    """Each channel's V1 properties as NWB unit columns, described with their units."""
    from spikevae.analysis.battery import PROPERTIES

    other = {"peak_response": "best grating's response, spikes/s", "weak": "best grating below 5 spikes/s",
             "gabor_r2": "R² of the STA's 2-D Gabor fit", "poor_fit": "no Gabor fit with R² >= 0.5",
             "size_measured": "the size protocol measured this unit", "rf_x": "RF centre, column (pixels)",
             "rf_y": "RF centre, row (pixels)", "orientation_fit_r2": "R² of the von Mises orientation fit",
             "sf_fit_r2": "R² of the log-Gaussian SF fit"}
    desc = {k: f"{label}" + (f", {unit}" if unit and unit != "fraction" else "") for k, (label, unit, _) in PROPERTIES.items()}
    desc.update(other)
    cols = {}
    for key in props[0]:
        base = key[:-3] if key.endswith(("_lo", "_hi")) else key
        if base not in desc or key in ("unit", "latent", "sign", "response_unit"):
            continue
        text = desc[base] if base == key else (f"{desc[base]}: {'2.5th' if key.endswith('_lo') else '97.5th'} "
                                               "percentile over resamples of the protocol's repeats")
        cols[key] = (np.array([r[key] for r in props]), text)
    return cols


def _write_protocol_nwb(out, m, subject, write_nwb, props=None) -> None:
    """The grating grid's and the size protocol's spikes, each presentation's grating parameters in the trials,
    and (``props``) each unit's V1 properties as columns of the units table."""
    b = m.battery
    if b is None or m.grating_spikes is None:
        return
    desc = {"orientation": "grating orientation (wave-vector direction), rad in [0, pi)",
            "spatial_frequency": "grating spatial frequency, cycles/pixel of the model's input",
            "phase": "grating phase, rad (0: a peak at the aperture or patch centre)",
            "unit": "channel whose preferred grating and RF centre this presentation uses",
            "diameter": "aperture diameter, pixels", "centre_x": "aperture centre, column (pixels)",
            "centre_y": "aperture centre, row (pixels)"}
    units = _unit_columns(props) if props and len(props) == m.grating_spikes.n_units else None
    write_nwb(out / "gratings.nwb", m.grating_spikes, subject=subject, unit_columns=units,
              trial_columns={k: (v, desc[k]) for k, v in b.grid_params.items()},
              description=f"spikevae grating grid: {len(b.orientations)} orientations x {len(b.frequencies)} spatial "
                          f"frequencies x one drifting cycle of {b.n_phases} frames")
    if m.size_spikes is not None:
        write_nwb(out / "size.nwb", m.size_spikes, subject=subject,
                  trial_columns={k: (v, desc[k]) for k, v in b.size_params.items()},
                  description="spikevae size tuning: each channel's preferred grating in apertures of increasing "
                              "diameter centred on its RF")


def _summary_md(summ, props, label, args) -> str:
    n_weak = sum(r["weak"] for r in props)
    lines = [f"# V1 property battery: {label}", "",
             f"{len(props)} channels; {n_weak} flagged weak (best grating below 5 spikes/s, or no response) and left "
             "out of the medians (they stay in properties.csv). Fractions are means over the channels with the "
             "property defined. The grating summation field is summarised over channels with SSI > 0.1, the "
             "population Cavanaugh et al. (2002) report it for.", "",
             "| property | unit | model median [IQR] | channels | V1 median | KS distance | score [over units] "
             "[over repeats] | V1 source |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summ:
        if r["property"] == "overall":
            continue
        iqr = f" [{r['q1']:.3g}, {r['q3']:.3g}]" if np.isfinite(r["q1"]) else ""
        v1 = f"{r['v1_median']:.3g}" if np.isfinite(r["v1_median"]) else "not shipped"
        ks = f"{r['ks']:.2f}" if np.isfinite(r["ks"]) else ""
        sc = f"{r['score']:.2f} [{r['score_lo']:.2f}, {r['score_hi']:.2f}]" if np.isfinite(r["score"]) else ""
        if np.isfinite(r["score_rep_lo"]):
            sc += f" [{r['score_rep_lo']:.2f}, {r['score_rep_hi']:.2f}]"
        lines.append(f"| {r['label']} | {r['unit']} | {r['median']:.3g}{iqr} | {r['n']} of {r['of']} | {v1} | {ks} | "
                     f"{sc} | {r['v1_source']} |")
    overall = [r for r in summ if r["property"] == "overall"]
    if overall:
        o = overall[0]
        rep = (f"; over 100 resamples of the protocol's repeats [{o['score_rep_lo']:.2f}, {o['score_rep_hi']:.2f}]"
               if np.isfinite(o["score_rep_lo"]) else "")
        lines += ["", f"**V1 similarity score: {o['score']:.2f} [{o['score_lo']:.2f}, {o['score_hi']:.2f}]**, the "
                  f"{o['label']} (each the binned KS similarity of Marques et al. 2021 over its ceiling, 1,000 "
                  "resamples of the channels at V1's sample size; the interval is the 2.5-97.5 percentiles over "
                  f"those resamples{rep})."]
    if args.pixels_per_degree is None:
        lines += ["", "Peak SF in cycles/deg and the summation field in degrees need `--pixels-per-degree` (the "
                  "model's input has no visual angle of its own), so they are not compared with V1 here."]
    lines += ["", "V1 distributions ship only where a published histogram could be transcribed "
              "(`spikevae/analysis/v1_reference.py`); Ringach et al. (2002)'s orientation and F1/F0 distributions "
              "are not among them, so those rows show the model alone.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
