"""``make demo``: the shipped P-VAE end to end: encode held-out patches, draw the basis, emit real spikes.

``python -m spikevae.demo [--checkpoint pvae.pt] [--out out/demo]`` prints the model's validation
summary, writes ``basis.png`` and then runs ``python -m spikevae.simulate`` into ``<out>/run``.
"""
from __future__ import annotations

import numpy as np

from ..errors import ArgumentError
from ..io.run_folder import RunFolder
from ..models.checkpoint import default_checkpoint_path
from ..models.trained import load_model
from ..workflows.evaluation import format_summary, validation_summary
from .common import Parser, cli_entry, positive_int, resolve_device, seed

__all__ = ["main"]


def _parser() -> Parser:
    p = Parser(prog="python -m spikevae.demo", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="P-VAE checkpoint (default: the shipped model)")
    p.add_argument("--out", default="out/demo", help="the demo's folder (each demo replaces the previous demo there)")
    p.add_argument("--n-val", type=positive_int, default=10_000, help="held-out patches to encode")
    p.add_argument("--seed", type=seed, default=0, help="seed of the held-out patches")
    p.add_argument("--device", default="auto", help="model device: auto | cpu | cuda")
    p.add_argument("--no-spikes", action="store_true", help="skip the Brian2 simulation step")
    return p


@cli_entry("python -m spikevae.demo")
def main(argv=None) -> int:
    """Command-line entry point."""
    from .. import plots

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
        m = validation_summary(trained, args.n_val, args.seed, device)
        cfg = model.config
        print(f"model: {cfg.family} VAE {cfg.encoder}|{cfg.decoder}, K = {cfg.n_latents}, "
              f"{cfg.patch_size}x{cfg.patch_size} patches; trained {ck.get('epoch')} epochs "
              f"({ck['train_config'].get('method')} objective, beta {ck['train_config'].get('beta')})")
        print(f"encoded {m['n_patches']} held-out patches from {m['source']} (validation photographs)")
        print(format_summary(m, cfg.family))
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
        from ..spikes import PoissonLayerConfig
        from ..workflows.simulate import describe_simulation, simulate_to_folder

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
