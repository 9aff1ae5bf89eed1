"""
Real spike trains: Brian2 Poisson neurons, their statistics and an NWB file
===========================================================================

The shipped P-VAE's rates λ drive Brian2 Poisson neurons (one per latent): each presentation window of
100 ms draws spikes at rate λ / window. Twenty held-out patches are each shown 10 times, with 50-ms gaps.
The statistics use Elephant on Neo objects, as ``analysis/spike_statistics.py`` does, with the toolkit's
conventions: Fano factors across repeats with the sample variance (ddof = 1, so a Poisson count gives 1),
rates in Hz over the whole recording, bits per spike as total KL bits over total expected spikes.
"""

import tempfile
from pathlib import Path

import numpy as np

import spikevae
from spikevae import analysis, plots
from spikevae.data import natural_patches

model = spikevae.load_model()
x = natural_patches(n_train=1, n_val=20, prep=model.preprocessing, seed=1).val
lam = model.rates(x)  # (20, 512) expected counts per window
repeats = 10
st = spikevae.simulate_spikes(np.tile(lam, (repeats, 1)), window=0.1, gap=0.05, seed=1,
                              stimulus=np.tile(np.arange(20), repeats), repeat=np.repeat(np.arange(repeats), 20))
print(f"{st.n_spikes} spikes from {st.n_units} units in {st.t_stop:.1f} s "
      f"({lam.sum() * repeats:.0f} expected)")

# %%
# The raster
# ----------
# The first 10 presentations; rows are the 64 units that fire most, named by their index.

fig = plots.raster(st, max_units=64, max_presentations=10)

# %%
# Counts against λ
# ----------------
# Every (presentation, unit) count against its λ; in quantile bins of λ, the count's mean and variance both
# equal λ, as for a Poisson neuron.

fig = plots.counts_vs_expected(st.counts(), st.presentations.expected)

# %%
# Spike statistics
# ----------------

per_unit, summary = analysis.spike_summary(st)
for key in ("median_rate_hz", "median_isi_cv", "median_fano", "mean_noise_correlation"):
    if summary.get(key) is not None:
        print(f"{key:28s} {summary[key]:.3f}")
t, hz = analysis.psth(st, 0.01, span=0.15)
fig = plots.histograms({"rate (Hz), whole recording": per_unit["rate_hz"], "ISI CV": per_unit["isi_cv"],
                        "Fano factor (ddof 1), mean over stimuli": per_unit["fano"]},
                       ylabel="units", psth=(t, hz.mean(1), 0.1),
                       title="spike statistics of the shipped model's Poisson neurons (Elephant)")

# %%
# Metabolic cost and information per spike
# ----------------------------------------

cost = analysis.metabolic_table(st, prior=model.prior_rates)["mean"]  # prior rates r: the KL's reference
print(f"per presentation: {cost['emitted_spikes']:.1f} spikes emitted ({cost['expected_spikes']:.1f} expected), "
      f"{cost['atp']:.3g} ATP (Lennie 2003), KL {cost['kl_bits']:.1f} bits, "
      f"{cost['bits_per_spike']:.3f} bits per expected spike")

# %%
# NWB and Neo
# -----------
# The run written to NWB with pynwb and read back: the same spikes, to the sample.

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "run.nwb"
    spikevae.io.write_nwb(path, st, stimuli=x)
    back = spikevae.io.read_nwb(path)
    assert np.array_equal(back.time, st.time) and np.array_equal(back.unit, st.unit)
    print(f"wrote and read back {path.name}: {back.n_spikes} spikes, {len(back.presentations)} trials")
block = st.to_neo()
print(f"as Neo: {len(block.segments[0].spiketrains)} SpikeTrains in one Segment")
