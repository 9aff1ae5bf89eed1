"""``make demo``: the shipped P-VAE end to end: encode held-out patches, draw the basis, emit real spikes.

``python -m spikevae.demo [--checkpoint pvae.pt] [--out out/demo]`` prints the model's validation
summary, writes ``basis.png`` and then runs ``python -m spikevae.simulate`` into ``<out>/run``.
"""
from __future__ import annotations

import numpy as np
import torch

from ._cli import ArgumentError, Parser, cli_entry, positive_int, resolve_device, seed
from .checkpoint import default_checkpoint_path
from .data import natural_patches
from .io.files import RunFolder
from .model import load_model
from .train import evaluate

__all__ = ["main"]


def _parser() -> Parser:
    p = Parser(prog="python -m spikevae.demo", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="P-VAE checkpoint (default: the shipped model)")
    p.add_argument("--out", default="out/demo", help="the demo's folder (each demo replaces the previous demo there)")
    p.add_argument("--n-val", type=positive_int, default=10_000, help="held-out patches to encode")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-spikes", action="store_true", help="skip the Brian2 simulation step")
    return p


@cli_entry("python -m spikevae.demo")
def main(argv=None) -> int:
    """Command-line entry point."""
    from . import plots

    args = _parser().parse_args(argv)
    device = resolve_device(args.device)
    if args.checkpoint is None:
        print(f"no --checkpoint given: using the shipped model {default_checkpoint_path()}")
    trained = load_model(args.checkpoint, device)
    model, ck, prep = trained.vae, trained.checkpoint, trained.preprocessing
    if prep.kind != "natural":
        raise ArgumentError("the demo encodes natural-image patches; this checkpoint was trained on "
                        f"{ck.get('data', {}).get('source', prep.kind)}")
    # the demo's own folder: each demo replaces the previous demo there (and nothing else)
    with RunFolder(args.out, "demo", overwrite=True) as run:
        out = run.path
        data = natural_patches(n_train=1, n_val=args.n_val, prep=prep, seed=args.seed + 1)
        x = torch.as_tensor(data.val, device=device).unsqueeze(1)
        m = evaluate(model, x, torch.Generator(device=device).manual_seed(args.seed))
        cfg = model.config
        energy = float(x.flatten(1).square().sum(1).mean())
        print(f"model: {cfg.family} VAE {cfg.encoder}|{cfg.decoder}, K = {cfg.n_latents}, "
              f"{cfg.patch_size}x{cfg.patch_size} patches; trained {ck.get('epoch')} epochs "
              f"({ck['train_config'].get('method')} objective, beta {ck['train_config'].get('beta')})")
        print(f"encoded {len(x)} held-out patches from {data.source} (validation photographs)")
        print(f"  patch energy (what predicting 0 costs): {energy:8.1f}")
        print(f"  MSE, sampled spike counts:              {m['mse']:8.1f}")
        print(f"  MSE, posterior mean rates:              {m['mse_map']:8.1f}")
        print(f"  KL (nats per patch):                    {m['kl']:8.1f}")
        print(f"  NELBO:                                  {m['nelbo']:8.1f}")
        if cfg.family == "poisson":
            print(f"  active latents (KL > 0.01):             {m['active_fraction']:8.3f}")
            print(f"  lifetime sparsity:                      {m['lifetime_sparsity']:8.3f}")
            print(f"  portion of zero counts:                 {m['portion_zeros']:8.3f}")
            print(f"  mean expected count per unit per window:{m['mean_rate']:8.3f}")
        if cfg.decoder == "lin":
            # order by per-latent KL on training patches (stored at the end of training) when available:
            # the held-out set is two photographs, whose own textures would bias the order
            kl = np.asarray(ck.get("metrics", {}).get("kl_per_latent_train", m["kl_per_latent"]))
            order = np.argsort(-kl)
            phi = model.dictionary.detach().cpu().numpy().T.reshape(-1, cfg.patch_size, cfg.patch_size)
            fig = plots.basis_grid(phi, order, n_show=min(256, len(order)), labels=kl,
                                   title="decoder atoms (dictionary), ordered by per-latent KL on training patches "
                                         "(number, nats)")
            path = out / "basis.png"
            plots.save_figure(fig, path)
            print(f"wrote {path}")
        if args.no_spikes:
            return 0
        from .pipeline import describe_simulation, simulate_to_folder
        from .spiking import PoissonLayerConfig

        run_dir = out / "run"
        print(f"\nreal spikes: 20 held-out patches x 5 repeats, 100 ms windows with 50 ms gaps -> {run_dir} "
              "(what `python -m spikevae.simulate --n-stimuli 20 --repeats 5 --gap 50` does)")
        summary = simulate_to_folder(run_dir, trained, "natural", 20, 5, PoissonLayerConfig(gap=0.05), args.seed,
                                     progress=True, overwrite=True, command="simulate")
        print(describe_simulation(summary, run_dir))
        print(f"\nopen {run_dir / 'spikes.nwb'} with pynwb (or NWB Widgets), "
              f"{run_dir / 'spikes.nix'} with neo, and look at {run_dir / 'figures'}/*.png")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
