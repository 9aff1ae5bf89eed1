"""Spike statistics of an exported run: ``python analysis/spike_statistics.py RUN.nwb --out stats/``.

Works on any NWB file with a Units table with spike times (and, for Fano factors, correlations
and PSTHs, a trials table). Writes ``units.csv`` (rate, ISI CV, mean Fano factor per unit),
``summary.json`` and ``figures/statistics.png``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from spikevae._cli import UserError, cli_entry


@cli_entry("spike_statistics")
def main(argv=None) -> int:
    from spikevae import plots
    from spikevae.analysis import count_correlations, fano_factors, isi_cv, noise_correlations, psth, unit_rates
    from spikevae.checkpoint import write_csv, write_json
    from spikevae.io import read_nwb

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("nwb", help="NWB file with a Units table")
    p.add_argument("--out", default="stats")
    p.add_argument("--psth-bin", type=float, default=10.0, help="PSTH bin, ms")
    args = p.parse_args(argv)
    if not args.psth_bin > 0:
        raise UserError(f"--psth-bin must be > 0 ms, got {args.psth_bin}")
    path = Path(args.nwb)
    st = read_nwb(path)
    out = Path(args.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    rates = unit_rates(st)
    cv = isi_cv(st)
    has_trials = len(st.presentations) > 1
    fano_unit = np.full(st.n_units, np.nan)
    corr_off = noise_off = np.array([])
    if has_trials:
        _, fano = fano_factors(st)
        n_ok = np.isfinite(fano).sum(0)
        fano_unit = np.where(n_ok > 0, np.nansum(fano, axis=0) / np.maximum(n_ok, 1), np.nan)
        corr = count_correlations(st)
        corr_off = corr[~np.eye(st.n_units, dtype=bool)]
        noise_off = noise_correlations(st)[~np.eye(st.n_units, dtype=bool)]
        _, rate_psth = psth(st, args.psth_bin * 1e-3)

    counts = np.bincount(st.unit, minlength=st.n_units)
    write_csv(out / "units.csv", ["unit", "rate_hz", "isi_cv", "fano_mean_over_stimuli", "spikes"],
              ([k, rates[k], cv[k], fano_unit[k], int(counts[k])] for k in range(st.n_units)))
    summary = {"file": str(path), "n_units": st.n_units, "n_spikes": st.n_spikes, "duration_s": st.t_stop,
               "n_presentations": len(st.presentations), "median_rate_hz": float(np.median(rates)),
               "median_isi_cv": float(np.nanmedian(cv)) if np.isfinite(cv).any() else None,
               "median_fano": float(np.nanmedian(fano_unit)) if np.isfinite(fano_unit).any() else None,
               "mean_count_correlation": float(np.nanmean(corr_off)) if np.isfinite(corr_off).any() else None,
               "mean_noise_correlation": float(np.nanmean(noise_off)) if np.isfinite(noise_off).any() else None}
    if has_trials:
        summary["psth_hz"] = rate_psth.mean(1).tolist()

    write_json(out / "summary.json", summary)
    plots.save_figure(plots.histograms({"rate (Hz)": rates, "ISI CV": cv, "Fano factor": fano_unit,
                                        "count correlation (total)": corr_off,
                                        "noise correlation": noise_off}, title=f"spike statistics of {path.name}"),
                      out / "figures" / "statistics.png")
    print(f"{st.n_units} units, {st.n_spikes} spikes: median rate {summary['median_rate_hz']:.3g} Hz, "
          f"median ISI CV {summary['median_isi_cv']}, median Fano {summary['median_fano']}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
