"""``python -m spikevae.simulate --checkpoint pvae.pt --out run/``: real spike trains from a P-VAE, iP-VAE or LCA.

Stimuli → the checkpoint's preprocessing → posterior rates λ (expected counts
per presentation window) → Brian2 Poisson neurons, one per latent unit
(:mod:`spikevae.spikes`) → a :class:`~spikevae.records.SpikeTrains` record →
``spikes.nwb`` (pynwb), ``spikes.nix`` (Neo NixIO), ``summary.json`` and
figures. Each presentation's spike counts are also decoded through the model's
decoder, next to the rate-based (λ) reconstruction. The work is
:func:`spikevae.workflows.simulate.simulate_to_folder` (the run streamed to disk chunk by chunk: memory does not
grow with its length). Every model goes through its producer (:mod:`spikevae.spikes.producers`): an LCA
dictionary (``--dictionary``) through the same Poisson layer, an iP-VAE checkpoint through its Brian2 inference
circuit; the run folder is written by one writer for all.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ArgumentError, DataError
from .common import (
    Parser,
    cli_entry,
    nonneg_float,
    positive_float,
    positive_int,
    scheduler_address,
    seed,
    subject_from,
)

__all__ = ["main"]


def _parser() -> Parser:
    from ..brian.ipvae import IPVAECircuitConfig
    from ..spikes import TARGETS, PoissonLayerConfig
    from ..spikes.producers import LCA_GAIN, N_ITER
    from ..spikes.spike_model import PRESETS

    layer, circuit = PoissonLayerConfig(), IPVAECircuitConfig()  # the defaults, written once in the configs
    p = Parser(prog="python -m spikevae.simulate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="P-VAE or iP-VAE checkpoint (default: the shipped P-VAE)")
    p.add_argument("--dictionary", help="an LCA dictionary (python -m spikevae.lca learn) instead of a checkpoint: "
                                        "its units' converged codes drive the Poisson layer")
    p.add_output("simulate", "run")
    p.add_subject()
    p.add_argument("--stimuli", default="natural", help="natural | white-noise | gratings | DIR of images")
    p.add_argument("--n-stimuli", type=positive_int, default=50, help="stimuli to present")
    p.add_argument("--repeats", type=positive_int, default=5, help="presentations of each stimulus")
    p.add_argument("--window", type=positive_float, default=layer.window * 1e3, help="presentation window, ms")
    p.add_argument("--gap", type=nonneg_float, default=layer.gap * 1e3, help="blank between presentations, ms")
    p.add_argument("--dt", type=positive_float, default=layer.dt * 1e3, help="simulation time step, ms")
    p.add_argument("--target", default=layer.target, choices=TARGETS, help="Brian2 code generation")
    p.add_argument("--chunk", type=positive_int, default=layer.chunk,
                   help="presentations per Brian2 run (bounds memory; the spikes do not depend on it)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="local processes running Brian2 chunks in parallel (the spikes do not change; default: "
                        "every core when the run has more than one --chunk, else 1)")
    p.add_argument("--scheduler", type=scheduler_address,
                   help="address of a running Dask scheduler to run the chunks on (as sweep's)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the stimuli and the spikes (same seed, same spikes)")
    p.add_argument("--device", default="auto", help="model device: auto | cpu | cuda")
    p.add_argument("--no-neo", action="store_true",
                   help="skip the Neo (NixIO) file (it holds the whole run in memory: skip it for long runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    c = p.add_argument_group("iP-VAE checkpoints (the circuit infers by spiking: its spikes over the iterations; "
                             "--window, --gap, --dt, --chunk, --workers, --scheduler and the spike-generation options do "
                             "not apply)")
    c.add_argument("--iterations", type=positive_int, default=N_ITER, help="inference iterations per presentation")
    c.add_argument("--period", type=positive_float, default=circuit.period * 1e3, help="ms per inference iteration")
    c.add_argument("--substeps", type=positive_int, default=circuit.substeps,
                   help="Brian2 steps per iteration (at most this many spikes per unit per iteration)")
    d = p.add_argument_group("LCA dictionaries (--dictionary: λ = gain x the rectified converged code; signed codes "
                             "as ON and OFF units)")
    d.add_argument("--lam", type=positive_float, default=None,
                   help="LCA threshold λ (default: the one the dictionary was learned with)")
    d.add_argument("--gain", type=positive_float, default=LCA_GAIN,
                   help="expected spikes per window per unit of LCA code")
    s = p.add_argument_group("spike generation (docs/spike_generation.md; all off by default: the plain Poisson "
                             "layer, Hz = λ / window)")
    s.add_argument("--preset", choices=sorted(PRESETS), default="poisson",
                   help="named settings, which the options below override: "
                        + "; ".join(f"{k}: {v.describe()}" for k, v in sorted(PRESETS.items())))
    for flag, kind, text in (
            ("--gain-hz", positive_float, "time base: Hz per unit λ (instead of λ / window)"),
            ("--target-rate", positive_float, "time base: mean evoked rate over the run, Hz"),
            ("--spontaneous", nonneg_float, "spontaneous rate in windows and gaps, Hz"),
            ("--latency", nonneg_float, "response latency after stimulus onset, ms"),
            ("--transient", positive_float, "onset transient: peak / sustained rate (1: flat)"),
            ("--transient-tau", positive_float, "decay of the onset transient, ms"),
            ("--refractory", nonneg_float, "absolute refractory period, ms (0: off)"),
            ("--gamma-order", positive_int, "gamma-renewal order k (1: Poisson)"),
            ("--gain-cv", nonneg_float, "s.d. of a gain shared by all units per presentation")):
        s.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=f"{text} (default: the preset's)")
    s.add_argument("--no-refractory-correction", action="store_true",
                   help="do not raise the drive to keep the expected counts under refractoriness")
    return p


def spike_model(args):
    """The SpikeModel the options ask for: the preset, then each option given."""
    import dataclasses

    from ..spikes.spike_model import PRESETS

    model = PRESETS[args.preset]
    opt = lambda name: getattr(args, name, None)  # noqa: E731 - options not given are absent (the preset's value)
    change = {k: v for k, v in {"spontaneous_hz": opt("spontaneous"), "transient_ratio": opt("transient"),
                                "gamma_order": opt("gamma_order"), "gain_cv": opt("gain_cv")}.items() if v is not None}
    for name, ms in (("latency", opt("latency")), ("transient_tau", opt("transient_tau")),
                     ("refractory", opt("refractory"))):
        if ms is not None:
            change[name] = ms * 1e-3
    if opt("gain_hz") is not None and opt("target_rate") is not None:
        raise ArgumentError("give at most one of --gain-hz and --target-rate")
    if opt("gain_hz") is not None:
        change.update(rate_scale="gain", gain_hz=opt("gain_hz"))
    if opt("target_rate") is not None:
        change.update(rate_scale="target", target_rate_hz=opt("target_rate"))
    if args.no_refractory_correction:
        change["correct_refractory"] = False
    return dataclasses.replace(model, **change).validate()


@cli_entry("python -m spikevae.simulate")
def main(argv=None) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(argv)
    args.subject = subject_from(args)  # refused before anything is loaded
    from ..models.container import IPVAE_FAMILY, default_checkpoint_path

    if args.checkpoint is not None and args.dictionary is not None:
        raise ArgumentError("give at most one of --checkpoint and --dictionary")
    if args.checkpoint is not None and _family(args.checkpoint) == IPVAE_FAMILY:
        return _simulate_ipvae(args)
    from ..spikes import PoissonLayerConfig
    from ..spikes.plan import default_workers
    from ..workflows.simulate import describe_simulation, rate_producer, simulate_to_folder

    layer = PoissonLayerConfig(window=args.window * 1e-3, gap=args.gap * 1e-3, dt=args.dt * 1e-3,
                               target=args.target, chunk=args.chunk, spikes=spike_model(args)).validate()
    workers = args.workers or default_workers(args.n_stimuli * args.repeats, layer.chunk)
    if args.dictionary is not None:
        producer = _lca_producer(args, layer, workers)
    else:
        if args.checkpoint is None:
            print(f"no --checkpoint given: using the shipped model {default_checkpoint_path()}")
        producer = rate_producer(args.checkpoint, layer, args.device, workers, args.scheduler)
    out = Path(args.out)
    summary = simulate_to_folder(out, producer, args.stimuli, args.n_stimuli, args.repeats, layer, args.seed,
                                 progress=not args.quiet, neo=not args.no_neo, overwrite=args.overwrite,
                                 subject=args.subject)
    print(describe_simulation(summary, out, neo=not args.no_neo))
    return 0


def _family(path) -> str:
    """The family a checkpoint names, read without torch (the file is checked as every checkpoint is)."""
    from ..errors import CheckpointError
    from ..io.files import regular_input
    from ..io.torchfile import read_torch_file
    from ..models.container import MAX_BYTES, check_tags

    try:
        path = regular_input(path, "checkpoint", MAX_BYTES)
    except DataError as exc:
        raise CheckpointError(str(exc)) from None
    return check_tags(read_torch_file(path), path).get("family", "poisson")


def _lca_producer(args, layer, workers):
    """The LCA dictionary's units as a producer, at the λ it was learned with unless --lam says otherwise."""
    from ..io.dictionary import load_dictionary
    from ..io.files import file_record
    from ..lca import LCAConfig
    from ..spikes.producers import LCAProducer

    phi, prep, meta = load_dictionary(args.dictionary)
    learned = meta.get("lca_config") or {}
    threshold = learned.get("threshold", "soft")
    if threshold == "hard":
        raise ArgumentError(f"{args.dictionary} was learned with the hard threshold; its codes have no rate form here")
    lam = args.lam if args.lam is not None else float(learned.get("lam", LCAConfig().lam))
    return LCAProducer(phi, prep, LCAConfig(lam=lam, threshold=threshold), args.gain, layer, workers, args.scheduler,
                       source=file_record(args.dictionary))


def _simulate_ipvae(args) -> int:
    """The iP-VAE's inference as a Brian2 circuit (:mod:`spikevae.brian.ipvae`)."""
    from ..brian.ipvae import IPVAECircuitConfig
    from ..models.ipvae import load
    from ..workflows.circuit import simulate_circuit_to_folder

    target = "numpy" if args.target in ("auto", "numpy") else "cython" if args.target == "cython" else None
    if target is None:
        raise ArgumentError("the iP-VAE circuit runs on Brian2's runtime targets: --target auto, numpy or cython")
    cfg = IPVAECircuitConfig(period=args.period * 1e-3, substeps=args.substeps, target=target).validate()
    model = load(args.checkpoint)
    model.path = Path(args.checkpoint)
    out = Path(args.out)
    s = simulate_circuit_to_folder(out, model, args.stimuli, args.n_stimuli, args.repeats, args.iterations, cfg,
                                   args.seed, neo=not args.no_neo, overwrite=args.overwrite, subject=args.subject)
    last = s["readout"][-1]
    print(f"iP-VAE circuit: {s['n_presentations']} presentations ({s['n_stimuli']} {s['stimuli']} stimuli x "
          f"{s['repeats']}) of {s['n_units']} units, {s['n_iter']} iterations of {args.period:g} ms, target {target}")
    print(f"spikes: {s['n_spikes']} ({s['mean_rate_hz']:.2f} Hz per unit); read-out at t = {last['t']}: R² "
          f"{last['r2']:.3f} (pooled {last['r2_pooled']:.3f}), zeros {last['zeros']:.3f}, "
          f"{last['spikes_per_patch']:.1f} spikes per patch per iteration"
          + (f"; {s['clipped_spikes']} spikes did not fit their period (raise --substeps)" if s["clipped_spikes"] else ""))
    print(f"wrote {out / 'spikes.nwb'}" + ("" if args.no_neo else f", {out / 'spikes.nix'}") +
          f", {out / 'summary.json'} and figures in {out / 'figures'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
