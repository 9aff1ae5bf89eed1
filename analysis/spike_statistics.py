"""Spike statistics of an exported run: ``python analysis/spike_statistics.py RUN.nwb --out stats/``.

Works on any NWB file with a Units table with spike times (and, for Fano factors, correlations
and PSTHs, a trials table). Writes ``units.csv`` (rate, ISI CV, mean Fano factor per unit),
``summary.json`` and ``figures/statistics.png``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikevae.cli.common import Parser, cli_entry, positive_float


@cli_entry("spike_statistics")
def main(argv=None) -> int:
    from spikevae import plots
    from spikevae.analysis import psth, spike_summary
    from spikevae.io import RunFolder, read_nwb, write_csv, write_json

    p = Parser(prog="spike_statistics", description=__doc__.splitlines()[0])
    p.add_argument("nwb", help="NWB file with a Units table")
    p.add_output("spike_statistics", "stats")
    p.add_argument("--psth-bin", type=positive_float, default=10.0, help="PSTH bin, ms")
    args = p.parse_args(argv)
    path = Path(args.nwb)
    st = read_nwb(path)
    with RunFolder(args.out, "spike_statistics", args.overwrite) as run:
        out = run.path
        u, summary = spike_summary(st)
        summary = {"file": str(path), **summary}
        write_csv(out / "units.csv", ["unit", "rate_hz", "isi_cv", "fano_mean_over_stimuli", "spikes"],
                  ([k, u["rate_hz"][k], u["isi_cv"][k], u["fano"][k], int(u["spikes"][k])] for k in range(st.n_units)))
        curve = None
        if len(st.presentations) > 0:
            p_ = st.presentations
            nxt = np.append(p_.onset[1:], st.t_stop) - p_.onset  # up to the next onset: window and gap
            t_psth, rate_psth = psth(st, args.psth_bin * 1e-3, span=float(np.min(nxt)))
            summary["psth_bin_ms"] = args.psth_bin
            summary["psth_hz"] = rate_psth.mean(1).tolist()
            curve = (t_psth, rate_psth.mean(1), float(np.median(p_.offset - p_.onset)))
        panels = {"rate (Hz), whole recording": u["rate_hz"], "ISI CV": u["isi_cv"],
                  "Fano factor (ddof 1), mean over stimuli": u["fano"],
                  "count correlation (total)": u["count_correlations"], "noise correlation": u["noise_correlations"]}
        ylab = {k: "units" for k in list(panels)[:3]} | {k: "unit pairs" for k in list(panels)[3:]}
        plots.save_figure(plots.histograms(panels, title=f"spike statistics of {path.name}", ylabel=ylab, psth=curve),
                          out / "figures" / "statistics.png")
        from spikevae.analysis.reference import v1_comparison

        print(f"{st.n_units} units, {st.n_spikes} spikes; wrote {out}")
        print("the model's value next to typical values reported for V1 (ranges; see docs/spike_generation.md):")
        v1 = v1_comparison(summary)
        for name, v, ref in v1:
            print(f"  {name:24s} {'–' if v is None else format(v, '.3g'):>8s}   {ref}")
        summary["v1_reference"] = {name: ref for name, _, ref in v1}
        write_json(out / "summary.json", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
