"""
Receptive fields of spiking units and the V1 property battery
=============================================================

The shipped P-VAE's units are mapped as a physiologist maps V1 neurons, through their Brian2 spikes only:
white noise (spike-triggered averages and their Gabor fits), sparse noise (ON/OFF maps), a grid of drifting
gratings (orientation and spatial-frequency tuning, F1/F0) and gratings in growing apertures (size tuning).
This is a shorter run than the full protocol (20,000 white-noise frames as there, but 2,000 sparse-noise frames
instead of 5,000 and 2 grating repeats instead of 4); ``simulations/rf_mapping.py`` runs the full protocol and writes
every table, figure and NWB file.

Conventions: responses are spikes per 50-ms frame; tuning curves are means over the 8 phases of a drifting
cycle, with error bars of ± 1 s.e.m. over repeats; properties are summarised over the units that are not
weak (best grating response above 5 spikes/s, Cavanaugh et al.'s criterion), with n given per property.
"""

import numpy as np

import spikevae
from spikevae import plots

model = spikevae.load_model()
m = spikevae.map_receptive_fields(model, frames=20_000, sparse_frames=2000, grating_repeats=2, size_repeats=1,
                                  fit_units=128, seed=0)
good = sum(r["r2"] >= 0.5 for r in m.fits)
print(f"{len(m.fits)} most active units fitted; {good} STAs fit a 2-D Gabor with R² ≥ 0.5")

# %%
# Spike-triggered averages, and the tuning of the most active units
# -----------------------------------------------------------------

figs = plots.rf_mapping_figures(m, "shipped P-VAE")
fig = figs["rf_grid"]
fig = figs["tuning"]
fig = figs["agreement"]

# %%
# The V1 battery
# --------------
# Each property's median [quartiles] over the units that are not weak, beside the published V1 value
# where the toolkit ships V1's distribution (the KS distance is taken at V1's own bin edges), and the score
# of Marques et al. 2021 (binned similarity over its ceiling, with its 95 % interval over units).

rows = spikevae.v1_properties(m)
print(f"{sum(not r['weak'] for r in rows)} of {len(rows)} units respond above 5 spikes/s")
print(f"{'property':55s} {'n':>4s} {'model median [IQR]':>24s} {'V1 median':>9s} {'KS':>5s} {'score':>17s}")
for s in spikevae.v1_summary(rows, n_boot=200):
    iqr = "" if np.isnan(s["q1"]) else f" [{s['q1']:.3g}, {s['q3']:.3g}]"
    med = "" if np.isnan(s["median"]) else f"{s['median']:.3g}{iqr}"
    v1 = "" if np.isnan(s["v1_median"]) else f"{s['v1_median']:.3g}"
    ks = "" if np.isnan(s["ks"]) else f"{s['ks']:.2f}"
    sc = "" if np.isnan(s["score"]) else f"{s['score']:.2f} [{s['score_lo']:.2f}, {s['score_hi']:.2f}]"
    print(f"{s['label'][:55]:55s} {s['n']:>4d} {med:>24s} {v1:>9s} {ks:>5s} {sc:>17s}")

# %%
# One property beside V1
# ----------------------
# Surround suppression (Cavanaugh, Bair & Movshon 2002), on V1's bins.

from spikevae.analysis.v1_reference import V1_DATA  # noqa: E402

fig = plots.v1_property([r["ssi"] for r in rows if not r["weak"]], "surround-suppression index", "",
                        "shipped P-VAE", V1_DATA["ssi"])
