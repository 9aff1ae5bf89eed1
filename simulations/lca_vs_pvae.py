"""Amortized (P-VAE encoder) against iterative (LCA) inference on the same patches and dictionary.

    python simulations/lca_vs_pvae.py --checkpoint pvae.pt --out report/ [--lams 0.001 0.01 0.1 0.5 1.0]

Three comparisons, side by side, all on held-out natural patches and the P-VAE's own decoder
atoms (normalised for the LCA; its codes are rescaled, so errors are comparable):

1. reconstruction against sparsity: the P-VAE encoder in one pass, the LCA across λ (the
   reference's amortization-gap experiment, its Fig. 3b; anchor_pvae.md §3.6);
2. spikes and their cost: the P-VAE's Brian2 Poisson neurons (:func:`spikevae.workflows.simulate.run_simulation`, repeated
   presentations) against the spiking LCA (Brian2 integrate-and-fire, ON/OFF pairs, at
   ``--lam-spiking``): rates, ISI CV, Fano factors, count and noise correlations, spikes and ATP
   per second (Lennie 2003), information per spike (P-VAE);
3. receptive fields: white-noise STA, gratings and Gabor fits for both models' units
   (:func:`spikevae.workflows.rf_mapping.map_receptive_fields`; P-VAE units by their spikes, LCA units by their codes).

Writes ``report.md``, ``results.json`` and ``figures/`` (with the RF grids and STA agreement of both
models).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from spikevae.cli.common import Parser, cli_entry, nonneg_float, positive_float, positive_int, seed
from spikevae.errors import ArgumentError


def _spiking_rows(args, model, out, progress):
    """P-VAE Poisson spikes and spiking-LCA spikes for the same patches → per-model summaries."""
    from spikevae.analysis import PRESETS, metabolic_table, spike_summary
    from spikevae.brian.lca import spiking_lca
    from spikevae.lca import LCAConfig, normalise_atoms
    from spikevae.spikes import PoissonLayerConfig
    from spikevae.workflows.simulate import run_simulation

    window = args.window * 1e-3
    sim = run_simulation(model, "natural", args.stimuli, args.repeats,
                         PoissonLayerConfig(window=window, dt=1e-4, target=args.target), args.seed, progress=progress)
    st_p = sim.spikes
    prior = np.asarray(st_p.meta["prior_rates"])
    energy = PRESETS["lennie2003"]
    per_p, sum_p = spike_summary(st_p)
    met_p = metabolic_table(st_p, prior, energy)["mean"]
    phi = normalise_atoms(model.dictionary)
    n_slca = min(args.slca_patches, args.stimuli)
    x = sim.stimuli.images[:n_slca].reshape(n_slca, -1).astype(np.float64)
    dur = args.slca_duration * 1e-3
    sp = spiking_lca(x, phi, LCAConfig(lam=args.lam_spiking, threshold="soft"), duration=dur, seed=args.seed,
                     target="cython" if args.target in ("auto", "cython", "cpp_standalone") else "numpy",
                     meta={"lam": args.lam_spiking, "seed": args.seed})
    st_l = sp.spikes
    per_l, sum_l = spike_summary(st_l)
    met_l = metabolic_table(st_l, None, energy)["mean"]
    rows = {
        "P-VAE (Poisson neurons)": {
            "units": st_p.n_units, "presentations": len(st_p.presentations), "window_s": window, **sum_p,
            "spikes_per_presentation": met_p["emitted_spikes"],
            "spikes_per_unit_per_s": met_p["emitted_spikes"] / (st_p.n_units * window),
            "atp_per_unit_per_s": met_p["atp"] / (st_p.n_units * window),
            "kl_bits_per_presentation": met_p["kl_bits"], "bits_per_spike": met_p["bits_per_spike"],
            "fraction_active_per_presentation": met_p["fraction_active"]},
        "spiking LCA (IF neurons, ON/OFF)": {
            "units": st_l.n_units, "presentations": len(st_l.presentations), "window_s": dur, **sum_l,
            "spikes_per_presentation": met_l["emitted_spikes"],
            "spikes_per_unit_per_s": met_l["emitted_spikes"] / (st_l.n_units * dur),
            "atp_per_unit_per_s": met_l["atp"] / (st_l.n_units * dur),
            "kl_bits_per_presentation": None, "bits_per_spike": None,
            "fraction_active_per_presentation": met_l["fraction_active"]},
    }
    from spikevae import plots
    from spikevae.io import write_nwb

    write_nwb(out / "spiking_lca.nwb", st_l, stimuli=sim.stimuli.images[:n_slca], description="spikevae spiking LCA "
              "on the P-VAE's atoms (lca_vs_pvae)")
    write_nwb(out / "pvae.nwb", st_p, stimuli=sim.stimuli.images, description="spikevae P-VAE spikes (lca_vs_pvae)")
    fig = plots.histograms({"P-VAE rate (Hz)": per_p["rate_hz"], "LCA rate (Hz)": per_l["rate_hz"],
                            "P-VAE ISI CV": per_p["isi_cv"], "LCA ISI CV": per_l["isi_cv"]},
                           title="spike statistics: P-VAE Poisson neurons against spiking LCA", ylabel="units")
    plots.save_figure(fig, out / "figures" / "spike_statistics.png")
    extra = {"pvae_expected_spikes_same_patches": float(sim.rates[:n_slca].sum(1).mean()),  # λ of those patches
             "slca_rate_code_l1": float(np.abs(sp.codes).sum(1).mean())}
    return rows, extra


def _fmt(v, spec=".3g"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec)


def _parser() -> Parser:
    p = Parser(prog="lca_vs_pvae", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="P-VAE checkpoint with a linear decoder (default: the shipped model)")
    p.add_output("lca_vs_pvae", "report")
    p.add_argument("--n-patches", type=positive_int, default=1000, help="patches for reconstruction against sparsity")
    p.add_argument("--lams", type=nonneg_float, nargs="+", default=[0.001, 0.01, 0.1, 0.5, 1.0],
                   help="LCA thresholds λ of the sweep")
    p.add_argument("--lam-spiking", type=positive_float, default=0.5,
                   help="λ of the spiking LCA and of the LCA RF mapping")
    p.add_argument("--stimuli", type=positive_int, default=20, help="patches presented to the P-VAE's spiking units")
    p.add_argument("--repeats", type=positive_int, default=10,
                   help="repeats of each patch (P-VAE; Fano, noise correlations)")
    p.add_argument("--window", type=positive_float, default=100.0, help="P-VAE presentation window, ms")
    p.add_argument("--slca-patches", type=positive_int, default=8,
                   help="patches for the spiking LCA (4K² synapses each; at most 9 for K = 512)")
    p.add_argument("--slca-duration", type=positive_float, default=500.0,
                   help="spiking LCA simulated time per patch, ms")
    p.add_argument("--rf-frames", type=positive_int, default=50_000,
                   help="white-noise frames for the RF mapping (P-VAE STAs need about 50,000)")
    p.add_argument("--rf-fit-units", type=positive_int, default=128, help="Gabor fits per model (most active units)")
    p.add_argument("--no-spikes", action="store_true", help="skip the spike comparison")
    p.add_argument("--no-rf", action="store_true", help="skip the receptive-field comparison")
    p.add_argument("--target", default="auto", choices=("auto", "cpp_standalone", "cython", "numpy"),
                   help="Brian2 target for the P-VAE neurons")
    p.add_argument("--seed", type=seed, default=0, help="seed of the stimuli and the spikes")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


@cli_entry("lca_vs_pvae")
def main(argv=None) -> int:
    from spikevae import plots
    from spikevae.analysis import lifetime_sparsity
    from spikevae.data import natural_patches
    from spikevae.io import RunFolder, write_json, write_text
    from spikevae.lca import LCAConfig, lca_fixed_point
    from spikevae.models.trained import load_model

    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    if args.n_patches < 2:
        raise ArgumentError("--n-patches must be >= 2")
    model = load_model(args.checkpoint)
    if model.family != "poisson" or model.config.decoder != "lin":
        raise ArgumentError("the comparison needs a Poisson VAE with a linear decoder")
    ck_path = model.path
    with RunFolder(args.out, "lca_vs_pvae", args.overwrite) as run:
        out = run.path
        prep = model.preprocessing

        # 1. reconstruction against sparsity
        x = natural_patches(1, args.n_patches, prep, seed=args.seed + 1).val.reshape(args.n_patches, -1)
        x = x.astype(np.float64)
        phi = model.dictionary  # (D, K)
        norms = np.linalg.norm(phi, axis=0)
        rates = model.rates(x)  # λ, expected counts per window
        z = np.random.default_rng(args.seed).poisson(rates)  # exact spike counts in one window
        pvae = {"mse_map": float(((x - rates @ phi.T) ** 2).sum(1).mean()),
                "mse_counts": float(((x - z @ phi.T) ** 2).sum(1).mean()),
                "lifetime_sparsity": float(lifetime_sparsity(z).mean()),
                "fraction_active": float((z > 0).mean()), "expected_spikes": float(rates.sum(1).mean())}
        rows = []
        for lam_lca in args.lams:
            res = lca_fixed_point(x, phi / norms, LCAConfig(lam=lam_lca))  # converged: duality gap <= 1e-9
            a = res.codes / norms  # back to the P-VAE's atom scale: Φ a = (Φ/‖φ‖)(‖φ‖ a)
            rows.append({"lambda": lam_lca, "mse": float(((x - a @ phi.T) ** 2).sum(1).mean()),
                         "lifetime_sparsity": float(lifetime_sparsity(np.abs(res.codes)).mean()),
                         "fraction_active": res.fraction_active, "l1": float(np.abs(res.codes).sum(1).mean())})
        results = {"n_patches": args.n_patches, "pvae": pvae, "lca_on_pvae_dictionary": rows,
                   "checkpoint": model.checkpoint.get("provenance", {})}
        plots.save_figure(plots.recon_vs_sparsity(
            {"P-VAE encoder (posterior mean)": (pvae["lifetime_sparsity"], pvae["mse_map"])},
            {"LCA on the P-VAE dictionary (λ)": ([r["lifetime_sparsity"] for r in rows], [r["mse"] for r in rows],
                                                  [r["lambda"] for r in rows])},
            title="amortization gap: one-pass encoder against iterative inference"), out / "figures" / "recon_vs_sparsity.png")
        lines = ["# Amortized (P-VAE) against iterative (LCA) inference", "",
                 f"Checkpoint `{Path(ck_path).name}`; held-out natural patches; LCA on the P-VAE's decoder atoms "
                 "(normalised).", "",
                 "## Reconstruction against sparsity", "",
                 f"{args.n_patches} patches; LCA codes at the converged fixed point (relative duality gap ≤ 1e-9). "
                 "Errors are squared errors "
                 "summed over the pixels of a patch.", "",
                 "| model | squared error | lifetime sparsity | fraction active | cost per patch |", "|---|---|---|---|---|",
                 f"| P-VAE encoder, rates λ | {pvae['mse_map']:.1f} | {pvae['lifetime_sparsity']:.3f} (counts) | "
                 f"{pvae['fraction_active']:.3f} | {pvae['expected_spikes']:.1f} expected spikes |",
                 f"| P-VAE, one window of Poisson counts | {pvae['mse_counts']:.1f} | | | |"]
        for r in rows:
            lines.append(f"| LCA, λ = {r['lambda']:g} | {r['mse']:.1f} | {r['lifetime_sparsity']:.3f} | "
                         f"{r['fraction_active']:.3f} | ℓ1 {r['l1']:.1f} |")
        lines += ["", "![reconstruction vs sparsity](figures/recon_vs_sparsity.png)", ""]

        # 2. spikes, statistics and metabolic cost
        if not args.no_spikes:
            spk, extra = _spiking_rows(args, model, out, not args.quiet)
            results["spikes"], results["spikes_extra"] = spk, extra
            names = list(spk)
            table = [("units", "units", "d"), ("presentations", "presentations", "d"),
                     ("window_s", "window or duration (s)", "g"), ("mean_rate_hz", "mean rate (Hz)", ".3g"),
                     ("fraction_units_spiking", "units that spiked", ".3f"),
                     ("fraction_active_per_presentation", "units active per presentation", ".3f"),
                     ("median_isi_cv", "median ISI CV", ".3f"), ("median_fano", "median Fano factor", ".3f"),
                     ("mean_count_correlation", "mean count correlation (total)", ".3f"),
                     ("mean_noise_correlation", "mean noise correlation", ".3f"),
                     ("spikes_per_presentation", "spikes per presentation", ".1f"),
                     ("spikes_per_unit_per_s", "spikes per unit per s", ".3g"),
                     ("atp_per_unit_per_s", "ATP per unit per s (Lennie 2003)", ".3g"),
                     ("kl_bits_per_presentation", "information (KL, bits) per presentation", ".1f"),
                     ("bits_per_spike", "bits per spike", ".3f")]
            lines += ["## Spikes, spike statistics and metabolic cost", "",
                      f"P-VAE: {args.stimuli} of the patches × {args.repeats} repeats, {args.window:g} ms windows, "
                      f"Brian2 Poisson neurons driven by λ. Spiking LCA: the first {min(args.slca_patches, args.stimuli)} "
                      f"of those patches, {args.slca_duration:g} ms each, λ = {args.lam_spiking:g}, integrate-and-fire "
                      "neurons with spike-carried inhibition, ON/OFF pairs (2K units); the network has no noise, so a "
                      "repeat gives the same spikes and Fano factors and noise correlations are not defined (–).", "",
                      "| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
            for key, label, spec in table:
                lines.append(f"| {label} | " + " | ".join(_fmt(spk[n].get(key), spec) for n in names) + " |")
            lines += ["", f"The P-VAE expects {extra['pvae_expected_spikes_same_patches']:.1f} spikes per 100-ms-window "
                      f"presentation of the spiking-LCA patches; the spiking LCA's rate code (τ·rate) has ℓ1 "
                      f"{extra['slca_rate_code_l1']:.2f} per patch.", "",
                      "![spike statistics](figures/spike_statistics.png)", ""]

        # 3. receptive fields
        if not args.no_rf:
            from spikevae.analysis.battery import rf_summary
            from spikevae.workflows.rf_mapping import map_receptive_fields

            common = dict(frames=args.rf_frames, sparse_frames=max(1, args.rf_frames // 4), grating_repeats=1,
                          fit_units=args.rf_fit_units, seed=args.seed, progress=not args.quiet)
            maps = {"pvae": map_receptive_fields(model, target=args.target, **common),
                    "lca": map_receptive_fields(dictionary=phi, preprocessing=prep, lam=args.lam_spiking, **common)}
            for name, m in maps.items():
                figs = plots.rf_mapping_figures(m, name)
                for fig in ("rf_grid", "agreement"):
                    plots.save_figure(figs[fig], out / "figures" / f"{fig}_{name}.png")
            rfs = {"P-VAE (spikes, pixel-space white noise)": rf_summary(maps["pvae"]),
                   f"LCA, λ = {args.lam_spiking:g} (codes, model-space white noise)": rf_summary(maps["lca"])}
            results["receptive_fields"] = rfs
            names = list(rfs)
            table = [("units_fitted", "units fitted (most active)", "d"), ("gabor_fraction", "Gabor fit R² ≥ 0.5", ".3f"),
                     ("median_r2", "median R², fitted units", ".3f"), ("median_osi", "median OSI, fitted units", ".3f"),
                     ("median_frequency", "median frequency (c/px), good fits", ".3f"),
                     ("median_nx", "median nx, good fits", ".3f"), ("median_ny", "median ny, good fits", ".3f"),
                     ("median_corr_sta_encoder", "median corr(STA, encoder filter)", ".3f"),
                     ("median_corr_sta_decoder", "median corr(STA, decoder atom)", ".3f")]
            lines += ["## Receptive fields", "",
                      f"{args.rf_frames} white-noise frames, {max(1, args.rf_frames // 4)} sparse-noise frames, 128 "
                      "gratings; Gabor fits to the STAs of the most active units "
                      "(`spikevae.workflows.rf_mapping.map_receptive_fields`, as `simulations/rf_mapping.py` runs it). "
                      "The LCA has no encoder filter: its units' feed-forward "
                      "filter is its own atom.", "",
                      "| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
            for key, label, spec in table:
                lines.append(f"| {label} | " + " | ".join(_fmt(rfs[n].get(key), spec) for n in names) + " |")
            lines += ["", "P-VAE: STA, encoder filter and decoder atom per unit", "",
                      "![agreement](figures/agreement_pvae.png)", "",
                      "| P-VAE STAs (spikes) | LCA code-weighted averages |", "|---|---|",
                      "| ![](figures/rf_grid_pvae.png) | ![](figures/rf_grid_lca.png) |", ""]

        results["wall_seconds"] = time.perf_counter() - t0
        write_json(out / "results.json", results)
        write_text(out / "report.md", "\n".join(lines))
        print(f"P-VAE {pvae['mse_map']:.1f} at sparsity {pvae['lifetime_sparsity']:.3f}; LCA " +
              ", ".join(f"λ {r['lambda']:g}: {r['mse']:.1f} at {r['lifetime_sparsity']:.3f}" for r in rows) +
              f"; wrote {out / 'report.md'} ({results['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
