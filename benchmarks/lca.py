"""LCA inference speed: spikevae's solver (compiled kernel, active units only, optional early stop) against the
plain dense formulation.

1,000 held-out natural patches, K = 512 atoms (the shipped P-VAE's decoder atoms, unit norm),
900 Euler steps with τ = 100 steps (the reference LCA baseline's settings), soft threshold.
Reports time, peak memory (tracemalloc, numpy allocations), final energy and fraction active
for each configuration, side by side in one process, and the speed-up at equal final energy.

``python benchmarks/lca.py [--lam 0.1] [--tol 1e-4]``
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lam", type=float, nargs="+", default=[0.1, 0.5, 1.0])
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--dictionary", help="an LCA dictionary .npz (default: the shipped P-VAE's decoder atoms)")
    args = p.parse_args(argv)

    from spikevae.lca import LCAConfig, lca, lca_dense, lca_fixed_point, normalise_atoms
    from spikevae.model import load_model
    from spikevae.stimuli import natural

    model = load_model()
    phi = normalise_atoms(model.dictionary)
    source = "the shipped P-VAE's decoder atoms"
    if args.dictionary:
        from spikevae.io import load_dictionary

        phi = load_dictionary(args.dictionary)[0]
        source = f"LCA dictionary {args.dictionary}"
    lca(np.zeros((2, phi.shape[0])), phi, LCAConfig(n_steps=1, tol=0))  # builds the kernel once per machine, untimed
    x = natural(args.n, model.preprocessing, seed=3).images.reshape(args.n, -1).astype(np.float64)
    print(f"{args.n} patches, K = {phi.shape[1]} ({source}), 900 steps, tau = 100 steps, soft threshold")
    print(f"{'lambda':>6s} {'solver':34s} {'time s':>8s} {'steps':>6s} {'energy':>12s} {'rel. diff':>10s} "
          f"{'active':>7s} {'peak MB':>8s} {'speed-up':>8s}")
    for lam in args.lam:
        base = LCAConfig(lam=lam, tau=0.01, dt=0.0001, n_steps=900, tol=0)  # fixed length: equal work per row
        rows = []
        for name, fn in [
            ("dense (G·a every step)", lambda: lca_dense(x, phi, base)),
            ("numpy, active units (CSR/BLAS)", lambda: lca(x, phi, base, compiled=False)),
            ("compiled kernel, active units", lambda: lca(x, phi, base)),
            (f"compiled, stop at gap {args.tol:g} (cap 900)",
             lambda: lca(x, phi, LCAConfig(lam, 0.01, 0.0001, 900, "soft", args.tol))),
            ("converged fixed point (lca_fixed_point)", lambda: lca_fixed_point(x, phi, LCAConfig(lam=lam))),
        ]:
            tracemalloc.start()
            t0 = time.perf_counter()
            res = fn()
            wall = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            rows.append((name, wall, res, peak))
        # the floor: the per-step state update of all B·K units with the inhibition left out
        # (not a solver: it bounds what any method that integrates every unit every step can reach)
        from spikevae.lca import _threshold_into

        u = np.zeros((len(x), phi.shape[1]))
        kb = 0.01 * (x @ phi)
        a, tmp, du = np.empty_like(u), np.empty_like(u), np.empty_like(u)
        t0 = time.perf_counter()
        for _ in range(900):
            _threshold_into(u, lam, "soft", a, tmp)
            np.multiply(u, 0.01, out=tmp)
            np.subtract(kb, tmp, out=du)
            u += du
        floor = time.perf_counter() - t0
        e0 = rows[0][2].energy[-1]
        for name, wall, res, peak in rows:
            print(f"{lam:6g} {name:34s} {wall:8.2f} {res.n_steps:6d} {res.energy[-1]:12.6f} "
                  f"{abs(res.energy[-1] - e0) / abs(e0):10.2e} {res.fraction_active:7.3f} {peak:8.0f} "
                  f"{rows[0][1] / wall:8.1f}")
        print(f"{lam:6g} {'floor: state update only, no G·a':34s} {floor:8.2f} {900:6d} {'-':>12s} {'-':>10s} "
              f"{'-':>7s} {'-':>8s} {rows[0][1] / floor:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
