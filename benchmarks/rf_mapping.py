"""End-to-end white-noise RF mapping of all 512 units of the shipped P-VAE: encode → Brian2 spikes → STA.

50,000 frames of 50 ms at dt = 0.25 ms (2,500 s simulated). Reports the time of each stage for
the path ``simulations/rf_mapping.py`` uses (cpp_standalone, build included and excluded), side by
side with exact spike generation in plain numpy (the practical limit), and peak RSS.

``python benchmarks/rf_mapping.py [--frames 50000]``
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=50_000)
    p.add_argument("--target", default="cpp_standalone")
    p.add_argument("--workers", type=int, default=None, help="Brian2 worker processes (default: every core)")
    args = p.parse_args(argv)

    from spikevae.analysis.receptive_fields import sta
    from spikevae.models.trained import load_model
    from spikevae.spikes import PoissonLayerConfig, poisson_spikes_numpy, simulate_poisson
    from spikevae.spikes.plan import default_workers

    t_all = time.perf_counter()
    model = load_model()
    P, K = model.config.patch_size, model.config.n_latents
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((args.frames, P, P)).astype(np.float32)
    t0 = time.perf_counter()
    lam = model.rates(frames, batch_size=8192)
    t_enc = time.perf_counter() - t0
    cfg = PoissonLayerConfig(window=0.05, dt=2.5e-4, target=args.target, chunk=25_000)
    args.workers = args.workers or default_workers(args.frames, cfg.chunk)

    with tempfile.TemporaryDirectory() as build:
        walls = []
        for _ in range(2):
            t0 = time.perf_counter()
            run = simulate_poisson(lam, cfg, seed=1, build_dir=build, workers=args.workers)
            walls.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    c = run.counts()
    maps = sta(frames, c)
    t_sta = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = poisson_spikes_numpy(lam, cfg, np.random.default_rng(1))
    t_np = time.perf_counter() - t0
    total_first = t_enc + walls[0] + t_sta
    print(f"{args.frames} frames x 50 ms, {K} units, dt 0.25 ms ({args.frames * 0.05:.0f} s simulated), "
          f"{run.n_spikes} spikes ({lam.sum():.0f} expected)")
    print(f"  encode (torch)                      {t_enc:7.2f} s")
    print(f"  Brian2 {run.meta['target']:15s} 1st run   {walls[0]:7.2f} s (incl. C++ build; {args.workers} worker(s))")
    print(f"  Brian2 {run.meta['target']:15s} compiled  {walls[1]:7.2f} s  ({args.frames * 0.05 / walls[1]:.0f}x real time)")
    print(f"  counts + STA (numpy)                {t_sta:7.2f} s")
    print(f"  end to end, first run               {total_first:7.2f} s   (target: <= 120 s)")
    print(f"  exact spikes in plain numpy         {t_np:7.2f} s   (the practical limit for the spike stage; "
          f"{exact.n_spikes} spikes)")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; STA finite for "
          f"{np.isfinite(maps).all(axis=(1, 2)).sum()} units; wall {time.perf_counter() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
