"""Does the default LCA reach the optimum? Energy excess of the default stopping rule and of the old fixed 900 steps.

On held-out natural patches with the shipped P-VAE's atoms (unit norm), soft threshold: ``lca`` with the
defaults (relative duality gap ≤ 1e-4, 200,000-step cap) and with a fixed 900 steps, each against the
certified fixed point (``lca_fixed_point``, gap ≤ 1e-9). Prints steps, inputs certified, the energy excess
``(E − E*)/E*`` (mean and max), the fraction of active units against the optimum's, and wall times.

``python benchmarks/lca_convergence.py [--n 50] [--lam 0.1 0.05]``
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lam", type=float, nargs="+", default=[0.1, 0.05])
    p.add_argument("--n", type=int, default=50)
    args = p.parse_args(argv)

    from spikevae.lca import LCAConfig, energy, lca, lca_fixed_point, normalise_atoms
    from spikevae.models.trained import load_model
    from spikevae.stimuli import natural

    model = load_model()
    phi = normalise_atoms(model.dictionary)
    x = natural(args.n, model.preprocessing, seed=1).images.reshape(args.n, -1).astype(np.float64)
    lca(np.zeros((2, phi.shape[0])), phi, LCAConfig(n_steps=1, tol=0))  # builds the kernel, untimed
    for lam in args.lam:
        fp = lca_fixed_point(x, phi, LCAConfig(lam=lam))
        e_star = energy(x, phi, fp.codes, lam)
        t0 = time.perf_counter()
        old = lca(x, phi, LCAConfig(lam=lam, n_steps=900, tol=0))
        t_old = time.perf_counter() - t0
        t0 = time.perf_counter()
        new = lca(x, phi, LCAConfig(lam=lam))
        t_new = time.perf_counter() - t0
        ex_old = (energy(x, phi, old.codes, lam) - e_star) / e_star
        ex_new = (energy(x, phi, new.codes, lam) - e_star) / e_star
        print(f"λ {lam:g}: fixed 900 steps {t_old:.1f} s, excess mean {ex_old.mean():.2e} max {ex_old.max():.2e}, "
              f"active {(old.codes != 0).mean():.3f} | default {t_new:.1f} s, steps median {np.median(new.steps):.0f} "
              f"max {new.steps.max()}, certified {int(new.converged.sum())}/{args.n}, excess mean {ex_new.mean():.2e} "
              f"max {ex_new.max():.2e}, active {(new.codes != 0).mean():.3f} (optimum {(fp.codes != 0).mean():.3f})",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
