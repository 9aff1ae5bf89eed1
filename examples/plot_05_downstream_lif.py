"""
The P-VAE's spikes drive a downstream network
=============================================

A run's spikes are input for any Brian2 model: :meth:`~spikevae.records.SpikeTrains.to_brian` gives a
``SpikeGeneratorGroup`` that replays them (the presentations travel with it), and
:meth:`~spikevae.records.SpikeTrains.to_pynn` a PyNN ``SpikeSourceArray`` population for NEST or any other
PyNN back end. Here the shipped P-VAE's 512 units, shown 20 held-out patches 5 times (100-ms windows, 50-ms
gaps), project onto 40 leaky integrate-and-fire neurons (τ = 10 ms, threshold 20 mV above rest, 2-ms refractory
period). Neuron j pools the 32 units that one of 40 other patches (its template) drives most, so its input is
that feature's code; its output rate follows the expected input it gets, through the LIF's threshold.

Conventions: synaptic weights are voltage jumps (mV per input spike); rates are spikes per second over each
presentation's window.
"""

import brian2 as b2
import numpy as np

import spikevae
from spikevae.data import natural_patches

model = spikevae.load_model()
x = natural_patches(n_train=1, n_val=60, prep=model.preprocessing, seed=2).val
stimuli, templates = x[:20], x[20:]
lam = model.rates(stimuli)
repeats = 5
st = spikevae.simulate_spikes(np.tile(lam, (repeats, 1)), window=0.1, gap=0.05, seed=1,
                              stimulus=np.tile(np.arange(20), repeats), repeat=np.repeat(np.arange(repeats), 20))
print(st)

# %%
# The downstream population
# -------------------------
# Each LIF neuron gets the 32 units whose rates its template drives most, 1.2 mV per spike.

n_lif, fan_in = 40, 32
drive = model.rates(templates[:n_lif])  # (40, 512): how strongly each template drives each unit
pre = np.argsort(-drive, axis=1)[:, :fan_in]

b2.start_scope()
source = st.to_brian()
lif = b2.NeuronGroup(n_lif, "dv/dt = -v / (10*ms) : volt (unless refractory)", threshold="v > 20*mV",
                     reset="v = 0*mV", refractory=2 * b2.ms, method="exact")
syn = b2.Synapses(source, lif, on_pre="v_post += 1.2*mV")
syn.connect(i=pre.ravel(), j=np.repeat(np.arange(n_lif), fan_in))
out = b2.SpikeMonitor(lif)
b2.run(st.t_stop * b2.second)
print(f"{out.num_spikes} spikes of {n_lif} LIF neurons from {st.n_spikes} input spikes")

# %%
# Its response
# ------------
# Top: the LIF raster over the first 20 presentations (grey bands: the stimulus windows). Bottom: each LIF
# neuron's rate per stimulus (mean over repeats) against its expected input, the sum of λ over its 32 input
# units for that stimulus: the population's input-output curve, silent below threshold and rising above it.

import matplotlib.pyplot as plt  # noqa: E402
from scipy import stats  # noqa: E402

p = source.presentations
t_lif, i_lif = np.asarray(out.t_), np.asarray(out.i)
k = np.searchsorted(p.onset, t_lif, side="right") - 1
inside = (k >= 0) & (t_lif < p.offset[np.clip(k, 0, None)])
counts = np.zeros((len(p.onset), n_lif))
np.add.at(counts, (k[inside], i_lif[inside]), 1)
rate = np.zeros((20, n_lif))
for s in range(20):
    rate[s] = counts[p.stimulus == s].mean(0) / 0.1
expected_in = lam[:, pre].sum(-1)  # (stimulus, neuron): expected input spikes per window

fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(7, 6))
for on, off in zip(p.onset[:20], p.offset[:20]):
    ax0.axvspan(on, off, color="0.9")
first = t_lif < p.offset[19]
ax0.plot(t_lif[first], i_lif[first], "|", color="k", ms=4)
ax0.set(xlabel="time (s)", ylabel="LIF neuron", title="downstream LIF population driven by the P-VAE's spikes")
ax1.scatter(expected_in.ravel(), rate.ravel(), s=6, alpha=0.5)
r = stats.spearmanr(expected_in.ravel(), rate.ravel())[0]
ax1.set(xlabel="expected input spikes per 100-ms window", ylabel="LIF rate (spikes/s)",
        title=f"input-output (Spearman r = {r:.2f} over {rate.size} stimulus-neuron pairs)")
fig.tight_layout()
print(f"rank correlation of LIF rate and expected input: {r:.2f}")
