"""The GPU path, verified: training throughput, the shipped-model recipe, and CPU-vs-GPU agreement.

    python benchmarks/gpu.py --out gpu/                 # on a machine with a CUDA device
    python benchmarks/gpu.py --out gpu/ --quick         # tiny sizes (what the test suite runs, CPU only)

On one device, side by side in one process (lin|lin, K = 512, 16x16 natural patches, batch 1000,
t = 0.05, the shipped model's converged rates for the P-VAE rows):

- ``spikevae``: the default relaxed-Poisson sampler (per-element truncation, fused gradient);
- ``exact``: the closed-form linear-decoder objective (no sampling);
- ``reference``: the reference formulation, n_exp = 263, ``cumsum(Exp(λ))`` through autograd;
- ``gaussian``: a Gaussian VAE of the same architecture (one reparameterised sample);
- the shipped iP-VAE's training step at T = 16 (batch 200, its recipe's; temperature 0.5).

Then the shipped model's recipe (``--method exact --beta 2.5 --epochs 300``, 100,000 patches) timed
through :func:`spikevae.models.training.fit`, and a CPU-vs-GPU agreement check: one training step from the same
initial weights on the same batch (loss and gradients), and a short training whose validation
metrics must agree within the stated tolerance (the shuffling generators differ between devices, so
the runs are equal in law, not bit for bit).

Without a CUDA device the CUDA rows are skipped with a message and the CPU rows still run, so the
script is always ready. Writes ``gpu.json`` and ``gpu.md`` into ``--out``. ``--images NPZ`` reads the
training photographs from an ``.npz`` of grey arrays (as written by ``--save-images``) instead of the
installed packages, for machines whose scikit-image lacks them.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from spikevae.data import NATURAL_TRAIN, NATURAL_VAL, Preprocessing, image_patches, natural_images
from spikevae.models.poisson import relaxed_poisson_reference
from spikevae.models.trained import load_model
from spikevae.models.training import TrainConfig, fit
from spikevae.models.vae import VAE, VAEConfig

CONFIGS = ("spikevae", "exact", "reference", "gaussian")


def _patches(n_train: int, n_val: int, images: str | None, seed: int = 0):
    if images:
        with np.load(images) as z:
            imgs = {k: z[k] for k in z.files}
    else:
        imgs = natural_images()
    return image_patches({k: imgs[k] for k in NATURAL_TRAIN}, {k: imgs[k] for k in NATURAL_VAL}, Preprocessing(),
                         n_train, n_val, np.random.default_rng(seed), source="natural")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def throughput(name: str, x: torch.Tensor, dev: torch.device, steps: int, batch: int) -> dict:
    """Median training-step time of one configuration on ``dev``."""
    g = torch.Generator(device=dev).manual_seed(0)
    if name == "gaussian":
        model = VAE(VAEConfig(family="gaussian"), torch.Generator().manual_seed(0)).to(dev)
    else:
        model = load_model().vae.to(dev)  # converged rates: the sampler's cost at a trained model
    model.train()
    opt = torch.optim.Adamax(model.parameters(), lr=1e-4)
    temp = 0.05

    def step(xb):
        if name == "reference":
            post = model.posterior(xb)
            z = relaxed_poisson_reference(post.mean, temp, 263, g)
            recon = (xb.flatten(1) - model.decode(z).flatten(1)).square().sum(1)
            loss = (recon + post.kl.sum(1)).mean()
        else:
            method = "exact" if name == "exact" else "mc"
            loss = model.loss(xb, 1.0, 1.0 if name == "gaussian" else temp, method, g).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for i in range(3 + steps):
        xb = x[(i * batch) % (len(x) - batch):][:batch]
        _sync(dev)
        t0 = time.perf_counter()
        step(xb)
        _sync(dev)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    ms = 1e3 * float(np.median(times))
    return {"config": name, "device": str(dev), "batch": batch, "ms_per_step": ms, "samples_per_s": batch / ms * 1e3,
            "peak_gpu_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None}


def ipvae_throughput(x: torch.Tensor, dev: torch.device, steps: int, batch: int = 200, temperature: float = 0.5) -> dict:
    """Median training-step time of the shipped iP-VAE (T = 16 unrolled iterations, its recipe's batch of 200, the
    relaxed sampler at a mid-schedule temperature, β 24, Adamax)."""
    from spikevae.models import ipvae
    from spikevae.models.checkpoint import default_ipvae_path

    model = ipvae.load(default_ipvae_path()).to(dev)
    g = torch.Generator(device=dev).manual_seed(0)
    opt = torch.optim.Adamax(model.parameters(), lr=1e-4)
    xf = x.flatten(1)
    times = []
    warm = 3 if dev.type == "cuda" else 1  # a CPU step of this model takes about a second
    for i in range(warm + steps):
        xb = xf[(i * batch) % (len(xf) - batch):][:batch]
        _sync(dev)
        t0 = time.perf_counter()
        loss, _ = model.loss(xb, 16, 24.0, temperature, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(dev)
        if i >= warm:
            times.append(time.perf_counter() - t0)
    ms = 1e3 * float(np.median(times))
    return {"config": "ipvae-T16", "device": str(dev), "batch": batch, "ms_per_step": ms,
            "samples_per_s": batch / ms * 1e3,
            "peak_gpu_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None}


def agreement(data, steps_epochs: int = 3) -> dict:
    """CPU against CUDA: one step from the same weights on the same batch, then a short training each."""
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    cfg = VAEConfig()
    m_cpu = VAE(cfg, torch.Generator().manual_seed(0))
    m_gpu = VAE(cfg, torch.Generator().manual_seed(0)).to(gpu)
    xb = torch.as_tensor(data.train[:1000]).unsqueeze(1)
    out = {}
    for method in ("exact", "mc"):
        losses, grads = [], []
        for m, dev in ((m_cpu, cpu), (m_gpu, gpu)):
            m.zero_grad()
            # temperature 0 with a detached Poisson draw would not be differentiable: compare the exact term
            # for 'exact' and, for 'mc', the same relaxed sample drawn on the CPU and moved
            if method == "exact":
                t = m.loss(xb.to(dev), 1.0, 0.05, "exact")
                loss = t.loss
            else:
                post = m.posterior(xb.to(dev))
                z_cpu = torch.poisson(post.mean.detach().cpu(), generator=torch.Generator().manual_seed(1))
                z = z_cpu.to(dev) + (post.mean - post.mean.detach())  # straight-through: same values, a gradient
                recon = (xb.to(dev).flatten(1) - m.decode(z).flatten(1)).square().sum(1)
                loss = (recon + post.kl.sum(1)).mean()
            loss.backward()
            losses.append(float(loss.detach()))
            grads.append(torch.cat([p.grad.flatten().cpu() for p in m.parameters()]))
        out[f"step_{method}_loss_rel_diff"] = abs(losses[0] - losses[1]) / abs(losses[0])
        out[f"step_{method}_grad_rel_diff"] = float((grads[0] - grads[1]).norm() / grads[0].norm())
    tc = TrainConfig(epochs=steps_epochs, batch_size=500, method="exact", beta=2.5, seed=0)
    res = {dev: fit(cfg, tc, data, None, dev, progress=False).metrics for dev in ("cpu", "cuda")}
    for k in ("nelbo", "mse_map", "kl", "active_fraction"):
        out[f"train_{k}_cpu"], out[f"train_{k}_cuda"] = res["cpu"][k], res["cuda"][k]
        out[f"train_{k}_rel_diff"] = abs(res["cpu"][k] - res["cuda"][k]) / max(abs(res["cpu"][k]), 1e-12)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per configuration")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=300, help="the shipped recipe's epochs")
    p.add_argument("--n-train", type=int, default=100_000)
    p.add_argument("--images", help="npz of grey photographs (see --save-images)")
    p.add_argument("--save-images", help="write the shipped photographs to this npz and stop")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    args = p.parse_args(argv)
    if args.save_images:
        np.savez(args.save_images, **natural_images())
        print(f"wrote {args.save_images}")
        return 0
    if args.quick:
        args.steps, args.batch, args.epochs, args.n_train = 2, 100, 1, 2000
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if cuda else [])
    report: dict = {"torch": torch.__version__, "cuda": cuda,
                    "gpu": torch.cuda.get_device_name(0) if cuda else None, "cpu_threads": torch.get_num_threads()}
    if not cuda:
        print("no CUDA device: the CUDA rows are skipped (run this script on a machine with a GPU)")
    t0 = time.perf_counter()
    data = _patches(args.n_train, 10_000 if not args.quick else 500, args.images)
    report["data_seconds"] = time.perf_counter() - t0
    x = torch.as_tensor(data.train[: max(20 * args.batch, 2 * args.batch)]).unsqueeze(1)
    rows = []
    for dev in devices:
        xd = x.to(dev)
        steps = args.steps if dev.type == "cuda" else max(2, args.steps // 10)
        for name in CONFIGS:
            rows.append(throughput(name, xd, dev, steps, args.batch))
            print(f"  {dev.type:4s} {name:10s} {rows[-1]['samples_per_s']:12.0f} samples/s", flush=True)
        rows.append(ipvae_throughput(xd, dev, steps))
        print(f"  {dev.type:4s} ipvae-T16  {rows[-1]['samples_per_s']:12.0f} samples/s", flush=True)
    report["throughput"] = rows
    recipe_dev = devices[-1]
    t0 = time.perf_counter()
    tc = TrainConfig(epochs=args.epochs, method="exact", beta=2.5, seed=0, n_train=args.n_train)
    res = fit(VAEConfig(), tc, data, out / "pvae_recipe.pt", recipe_dev, progress=False)
    _sync(recipe_dev)
    report["recipe"] = {"device": str(recipe_dev), "epochs": args.epochs, "n_train": len(data.train),
                        "wall_s": time.perf_counter() - t0,
                        "metrics": {k: v for k, v in res.metrics.items() if not k.startswith("kl_per_latent")}}
    print(f"  recipe on {recipe_dev}: {report['recipe']['wall_s']:.1f} s for {args.epochs} epochs", flush=True)
    if cuda:
        report["agreement"] = agreement(data, 1 if args.quick else 3)
    (out / "gpu.json").write_text(json.dumps(report, indent=1, default=str))
    lines = [f"torch {report['torch']}; {report['gpu'] or 'no GPU'}; CPU threads {report['cpu_threads']}", "",
             "| device | configuration | ms/step | samples/s | × reference (same device) | peak GPU MB |",
             "|---|---|---|---|---|---|"]
    for dev in devices:
        sub = [r for r in rows if r["device"] == str(dev) and "samples_per_s" in r]
        ref = next(r for r in sub if r["config"] == "reference")
        for r in sub:
            mem = f"{r['peak_gpu_mb']:.0f}" if r["peak_gpu_mb"] is not None else "–"
            lines.append(f"| {dev.type} | {r['config']} | {r['ms_per_step']:.2f} | {r['samples_per_s']:.0f} | "
                         f"{r['samples_per_s'] / ref['samples_per_s']:.1f} | {mem} |")
    rc = report["recipe"]
    lines += ["", f"Shipped recipe (exact, β 2.5, {rc['epochs']} epochs, {rc['n_train']} patches) on {rc['device']}: "
              f"{rc['wall_s']:.1f} s; validation NELBO {rc['metrics']['nelbo']:.1f}, MSE {rc['metrics']['mse']:.1f}, "
              f"active {rc['metrics']['active_fraction']:.3f}; data preparation {report['data_seconds']:.1f} s."]
    if cuda:
        a = report["agreement"]
        lines += ["", "CPU vs GPU: " + ", ".join(f"{k} {v:.3g}" for k, v in a.items() if k.endswith("rel_diff"))]
    (out / "gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(math.isfinite(r.get("samples_per_s", 0.0)) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
