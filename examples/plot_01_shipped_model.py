"""
The shipped P-VAE: its validation numbers and its dictionary
============================================================

The toolkit ships a Poisson VAE (``spikevae/assets/pvae_default.pt``: linear encoder and decoder, K = 512
latents, 16×16 whitened natural-image patches, β = 1, exact objective, 300 epochs). Here it encodes
10,000 held-out patches of the two validation photographs, as ``make demo`` does; the README's table is
these numbers (a test checks it against :func:`spikevae.workflows.evaluation.validation_summary`).

Conventions: MSE is the full squared error per patch, ‖x − x̂‖² summed over the 256 pixels (the patch
energy ‖x‖² is what predicting 0 costs); KL is in nats per patch; "sampled counts" are one draw of exact
Poisson counts per patch, "posterior mean" the rates λ themselves; a latent is active when its mean KL
exceeds 0.01 nats.
"""

import numpy as np

import spikevae
from spikevae import plots
from spikevae.workflows.evaluation import format_summary, validation_summary

model = spikevae.load_model()  # the shipped model; load_model("pvae.pt") for your own
m = validation_summary(model, n_val=10_000, seed=0)
print(f"{m['n_patches']} held-out patches from {m['source']}")
print(format_summary(m))

# %%
# The dictionary
# --------------
# All 512 decoder atoms (columns of Φ), ordered by their mean KL on training patches (the number above
# each, nats). Most are localised, oriented, band-pass: Gabor-like, as in the paper's Fig. 4.

kl = np.asarray(model.checkpoint["metrics"]["kl_per_latent_train"])
atoms = model.dictionary.T.reshape(-1, 16, 16)
fig = plots.basis_grid(atoms, np.argsort(-kl), n_show=len(atoms), ncols=32, labels=kl,
                       title="the shipped P-VAE's 512 decoder atoms, by per-latent KL (nats)")

# %%
# The expected counts
# -------------------
# The rates λ of 200 held-out patches, per (patch, unit) on a log scale and summed per patch: the
# expected spikes of 512 units in one 100-ms window (λ is a count per window, not a rate in Hz).

from spikevae.data import natural_patches  # noqa: E402

x = natural_patches(n_train=1, n_val=200, prep=model.preprocessing, seed=1).val
lam = model.rates(x)
print(f"expected spikes per patch (Σλ over 512 units): median {np.median(lam.sum(1)):.1f}; "
      f"units with λ > 1 per patch: median {np.median((lam > 1).sum(1)):.0f}")
fig = plots.histograms({"λ per (patch, unit), log10": np.log10(lam.ravel()),
                        "Σλ per patch (expected spikes)": lam.sum(1)},
                       ylabel={"λ per (patch, unit), log10": "(patch, unit) pairs",
                               "Σλ per patch (expected spikes)": "patches"},
                       title="expected spike counts per 100-ms window, 200 held-out patches")
