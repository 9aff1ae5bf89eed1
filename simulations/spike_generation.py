"""The spike layer under different spike-generation settings, side by side, for one model.

    python simulations/spike_generation.py --out spikegen/ [--checkpoint pvae.pt] [--preset cortex]

The same held-out patches (``--stimuli`` patches x ``--repeats``, 100 ms windows with 100 ms gaps)
drive the plain Poisson layer and a named preset (:data:`spikevae.spikes.spike_model.PRESETS`). Writes
``figures/spike_generation.png`` (population PSTH, inter-spike intervals, Fano factor against mean
count), ``summary.json`` (per layer: rate, ISI CV, Fano factor medians and the V1 ranges) and
``summary.md``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from spikevae.cli.common import Parser, cli_entry, positive_float, positive_int, seed


def _parser() -> Parser:
    from spikevae.spikes.spike_model import PRESETS

    p = Parser(prog="spike_generation", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="P-VAE checkpoint (default: the shipped model)")
    p.add_output("spike_generation", "spikegen")
    p.add_argument("--preset", default="cortex", choices=sorted(PRESETS), help="compared with the plain layer")
    p.add_argument("--stimuli", type=positive_int, default=40, help="natural patches presented")
    p.add_argument("--repeats", type=positive_int, default=20, help="presentations of each patch")
    p.add_argument("--target", default="auto", choices=("auto", "cpp_standalone", "cython", "numpy"),
                   help="Brian2 code generation")
    p.add_argument("--dt", type=positive_float, default=0.1, help="simulation step, ms")
    p.add_argument("--seed", type=seed, default=0, help="seed of the stimuli and the spikes")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


@cli_entry("spike_generation")
def main(argv=None) -> int:
    from spikevae import plots
    from spikevae.analysis import isi_cv, psth
    from spikevae.analysis.reference import V1_SPIKE_STATISTICS
    from spikevae.io import RunFolder, write_json, write_text
    from spikevae.models.trained import load_model
    from spikevae.spikes import PoissonLayerConfig
    from spikevae.spikes.spike_model import PRESETS
    from spikevae.workflows.simulate import run_simulation

    args = _parser().parse_args(argv)
    model = load_model(args.checkpoint)
    with RunFolder(args.out, "spike_generation", args.overwrite) as run:
        out = run.path
        window, gap = 0.1, 0.1
        panels, rows = {}, {}
        for label in ("poisson", args.preset):
            layer = PoissonLayerConfig(window=window, gap=gap, dt=args.dt * 1e-3, target=args.target,
                                       spikes=PRESETS[label])
            res = run_simulation(model, "natural", args.stimuli, args.repeats, layer, args.seed, progress=not args.quiet)
            st = res.spikes
            t, hz = psth(st, 0.005, span=window + gap)
            isis = np.concatenate([np.diff(x) for x in st.trains() if len(x) > 1] or [np.zeros(0)])
            c = res.counts.reshape(args.repeats, args.stimuli, -1)  # repeat-major presentations
            mean = c.mean(0)
            with np.errstate(invalid="ignore", divide="ignore"):
                fano = c.var(0, ddof=1) / mean  # (stimuli, units), unbiased variance across repeats
            panels[label] = (t, hz.mean(1), isis, mean.ravel(), fano.ravel())
            cv = isi_cv(st)
            rows[label] = {"spike_model": dataclasses.asdict(PRESETS[label]),
                           "mean_rate_in_windows_hz": float(res.counts.mean() / window),
                           "mean_rate_overall_hz": float(st.n_spikes / (st.n_units * st.t_stop)),
                           "median_isi_cv": float(np.nanmedian(cv)) if np.isfinite(cv).any() else None,
                           # pairs with at least one spike per window on average
                           "mean_fano_ddof1": float(np.nanmean(fano[mean >= 1])) if (mean >= 1).any() else None,
                           "min_isi_ms": float(isis.min() * 1e3) if len(isis) else None,
                           "r2_spikes": res.summary["reconstruction"]["r2_spikes"]}
        plots.save_figure(plots.spike_generation(panels, window), out / "figures" / "spike_generation.png")
        v1 = {k: V1_SPIKE_STATISTICS[k] for k in ("rate_hz", "isi_cv", "fano", "refractory_ms")}
        write_json(out / "summary.json", {"layers": rows, "v1": v1, "stimuli": args.stimuli, "repeats": args.repeats})
        lines = ["| measure | " + " | ".join(rows) + " | V1 (range) |", "|---|" + "---|" * (len(rows) + 1)]
        for key, ref, label in (
                ("mean_rate_in_windows_hz", "rate_hz", "mean rate in the (response) windows, Hz"),
                ("median_isi_cv", "isi_cv", "median ISI CV"),
                ("mean_fano_ddof1", "fano", "mean Fano factor (ddof 1; unit × stimulus pairs with ≥ 1 spike per window)"),
                ("min_isi_ms", "refractory_ms", "shortest ISI, ms"),
                ("r2_spikes", None, "R² of the linearly decoded spike counts")):
            r = f"{v1[ref][0]:g}-{v1[ref][1]:g}" if ref else "–"
            lines.append(f"| {label} | " + " | ".join("–" if rows[n][key] is None else f"{rows[n][key]:.3g}" for n in rows)
                         + f" | {r} |")
        write_text(out / "summary.md", "\n".join(lines) + "\n")
        print("\n".join(lines))
        print(f"wrote {out / 'figures' / 'spike_generation.png'}, {out / 'summary.json'} and {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
