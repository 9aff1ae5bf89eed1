"""Metabolic cost of an exported run: ``python analysis/metabolic_cost.py RUN.nwb --out cost/``.

Per presentation: expected spikes Σλ (when the file carries λ), emitted spikes, fraction of units
active, ATP (a cited preset or your own numbers) and, for spikevae P-VAE runs (prior rates in the
file's provenance), the KL in nats and bits and bits per spike. Writes ``presentations.csv``,
``summary.json`` and ``figures/metabolic.png``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikevae.cli.common import Parser, cli_entry, nonneg_float
from spikevae.errors import ArgumentError


@cli_entry("metabolic_cost")
def main(argv=None) -> int:
    from spikevae import plots
    from spikevae.analysis import PRESETS, EnergyModel, metabolic_table
    from spikevae.io import RunFolder, read_nwb, write_csv, write_json

    p = Parser(prog="metabolic_cost", description=__doc__.splitlines()[0])
    p.add_argument("nwb")
    p.add_output("metabolic_cost", "cost")
    p.add_argument("--preset", default="lennie2003", help=" | ".join(PRESETS))
    p.add_argument("--atp-per-spike", type=nonneg_float, help="override the preset's ATP per spike")
    p.add_argument("--resting-atp", type=nonneg_float, help="override the preset's resting ATP per unit per second")
    args = p.parse_args(argv)
    if args.preset not in PRESETS:
        raise ArgumentError(f"--preset must be one of {', '.join(PRESETS)}, got {args.preset!r}")
    path = Path(args.nwb)
    st = read_nwb(path)
    if len(st.presentations) == 0:
        raise ArgumentError(f"{path} has no trials table: metabolic cost is reported per presentation")
    e = PRESETS[args.preset]
    e = EnergyModel(args.atp_per_spike if args.atp_per_spike is not None else e.atp_per_spike,
                    args.resting_atp if args.resting_atp is not None else e.resting_atp_per_s,
                    e.source if args.atp_per_spike is None and args.resting_atp is None else "custom")
    prior = st.meta.get("prior_rates")
    t = metabolic_table(st, prior=np.asarray(prior) if prior is not None else None, energy=e)
    with RunFolder(args.out, "metabolic_cost", args.overwrite) as run:
        out = run.path
        cols = [k for k, v in t.items() if isinstance(v, np.ndarray)]
        write_csv(out / "presentations.csv", ["presentation", "stimulus"] + cols,
                  ([n, int(st.presentations.stimulus[n])] + [float(t[c][n]) for c in cols]
                   for n in range(len(st.presentations))))
        write_json(out / "summary.json", {"file": str(path), "energy_model": t["energy_model"],
                                          "atp_per_spike": e.atp_per_spike, "resting_atp_per_s": e.resting_atp_per_s,
                                          "mean_per_presentation": t["mean"]})
        # ATP is linear in the spikes: an axis on the spikes panel, not a second copy of its histogram
        panels = {"emitted spikes / presentation": t["emitted_spikes"],
                  "fraction of units active / presentation": t["fraction_active"]}
        if "bits_per_spike" in t:
            panels["KL bits / expected spike, per presentation"] = t["bits_per_spike"]
        fig = plots.histograms(panels, title=f"metabolic cost of {path.name} ({args.preset}: "
                               f"{e.atp_per_spike:.3g} ATP per spike, {e.resting_atp_per_s:.3g} per unit per s at rest)",
                               ylabel="presentations")
        rest = st.n_units * float(np.mean(st.presentations.offset - st.presentations.onset)) * e.resting_atp_per_s
        top = fig.axes[0].secondary_xaxis("top", functions=(lambda n: n * e.atp_per_spike + rest,
                                                            lambda a: (a - rest) / e.atp_per_spike))
        top.set_xlabel("ATP molecules / presentation", fontsize=8)
        top.tick_params(labelsize=7)
        fig.tight_layout()
        plots.save_figure(fig, out / "figures" / "metabolic.png")
        m = t["mean"]
        print(f"per presentation: {m['emitted_spikes']:.3g} spikes emitted ({m['expected_spikes']:.3g} expected), "
              f"{m['atp']:.3g} ATP" + (f", {m['kl_bits']:.3g} bits, {m['bits_per_spike']:.3g} bits per expected spike "
                                       "(total bits / total expected spikes)" if "kl_bits" in m else "") + f"; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
