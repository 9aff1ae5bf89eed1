"""
Amortized against iterative inference: P-VAE, iP-VAE and the converged LCA
==========================================================================

The same 1,000 held-out patches coded three ways, each row the metrics of *one* code:

- the amortized P-VAE (one encoder pass): spike counts (one Poisson draw of λ) and the rates λ;
- the iterative P-VAE (iP-VAE: membrane potentials updated by Poisson spikes fed back through the
  dictionary, the shipped ``ipvae_default.pt``), read out after t iterations;
- the LCA on the P-VAE's atoms, *converged*: :func:`spikevae.lca.lca_fixed_point` certified by a relative
  duality gap ≤ 1e-9, and checked here against scikit-learn's Lasso.

R² is the iP-VAE paper's: the mean over patches of each patch's 1 − ‖x − x̂‖² / ‖x − x̄‖² (the pooled R² is
``r2_pooled`` in the rows); "zeros" is the fraction of zero entries in the code; the paper's distance is
√((1 − R²)² + (1 − zeros)²) from the ideal corner (1, 1). Each row names the atoms its code is read out with:
here the LCA runs on the P-VAE's, so it is the P-VAE's peer; ``simulations/inference_comparison.py`` runs the
full comparison, with the LCA on each model's own atoms, frontier against frontier, the spiking LCA and the
Brian2 iP-VAE circuit. This page is its quick version.
"""

import numpy as np
from sklearn.linear_model import Lasso

import spikevae
from spikevae import plots
from spikevae.analysis import code_metrics
from spikevae.data import natural_patches
from spikevae.lca import LCAConfig, energy, lca_fixed_point
from spikevae.models import ipvae
from spikevae.models.checkpoint import default_ipvae_path

pvae = spikevae.load_model()
x = natural_patches(n_train=1, n_val=1000, prep=pvae.preprocessing, seed=1).val.reshape(1000, -1).astype(np.float64)
phi = pvae.dictionary  # (256, 512)
rng = np.random.default_rng(0)
rows = []

lam = pvae.rates(x.reshape(-1, 16, 16))
z = rng.poisson(lam).astype(np.float64)
for readout, code in (("counts", z), ("rates", lam)):
    rows.append({"model": "P-VAE (amortized)", "dictionary": "P-VAE", "readout": readout, "iterations": 1,
                 "n_patches": len(x), **code_metrics(x, code @ phi.T, code)})

# %%
# The iP-VAE, iteration by iteration
# ----------------------------------

ip = ipvae.load(default_ipvae_path())
trace = ipvae.evaluate(ip, x, t_max=256, save_t=(1, 2, 4, 8, 16, 32, 64, 128, 256), seed=0)
for r in trace:
    rows.append({"model": "iP-VAE", "dictionary": "iP-VAE", "readout": "spikes", "iterations": r["t"],
                 "n_patches": len(x), **{k: r[k] for k in ("r2", "r2_pooled", "zeros", "distance", "mse")}})
fig = plots.convergence({"iP-VAE spikes": trace},
                        title="iP-VAE on 1,000 held-out patches: read-out after t inference iterations")

# %%
# The LCA, converged, and checked against scikit-learn
# ----------------------------------------------------
# On unit-norm atoms the LCA's fixed point minimises ½‖x − Φa‖² + λ‖a‖₁, which is scikit-learn's Lasso
# objective ``1/(2D)‖x − Φa‖² + α‖a‖₁`` with α = λ/D.

norms = np.linalg.norm(phi, axis=0)
phin = phi / norms
for lam_lca in (0.3, 0.5, 1.0):
    res = lca_fixed_point(x, phin, LCAConfig(lam=lam_lca))
    assert res.residual.max() <= 1e-9  # the duality gap certifies the optimum
    a = res.codes / norms  # on the P-VAE's atom scale
    rows.append({"model": f"LCA λ={lam_lca:g}", "dictionary": "P-VAE", "readout": "signed", "iterations": None,
                 "n_patches": len(x), **code_metrics(x, a @ phi.T, a)})
    if lam_lca == 0.5:
        D = x.shape[1]
        sk = Lasso(alpha=lam_lca / D, fit_intercept=False, tol=1e-12, max_iter=100_000)
        e_sk = [energy(x[i:i + 1], phin, sk.fit(phin, x[i]).coef_[None], lam_lca)[0] for i in range(20)]
        e_lca = energy(x[:20], phin, res.codes[:20], lam_lca)
        print(f"LCA at λ 0.5 against scikit-learn's Lasso on 20 patches: largest relative energy difference "
              f"{np.max(np.abs(e_lca - e_sk) / np.abs(e_sk)):.1e}")

# %%
# Every code on one plane
# -----------------------

print(f"{'model':22s} {'atoms':7s} {'read-out':8s} {'t':>5s} {'R²':>6s} {'pooled':>6s} {'zeros':>6s} {'distance':>8s}")
for r in rows:
    t = "" if r["iterations"] is None else str(r["iterations"])
    print(f"{r['model']:22s} {r['dictionary']:7s} {r['readout']:8s} {t:>5s} {r['r2']:6.3f} {r['r2_pooled']:6.3f} "
          f"{r['zeros']:6.3f} {r['distance']:8.3f}")
fig = plots.rate_distortion(rows)
