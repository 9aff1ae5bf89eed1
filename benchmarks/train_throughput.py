"""Training throughput of the default P-VAE against the reference formulation and a Gaussian VAE.

Runs each configuration in its own child process (so peak memory is its own),
side by side in one run, and prints samples/s, the ratio to the reference
formulation and peak RSS:

- ``reference``: fixed n_exp = 263, ``cumsum(Exp(λ))`` through autograd (the
  reference code's first-epoch sampler), batch 200;
- ``spikevae``: the default sampler (per-element truncation from each rate and
  the temperature, fused gradient) at the shipped model's converged rates, batch 200;
- ``spikevae-t1``: the same at t = 1, where the relaxed count needs many more
  arrivals to stay unbiased (training starts there; the other rows use t = 0.05);
- ``spikevae-maxrate``: the same sampler with one n_exp for the whole batch,
  chosen from the batch's maximum rate (the reference's adaptive rule);
- ``exact``: the closed-form linear-decoder objective (no sampling);
- ``gaussian``: a Gaussian VAE of the same lin|lin architecture.

And the iP-VAE's training step (batch 200, T = 16 unrolled iterations, β 24), side by side:

- ``ipvae-earlier-<model>-t<t>``: the step of earlier releases, the per-bucket sampler
  (:mod:`spikevae.models.poisson_buckets`) and the update, NLL and KL differentiated by autograd
  (:func:`spikevae.models.ipvae.loss_reference`);
- ``ipvae-sampler-<model>-t<t>``: the default sampler in that step;
- ``ipvae-<model>-t<t>``: the default step (the default sampler, the fused update and NLL of :class:`IPVAE`),

``<model>`` ``trained`` (the shipped iP-VAE's rates, the end of training) or ``fresh`` (a new model with its ceilings
at their start, the start of training), at temperatures 1, 0.1 and 0.01. The sampler's own time per step is
reported beside the step's. The three of a row run one after the other, ``--rounds`` times interleaved, and each
reports its median over the rounds (machines here are noisy; the ratios hold).

``python benchmarks/train_throughput.py [--steps 20] [--threads 2] [--rounds 3] [--configs ipvae]``
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

CONFIGS = ("reference", "spikevae", "spikevae-t1", "spikevae-maxrate", "exact", "gaussian")
IPVAE_CONFIGS = tuple(f"ipvae{s}-{m}-t{t:g}" for m, ts in (("fresh", (1.0,)), ("trained", (1.0, 0.1, 0.01)))
                      for t in ts for s in ("-earlier", "-sampler", ""))


def _one_ipvae(name: str, steps: int, batch: int, threads: int) -> dict:
    """One iP-VAE configuration: ms per training step and per step of the sampler alone, peak RSS."""
    import numpy as np
    import torch

    import spikevae.models.ipvae as ipvae_mod
    from spikevae.data import natural_patches
    from spikevae.models.checkpoint import default_ipvae_path
    from spikevae.models.poisson_buckets import relaxed_poisson_bucketed

    torch.set_num_threads(threads)
    _, *kind, model_kind, t_part = name.split("-")
    temp = float(t_part[1:])
    shipped = ipvae_mod.load(default_ipvae_path())
    model = shipped if model_kind == "trained" else ipvae_mod.IPVAE(shipped.config, seed=0)
    model.clamp_progress = 1.0 if model_kind == "trained" else 0.0
    model.train()
    base = relaxed_poisson_bucketed if kind == ["earlier"] else ipvae_mod.relaxed_poisson
    spent = [0.0]

    def timed(rate, t, g):
        t0 = time.perf_counter()
        out = base(rate, t, g)
        spent[0] += time.perf_counter() - t0
        return out

    ipvae_mod.relaxed_poisson = timed
    x = torch.as_tensor(natural_patches(1, 20 * batch, shipped.preprocessing, seed=5).val).reshape(20 * batch, -1)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adamax(model.parameters(), lr=1e-5)
    times, samp = [], []
    for i in range(3 + steps):
        xb = x[(i * batch) % len(x):][:batch]
        spent[0] = 0.0
        t0 = time.perf_counter()
        if kind:
            loss = ipvae_mod.loss_reference(model, xb, 16, 24.0, temp, g, timed)
        else:
            loss, _ = model.loss(xb, 16, 24.0, temp, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
            samp.append(spent[0])
    ms = 1e3 * float(np.median(times))
    return {"config": name, "ms_per_step": ms, "sampler_ms_per_step": 1e3 * float(np.median(samp)),
            "samples_per_s": batch / (ms / 1e3), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "batch": batch}


def _one(name: str, steps: int, batch: int, threads: int) -> dict:
    import numpy as np
    import torch

    from spikevae.data import natural_patches
    from spikevae.models.poisson import n_exp_for_rate, relaxed_poisson, relaxed_poisson_reference
    from spikevae.models.trained import load_model
    from spikevae.models.vae import VAE, VAEConfig

    torch.set_num_threads(threads)
    trained = load_model()
    shipped = trained.vae
    x = torch.as_tensor(natural_patches(20 * batch, 10, trained.preprocessing, seed=5).train).unsqueeze(1)
    g = torch.Generator().manual_seed(0)
    if name == "gaussian":
        model = VAE(VAEConfig(family="gaussian"), g)
    else:
        model = shipped  # converged rates
    model.train()
    opt = torch.optim.Adamax(model.parameters(), lr=1e-4)
    temp = 1.0 if name == "spikevae-t1" else 0.05
    n_exps = []

    def step(xb):
        if name in ("exact", "gaussian"):
            loss = model.loss(xb, 1.0, temp if name != "gaussian" else 1.0, "exact" if name == "exact" else "mc", g).loss
        else:
            post = model.posterior(xb)
            if name == "reference":
                z = relaxed_poisson_reference(post.mean, temp, 263, g)
            elif name == "spikevae-maxrate":
                n = n_exp_for_rate(float(post.mean.detach().max()), temperature=temp)
                n_exps.append(n)
                z = relaxed_poisson(post.mean, temp, g, n_exp=n)
            else:
                z = relaxed_poisson(post.mean, temp, g)
            recon = (xb.flatten(1) - model.decode(z).flatten(1)).square().sum(1)
            loss = (recon + post.kl.sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    n_warm = 3
    times = []
    for i in range(n_warm + steps):
        xb = x[(i * batch) % len(x):][:batch]
        t0 = time.perf_counter()
        step(xb)
        if i >= n_warm:
            times.append(time.perf_counter() - t0)
    ms = 1e3 * float(np.median(times))
    with torch.no_grad():
        rates = shipped.posterior(x[:batch]).mean
    return {
        "config": name,
        "ms_per_step": ms,
        "samples_per_s": batch / (ms / 1e3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "batch": batch,
        "max_rate": float(rates.max()),
        "n_exp_max_rate": n_exp_for_rate(float(rates.max()), temperature=temp),
        "n_exp_median_used": float(np.median(n_exps)) if n_exps else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="interleaved repetitions of the iP-VAE rows (median)")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        one = _one_ipvae if args.one.startswith("ipvae") else _one
        print(json.dumps(one(args.one, args.steps, args.batch, args.threads)))
        return 0
    names = [c for n in args.configs.split(",") for c in (IPVAE_CONFIGS if n == "ipvae" else (n,))]

    def measure(name):
        out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps),
                              "--batch", str(args.batch), "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True)
        print(f"  measured {name}", file=sys.stderr)
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows = [measure(n) for n in names if not n.startswith("ipvae")]
    ip_names = [n for n in names if n.startswith("ipvae")]
    runs = {n: [] for n in ip_names}
    for _ in range(max(args.rounds, 1)):
        for n in ip_names:
            runs[n].append(measure(n))
    ip_rows = []
    for rs in runs.values():
        r = dict(rs[0])
        for k in ("ms_per_step", "sampler_ms_per_step", "peak_rss_mb"):
            r[k] = float(np.median([x[k] for x in rs]))
        ip_rows.append(r)
    if ip_rows:
        print(f"iP-VAE K=512, batch {args.batch}, T = 16, {args.threads} threads, median of {max(args.rounds, 1)} "
              "interleaved rounds: the training step against the step of earlier releases (x: ratio to it)")
        print(f"{'config':27s} {'ms/step':>9s} {'sampler ms':>11s} {'step x':>7s} {'sampler x':>10s} {'peak RSS MB':>12s}")
        for r in ip_rows:
            base = "ipvae-earlier-" + "-".join(r["config"].split("-")[-2:])  # same model and temperature
            old = next((o for o in ip_rows if o["config"] == base), r)  # without its earlier row: itself
            print(f"{r['config']:27s} {r['ms_per_step']:9.1f} {r['sampler_ms_per_step']:11.1f} "
                  f"{old['ms_per_step'] / r['ms_per_step']:7.2f} "
                  f"{old['sampler_ms_per_step'] / r['sampler_ms_per_step']:10.2f} {r['peak_rss_mb']:12.0f}")
    if not rows:
        return 0
    ref = next((r for r in rows if r["config"] == "reference"), rows[0])
    r0 = rows[0]
    print(f"P-VAE lin|lin K=512, batch {args.batch}, {args.threads} threads, t = 0.05 (spikevae-t1: t = 1); shipped "
          f"model's rates: max {r0['max_rate']:.1f} per window (n_exp from max rate = {r0['n_exp_max_rate']})")
    print(f"{'config':18s} {'ms/step':>9s} {'samples/s':>10s} {'x reference':>12s} {'peak RSS MB':>12s}")
    for r in rows:
        print(f"{r['config']:18s} {r['ms_per_step']:9.1f} {r['samples_per_s']:10.0f} "
              f"{r['samples_per_s'] / ref['samples_per_s']:12.1f} {r['peak_rss_mb']:12.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
