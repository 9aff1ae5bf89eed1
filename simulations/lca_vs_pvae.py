"""Amortized (P-VAE encoder) against iterative (LCA) inference on the same patches and dictionary.

    python simulations/lca_vs_pvae.py --checkpoint pvae.pt --out report/ [--lams 0.001 0.01 0.1 0.5 1.0]

The P-VAE encodes held-out natural patches in one pass (posterior rates λ; exact Poisson counts
for sparsity); the LCA infers codes for the same patches on the P-VAE's own decoder atoms
(normalised; the codes are rescaled, so errors are comparable) across λ — the reference's
amortization-gap experiment (its Fig. 3b; anchor_pvae.md §3.6). Writes ``report.md``,
``results.json`` and ``figures/recon_vs_sparsity.png``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from spikevae._cli import UserError, cli_entry


@cli_entry("lca_vs_pvae")
def main(argv=None) -> int:
    import torch

    from spikevae import plots
    from spikevae.checkpoint import load_model, write_json, write_text
    from spikevae.data import Preprocessing, natural_patches
    from spikevae.lca import LCAConfig, lca
    from spikevae.train import lifetime_sparsity

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="P-VAE checkpoint with a linear decoder (default: the shipped model)")
    p.add_argument("--out", default="report")
    p.add_argument("--n-patches", type=int, default=1000)
    p.add_argument("--lams", type=float, nargs="+", default=[0.001, 0.01, 0.1, 0.5, 1.0])
    p.add_argument("--steps", type=int, default=900, help="LCA Euler steps (tau = 100 steps)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.n_patches < 2 or args.steps < 1 or any(v < 0 for v in args.lams):
        raise UserError("--n-patches must be >= 2, --steps >= 1 and every lambda >= 0")
    model, ck = load_model(args.checkpoint)
    if model.config.family != "poisson" or model.config.decoder != "lin":
        raise UserError("the comparison needs a Poisson VAE with a linear decoder")
    out = Path(args.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    prep = Preprocessing(**ck["preprocessing"])
    x = natural_patches(1, args.n_patches, prep, seed=args.seed + 1).val.reshape(args.n_patches, -1)
    x = x.astype(np.float64)
    phi = model.dictionary.detach().double().numpy()  # (D, K)
    norms = np.linalg.norm(phi, axis=0)
    with torch.no_grad():
        lam = model.posterior(torch.as_tensor(x, dtype=torch.float32).view(-1, 1, prep.patch_size,
                                                                             prep.patch_size)).mean.double().numpy()
    z = np.random.default_rng(args.seed).poisson(lam)  # exact spike counts in one window
    pvae = {"mse_map": float(((x - lam @ phi.T) ** 2).sum(1).mean()),
            "mse_counts": float(((x - z @ phi.T) ** 2).sum(1).mean()),
            "lifetime_sparsity": float(lifetime_sparsity(z).mean()),
            "fraction_active": float((z > 0).mean()), "expected_spikes": float(lam.sum(1).mean())}
    rows = []
    for lam_lca in args.lams:
        res = lca(x, phi / norms, LCAConfig(lam=lam_lca, tau=0.01, dt=1e-4, n_steps=args.steps))
        a = res.codes / norms  # back to the P-VAE's atom scale: Φ a = (Φ/‖φ‖)(‖φ‖ a)
        rows.append({"lambda": lam_lca, "mse": float(((x - a @ phi.T) ** 2).sum(1).mean()),
                     "lifetime_sparsity": float(lifetime_sparsity(np.abs(res.codes)).mean()),
                     "fraction_active": res.fraction_active, "l1": float(np.abs(res.codes).sum(1).mean())})
    results = {"n_patches": args.n_patches, "pvae": pvae, "lca_on_pvae_dictionary": rows,
               "checkpoint": ck.get("provenance", {}), "wall_seconds": time.perf_counter() - t0}

    write_json(out / "results.json", results)
    plots.save_figure(plots.recon_vs_sparsity(
        {"P-VAE encoder (posterior mean)": (pvae["lifetime_sparsity"], pvae["mse_map"])},
        {"LCA on the P-VAE dictionary (λ)": ([r["lifetime_sparsity"] for r in rows], [r["mse"] for r in rows],
                                              [r["lambda"] for r in rows])},
        title="amortization gap: one-pass encoder against iterative inference"), out / "figures" / "recon_vs_sparsity.png")
    lines = ["# Amortized (P-VAE) against iterative (LCA) inference", "",
             f"{args.n_patches} held-out natural patches; LCA {args.steps} Euler steps, τ = 100 steps, on the "
             "P-VAE's decoder atoms. Errors are squared errors summed over the pixels of a patch.", "",
             "| model | squared error | lifetime sparsity | fraction active | cost per patch |", "|---|---|---|---|---|",
             f"| P-VAE encoder, rates λ | {pvae['mse_map']:.1f} | {pvae['lifetime_sparsity']:.3f} (counts) | "
             f"{pvae['fraction_active']:.3f} | {pvae['expected_spikes']:.1f} expected spikes |",
             f"| P-VAE, one window of Poisson counts | {pvae['mse_counts']:.1f} | | | |"]
    for r in rows:
        lines.append(f"| LCA, λ = {r['lambda']:g} | {r['mse']:.1f} | {r['lifetime_sparsity']:.3f} | "
                     f"{r['fraction_active']:.3f} | ℓ1 {r['l1']:.1f} |")
    lines += ["", "![reconstruction vs sparsity](figures/recon_vs_sparsity.png)", ""]

    write_text(out / "report.md", "\n".join(lines))
    print(f"P-VAE {pvae['mse_map']:.1f} at sparsity {pvae['lifetime_sparsity']:.3f}; LCA " +
          ", ".join(f"λ {r['lambda']:g}: {r['mse']:.1f} at {r['lifetime_sparsity']:.3f}" for r in rows) +
          f"; wrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
