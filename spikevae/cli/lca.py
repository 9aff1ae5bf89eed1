"""``python -m spikevae.lca``: learn an LCA dictionary, or infer sparse codes (reference, Brian2 or spiking).

::

    python -m spikevae.lca learn --out dict.npz [--atoms 512 --lam 0.5 --updates 300]
    python -m spikevae.lca infer --dictionary dict.npz --out lca_run/ [--simulator reference|brian|spiking]
    python -m spikevae.lca infer --checkpoint pvae.pt --out lca_run/      # Φ = the P-VAE's decoder atoms

Dictionary files are ``.npz`` (no pickles): ``phi`` (D, K) with unit-norm columns,
``patch_size``, the ``preprocessing`` and provenance as JSON strings.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from ..brian.lca import lca_brian
from ..data import Preprocessing, natural_patches
from ..errors import ArgumentError
from ..io.dictionary import load_dictionary, save_dictionary
from ..io.files import file_record, provenance, write_json, write_npz
from ..lca import THRESHOLDS, LCAConfig, lca, lca_fixed_point, learn_dictionary, normalise_atoms
from ..workflows.run_folder import write_run_files
from .common import Parser, cli_entry, nonneg_float, positive_float, positive_int, seed, subject_from

__all__ = ["main"]


def _parser() -> Parser:
    p = Parser(prog="python -m spikevae.lca", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = LCAConfig()
    for name in ("learn", "infer"):
        s = sub.add_parser(name)
        s.error = p.error  # one-line errors
        if name == "learn":
            s.add_argument("--out", required=True, help="dictionary file (.npz); its figure is <stem>_basis.png")
        else:
            s.add_output("lca infer")
            s.add_subject()
        if name == "learn":
            s.add_argument("--lam", type=nonneg_float, default=0.5, help="threshold lambda")
        else:
            s.add_argument("--lam", type=nonneg_float, default=None,
                           help=f"threshold lambda (default: the lambda a --dictionary was learned with; {d.lam} for a "
                                "--checkpoint's atoms)")
        s.add_argument("--tau", type=positive_float, default=d.tau * 1e3, help="time constant, ms")
        s.add_argument("--dt", type=positive_float, default=d.dt * 1e3, help="Euler step, ms")
        s.add_argument("--steps", type=positive_int, default=300 if name == "learn" else d.n_steps,
                       help="cap on the Euler steps (learning: steps per batch)")
        s.add_argument("--tol", type=nonneg_float, default=0.0 if name == "learn" else d.tol,
                       help="stop an input when its relative duality gap (soft, nonneg) or fixed-point residual "
                            "(hard) is at most this; 0: run exactly --steps (learning's default: Olshausen-Field "
                            "updates from codes after a fixed number of steps)")
        s.add_argument("--threshold", default="soft", choices=THRESHOLDS,
                       help="soft: the LASSO code; nonneg: a non-negative one; hard: an l0 code")
        s.add_argument("--seed", type=seed, default=0, help="seed of the patches and the initial dictionary")
        s.add_argument("--quiet", action="store_true", help="no progress display")
    learn = sub.choices["learn"]
    learn.add_argument("--atoms", type=positive_int, default=512, help="dictionary atoms (units)")
    learn.add_argument("--updates", type=positive_int, default=300, help="dictionary updates (batches)")
    learn.add_argument("--batch", type=positive_int, default=250, help="patches per dictionary update")
    learn.add_argument("--eta", type=positive_float, default=1.0, help="dictionary learning rate")
    learn.add_argument("--n-train", type=positive_int, default=100_000, help="training patches")
    infer = sub.choices["infer"]
    infer.add_argument("--dictionary", help="dictionary .npz from `learn`")
    infer.add_argument("--checkpoint", help="use a P-VAE checkpoint's linear decoder atoms (normalised)")
    infer.add_argument("--n-patches", type=positive_int, default=1000, help="held-out natural patches to encode")
    infer.add_argument("--simulator", default="fixed-point", choices=("fixed-point", "reference", "brian", "spiking"),
                       help="fixed-point: the converged codes directly (certified by the duality gap); reference, "
                            "brian: the LCA dynamics (numpy/compiled or Brian2), run until --tol; spiking: "
                            "integrate-and-fire LCA for --duration")
    infer.add_argument("--duration", type=positive_float, default=500.0, help="spiking: simulated time, ms")
    infer.add_argument("--target", default="numpy", choices=("numpy", "cython"), help="Brian2 runtime target")
    return p


def _cfg(args) -> LCAConfig:
    return LCAConfig(lam=args.lam, tau=args.tau * 1e-3, dt=args.dt * 1e-3, n_steps=args.steps,
                     threshold=args.threshold, tol=args.tol).validate()


def _learn(args) -> int:
    from .. import plots

    cfg = _cfg(args)
    out = Path(args.out)
    if out.suffix != ".npz":  # the figure's name derives from it and must never be the dictionary's
        raise ArgumentError(f"--out is the dictionary file and must end in .npz, got {out.name}")
    if not out.parent.is_dir():
        raise ArgumentError(f"output folder {out.parent} does not exist")
    from .._resources import check_memory

    check_memory(8.0 * (args.n_train + 2000) * 256 * 2 + 8.0 * args.atoms * args.atoms * 2,
                 f"--n-train {args.n_train} with --atoms {args.atoms}")
    prep = Preprocessing()
    data = natural_patches(args.n_train, 2000, prep, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    x = data.train.reshape(len(data.train), -1)
    xv = data.val.reshape(len(data.val), -1)
    phi0 = normalise_atoms(rng.standard_normal((x.shape[1], args.atoms)))
    heldout = (lambda p: lca_fixed_point(xv, p, cfg)) if cfg.threshold != "hard" else (lambda p: lca(xv, p, cfg))
    e0 = float(heldout(phi0).energy[-1])
    t0 = time.perf_counter()
    phi, trace = learn_dictionary(x, args.atoms, cfg, args.updates, args.batch, args.eta, rng, phi0,
                                  progress=not args.quiet)
    wall = time.perf_counter() - t0
    res = heldout(phi)  # converged codes (soft, nonneg) on the held-out patches
    meta = {"lca_config": dataclasses.asdict(cfg), "atoms": args.atoms, "updates": args.updates, "batch": args.batch,
            "eta": args.eta, "seed": args.seed, "data": data.source, "heldout_energy_initial": e0,
            "heldout_energy_final": float(res.energy[-1]), "heldout_fraction_active": res.fraction_active,
            "energy_trace": trace, "wall_seconds": wall, "provenance": provenance(args.seed)}
    save_dictionary(out, phi, prep, meta)
    order = np.argsort(-np.abs(res.codes).mean(0))
    fig = plots.basis_grid(phi.T.reshape(-1, prep.patch_size, prep.patch_size), order, n_show=min(256, args.atoms),
                           title=f"LCA dictionary (lambda {args.lam}), ordered by mean |a| on held-out patches")
    fig_path = out.with_name(f"{out.stem}_basis.png")
    plots.save_figure(fig, fig_path)
    print(f"held-out energy {e0:.2f} -> {res.energy[-1]:.2f}, fraction active {res.fraction_active:.3f}, "
          f"{wall:.0f} s; wrote {out} and {fig_path}")
    return 0


def _infer(args) -> int:
    if bool(args.dictionary) == bool(args.checkpoint):
        raise ArgumentError("give exactly one of --dictionary or --checkpoint")
    learned = None
    if args.dictionary:
        phi, prep, src = load_dictionary(args.dictionary)
        source = {"dictionary": file_record(args.dictionary)}
        learned = (src.get("lca_config") or {}).get("lam")
        if args.lam is None and learned is not None:
            args.lam = float(learned)
            print(f"lambda {args.lam:g}: the lambda {args.dictionary} was learned with")
        elif learned is not None and not np.isclose(args.lam, learned):
            print(f"warning: lambda {args.lam:g} differs from the {learned:g} {args.dictionary} was learned with; its atoms "
                  f"are shaped by that sparsity (drop --lam to use {learned:g})", file=sys.stderr)
    if args.lam is None:
        args.lam = LCAConfig().lam
    cfg = _cfg(args)
    if not args.dictionary:
        from ..models.trained import load_model

        model = load_model(args.checkpoint)
        phi, prep = model.dictionary, model.preprocessing
        source = {"checkpoint": file_record(args.checkpoint)}
    phi = normalise_atoms(phi)
    from .._resources import check_memory
    from ..io import RunFolder

    # patches (float32 and float64), and states, codes and inhibition per patch and atom (float64)
    check_memory(args.n_patches * (12.0 * phi.shape[0] + 8.0 * 4 * phi.shape[1]), f"--n-patches {args.n_patches}")
    x = natural_patches(1, args.n_patches, prep, seed=args.seed + 1).val.reshape(args.n_patches, -1).astype(np.float64)
    with RunFolder(args.out, "lca infer", args.overwrite) as files:
        return _infer_into(files, args, cfg, x, phi, prep, source)


def _infer_into(files, args, cfg, x, phi, prep, source) -> int:
    out = files.path
    t0 = time.perf_counter()
    if args.simulator == "fixed-point":
        res = lca_fixed_point(x, phi, cfg)
    elif args.simulator == "reference":
        res = lca(x, phi, dataclasses.replace(cfg, record_every=10), progress=not args.quiet)
    elif args.simulator == "brian":
        res = lca_brian(x, phi, cfg, inhibition="dense", target=args.target)
    else:
        res = None
    summary = {"simulator": args.simulator, "lca_config": dataclasses.asdict(cfg), "source": source,
               "n_patches": args.n_patches, "seed": args.seed}
    if res is not None:
        write_npz(out / "codes.npz", codes=res.codes, states=res.states, energy=res.energy,
                  energy_steps=res.energy_steps, recon_error=res.recon_error, patches=x)
        summary.update(energy=float(res.energy[-1]), fraction_active=res.fraction_active,
                       mse=float(res.recon_error.mean()), l1=float(np.abs(res.codes).sum(1).mean()),
                       converged=int(res.converged.sum()), max_residual=float(res.residual.max()),
                       steps_median=float(np.median(res.steps)), steps_max=int(res.steps.max()))
    else:
        from ..spikes.producers import SpikingLCAProducer
        from ..stimuli import StimulusSet

        dur = args.duration * 1e-3
        producer = SpikingLCAProducer(phi, prep, dataclasses.replace(
            cfg, threshold="nonneg" if cfg.threshold == "nonneg" else "soft"), window=dur, target=args.target)
        produced = producer.produce(x, 1, args.seed, meta={"seed": args.seed, **summary,
                                                           "provenance": provenance(args.seed)})
        st, codes = produced.spikes, producer.codes(produced.code)
        write_npz(out / "codes.npz", codes=codes, patches=x)
        summary.update(n_spikes=int(st.n_spikes), fraction_active=float(np.mean(codes != 0)), duration_s=dur)
        summary["wall_seconds"] = time.perf_counter() - t0
        n_in, P = x.shape[0], prep.patch_size
        stim = StimulusSet(x.reshape(n_in, P, P), "natural", {}, "held-out whitened natural-image patches")
        write_run_files(out, st, summary, command="lca infer", stimuli=stim, draw=_draw_spiking,
                        draw_args=(st, min(n_in, 20)), subject=args.subject, description="spikevae spiking LCA")
    if res is not None:
        summary["wall_seconds"] = time.perf_counter() - t0
        write_json(out / "summary.json", summary)
    labels = {"energy": "energy ½‖x − Φa‖² + λ‖a‖₁", "mse": "MSE ‖x − Φa‖²", "fraction_active": "fraction active",
              "n_spikes": "spikes"}  # per patch, means over patches
    print(f"LCA ({args.simulator}, lambda {cfg.lam:g}) on {args.n_patches} held-out patches, means per patch: " +
          ", ".join(f"{labels[k]} {summary[k]:.4g}" for k in labels if k in summary) + f"; wrote {out}")
    return 0


def _draw_spiking(out: Path, st, n_show: int) -> dict:
    from .. import plots

    fig = plots.raster(st, max_presentations=n_show,
                       title="spiking-LCA integrate-and-fire neurons (Brian2; ON units first)")
    return {"raster": plots.save_figure(fig, out / "figures" / "raster.png")}


@cli_entry("python -m spikevae.lca")
def main(argv=None) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(argv)
    if args.command == "infer":
        args.subject = subject_from(args)  # refused before anything is computed
    return _learn(args) if args.command == "learn" else _infer(args)
