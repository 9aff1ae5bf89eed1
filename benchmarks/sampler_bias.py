"""Bias of the relaxed Poisson sampler against the untruncated relaxed count, per temperature and rate.

For each (t, λ): the mean relaxed count and the mean derivative dz/dλ of ``--samples`` draws, with the default
sampler (each element's window at the temperature, the arrivals past it by their expectation) and with a fixed
truncation at the hard-count bound (``P(count ≥ n) ≤ 1e-5`` whatever t, the reference's rule after its first
epoch), against the closed forms of the untruncated relaxed count, E[z] = λ·t·softplus(1/t) and
E[dz/dλ] = t·softplus(1/t). Prints relative biases in %, their standard errors, and the arrivals drawn per
element (the default: expected, from the window).

    python benchmarks/sampler_bias.py [--samples 200000]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from spikevae.models.poisson import SKIP_AFTER, n_exp_for_rate, relaxed_poisson, window_edges


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    g = torch.Generator().manual_seed(args.seed)
    print("|  t   |   λ   | arrivals (default) | E[z] bias % | E[dz/dλ] bias % | n (hard bound) | E[z] bias % | "
          "E[dz/dλ] bias % |")
    print("|---|---|---|---|---|---|---|---|")
    for t in (0.05, 0.5, 1.0):
        slope = t * np.logaddexp(0.0, 1.0 / t)
        for rate in (0.05, 0.5, 3.0, 20.0, 50.0):
            row = [f"| {t:g} | {rate:g}"]
            for n_exp in (None, n_exp_for_rate(rate)):
                lam = torch.full((args.samples,), rate, dtype=torch.float64, requires_grad=True)
                z = relaxed_poisson(lam, t, g, n_exp=n_exp)
                z.sum().backward()
                z, d = z.detach().numpy(), lam.grad.numpy()
                if n_exp:
                    n = n_exp
                else:  # expected arrivals drawn: those in the window (after a, where they are counted at once), + 1
                    a, b = (float(v) for v in window_edges(torch.tensor([rate], dtype=torch.float64), t))
                    n = f"{rate * (b - (a if rate * a > SKIP_AFTER else 0.0)) + 1:.1f}"
                bz = 100 * (z.mean() / (rate * slope) - 1)
                bd = 100 * (d.mean() / slope - 1)
                sz = 100 * z.std() / np.sqrt(args.samples) / (rate * slope)
                sd = 100 * d.std() / np.sqrt(args.samples) / slope
                row.append(f"{n} | {bz:+.2f} ± {sz:.2f} | {bd:+.2f} ± {sd:.2f}")
            print(" | ".join(row) + " |", flush=True)
    print("(arrivals (default): expected arrivals drawn per element, those of its window (spikevae.models.poisson."
          "window_edges) and the first past it; n (hard bound): the fixed truncation's arrivals)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
