"""LCA inference speed: spikevae's solver (compiled kernel, active units only, optional early stop) against the
plain dense formulation.

1,000 held-out natural patches, K = 512 atoms (the shipped P-VAE's decoder atoms, unit norm),
900 Euler steps with τ = 100 steps (the reference LCA baseline's settings), soft threshold.
Reports time, peak memory (tracemalloc, numpy allocations), final energy and fraction active
for each configuration, side by side in one process, and the speed-up at equal final energy.

``python benchmarks/lca.py [--lam 0.1] [--tol 1e-4]``; ``--converge`` times both to convergence instead
(the same optimality test stops each; energies against the certified optimum).
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
    p.add_argument("--converge", action="store_true",
                   help="time to converge (relative duality gap <= --tol, i.e. within tol of the optimal energy) "
                        "instead of a fixed 900 steps: the dense formulation against the compiled kernel")
    args = p.parse_args(argv)

    from spikevae.lca import LCAConfig, lca, lca_dense, lca_fixed_point, normalise_atoms
    from spikevae.models.trained import load_model
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
    if args.converge:
        return _converge(x, phi, args, source)
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
            res, wall, peak = _timed(fn)
            rows.append((name, wall, res, peak))
        # the floor: the per-step state update of all B·K units with the inhibition left out
        # (not a solver: it bounds what any method that integrates every unit every step can reach)
        from spikevae.lca.solvers import threshold_into

        u = np.zeros((len(x), phi.shape[1]))
        kb = 0.01 * (x @ phi)
        a, tmp, du = np.empty_like(u), np.empty_like(u), np.empty_like(u)
        t0 = time.perf_counter()
        for _ in range(900):
            threshold_into(u, lam, "soft", a, tmp)
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


def _timed(fn):
    """(result, wall s, peak numpy MB) of ``fn()``."""
    tracemalloc.start()
    t0 = time.perf_counter()
    res = fn()
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return res, wall, peak


def _converge(x, phi, args, source) -> int:
    """Time to converge at equal converged energy: both solvers stop on the same optimality test (relative
    duality gap <= tol, checked every 100 steps); each result's energy is compared with the certified optimum
    (``lca_fixed_point``, gap <= 1e-9)."""
    from spikevae.lca import LCAConfig, energy, lca, lca_dense, lca_fixed_point

    print(f"{len(x)} patches, K = {phi.shape[1]} ({source}), soft threshold, tau = 100 steps, stop at relative duality "
          f"gap {args.tol:g} (cap 200,000 steps), time to converge")
    print(f"{'lambda':>6s} {'solver':30s} {'time s':>8s} {'steps (median/max)':>19s} {'excess mean':>12s} "
          f"{'excess max':>11s} {'certified':>9s} {'peak MB':>8s} {'speed-up':>8s}")
    for lam in args.lam:
        cfg = LCAConfig(lam=lam, tol=args.tol, n_steps=200_000)
        e_star = energy(x, phi, lca_fixed_point(x, phi, LCAConfig(lam=lam)).codes, lam)
        rows = []
        for name, fn in [("dense (G·a every step)", lambda: lca_dense(x, phi, cfg)),
                         ("compiled kernel, active units", lambda: lca(x, phi, cfg))]:
            res, wall, peak = _timed(fn)
            excess = (energy(x, phi, res.codes, lam) - e_star) / e_star
            rows.append((name, wall, res, excess, peak))
        for name, wall, res, excess, peak in rows:
            steps = np.asarray(res.steps)
            print(f"{lam:6g} {name:30s} {wall:8.2f} {np.median(steps):9.0f}/{steps.max():<9.0f} {excess.mean():12.2e} "
                  f"{excess.max():11.2e} {int(res.converged.sum()):4d}/{len(x):<4d} {peak:8.0f} {rows[0][1] / wall:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
