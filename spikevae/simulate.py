"""``python -m spikevae.simulate --checkpoint pvae.pt --out run/``: real spike trains from a P-VAE.

Stimuli → the checkpoint's preprocessing → posterior rates λ (expected counts
per presentation window) → Brian2 Poisson neurons, one per latent unit
(:mod:`spikevae.spiking`) → a :class:`~spikevae.records.SpikeTrains` record →
``spikes.nwb`` (pynwb), ``spikes.nix`` (Neo NixIO), ``summary.json`` and
figures. Each presentation's spike counts are also decoded through the model's
decoder, next to the rate-based (λ) reconstruction. The work is
:func:`spikevae.pipeline.run_simulation` and :func:`spikevae.pipeline.write_simulation`.
"""
from __future__ import annotations

from pathlib import Path

from ._cli import Parser, cli_entry, nonneg_float, positive_float, positive_int, resolve_device, seed

__all__ = ["main"]


def _parser() -> Parser:
    from .spiking import TARGETS

    p = Parser(prog="python -m spikevae.simulate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="P-VAE checkpoint (default: the shipped model)")
    p.add_argument("--out", default="run", help="output folder")
    p.add_argument("--stimuli", default="natural", help="natural | white-noise | gratings | DIR of images")
    p.add_argument("--n-stimuli", type=positive_int, default=50)
    p.add_argument("--repeats", type=positive_int, default=5, help="presentations of each stimulus")
    p.add_argument("--window", type=positive_float, default=100.0, help="presentation window, ms")
    p.add_argument("--gap", type=nonneg_float, default=0.0, help="blank between presentations, ms")
    p.add_argument("--dt", type=positive_float, default=0.1, help="simulation time step, ms")
    p.add_argument("--target", default="auto", choices=TARGETS, help="Brian2 code generation")
    p.add_argument("--chunk", type=positive_int, default=2000, help="presentations per Brian2 run (memory bound)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--device", default="auto", help="model device: auto | cpu | cuda")
    p.add_argument("--no-neo", action="store_true", help="skip the Neo (NixIO) file (slow for long runs)")
    p.add_argument("--quiet", action="store_true")
    return p


@cli_entry("python -m spikevae.simulate")
def main(argv=None) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(argv)
    from .checkpoint import default_checkpoint_path
    from .model import load_model
    from .pipeline import describe_simulation, prepare_output_folder, run_simulation, write_simulation
    from .spiking import PoissonLayerConfig

    layer = PoissonLayerConfig(window=args.window * 1e-3, gap=args.gap * 1e-3, dt=args.dt * 1e-3,
                               target=args.target, chunk=args.chunk).validate()
    device = resolve_device(args.device)
    if args.checkpoint is None:
        print(f"no --checkpoint given: using the shipped model {default_checkpoint_path()}")
    model = load_model(args.checkpoint, device)
    out = Path(args.out)
    prepare_output_folder(out)
    res = run_simulation(model, args.stimuli, args.n_stimuli, args.repeats, layer, args.seed,
                         progress=not args.quiet)
    write_simulation(out, res, neo=not args.no_neo)
    print(describe_simulation(res, out, neo=not args.no_neo))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
