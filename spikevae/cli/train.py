"""``python -m spikevae.train --out pvae.pt``: train a P-VAE (or another family, or an iP-VAE).

Schedules follow the reference (anchor §2.1): temperature linear 1.0 → 0.05 and
β linear 1e-4 → β over the first half of the iterations, then constant; a
linear learning-rate warm-up followed by per-iteration cosine decay to
``lr_min``; Adamax; global gradient-norm clipping. Validation each epoch uses
exact Poisson counts (t = 0) and reports NELBO, MSE (sampled counts), MSE of
the posterior mean, KL, the fraction of active latents (per-latent KL > 0.01),
lifetime sparsity and the portion of zero counts.

A checkpoint with the optimizer and RNG state is written after every epoch
(atomically), so ``--resume`` continues an interrupted run on the same
trajectory; the finished file drops the resume state.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from .._resources import check_memory
from ..data import DATASETS, Preprocessing, load_dataset
from ..errors import ArgumentError, DataError
from ..models import checkpoint as ckpt_mod
from ..models.config import FAMILY_TEMP_STOP, TrainConfig, make_configs
from ..models.ipvae import IPVAETrainConfig
from ..models.training import extend_config, fingerprint, fit, load_model_for_init
from ..models.vae import FAMILIES, VAEConfig
from .common import (
    Parser,
    cli_entry,
    nonneg_float,
    positive_float,
    positive_int,
    resolve_device,
    seed,
    unit_float,
)

__all__ = ["main"]


def _parser() -> Parser:
    SUPPRESS = argparse.SUPPRESS  # options whose default depends on --model: set in main  # noqa: N806
    p = Parser(prog="python -m spikevae.train", description="Train a Poisson VAE (or a Gaussian VAE) on image patches.")
    d = TrainConfig()
    m = VAEConfig()
    p.add_argument("--out", required=True, help="checkpoint to write (e.g. pvae.pt)")
    p.add_argument("--dataset", default=d.dataset, choices=DATASETS, help="training data")
    p.add_argument("--images", help="folder of PNG/JPEG/TIFF/.iml images (implies --dataset images)")
    p.add_argument("--mnist", help="folder with MNIST IDX files (implies --dataset mnist)")
    p.add_argument("--model", default=m.family, choices=(*FAMILIES, "ipvae"),
                   help="latent family; ipvae: the iterative Poisson VAE (inference by spiking dynamics, no encoder)")
    p.add_argument("--arch", default="lin|lin", help="encoder|decoder, encoder in lin|conv|mlp, decoder in lin|conv")
    p.add_argument("--latents", type=positive_int, default=m.n_latents, help="number of latent units K")
    p.add_argument("--patch-size", type=positive_int, default=m.patch_size, help="patch side in pixels (natural/images)")
    pp = Preprocessing()
    p.add_argument("--downsample", type=positive_int, default=pp.downsample,
                   help="block-average each image by this factor before whitening (natural/images)")
    p.add_argument("--whiten-f0", type=positive_float, default=pp.whiten_f0,
                   help="whitening roll-off, cycles/pixel of the downsampled image (natural/images)")
    p.add_argument("--n-train", type=positive_int, default=d.n_train, help="training inputs")
    p.add_argument("--n-val", type=positive_int, default=d.n_val, help="held-out validation inputs")
    ip = IPVAETrainConfig()
    p.add_argument("--beta", type=nonneg_float, default=SUPPRESS, help=f"final KL weight (default {d.beta}; ipvae {ip.beta})")
    p.add_argument("--epochs", type=positive_int, default=SUPPRESS, help=f"default {d.epochs}; ipvae {ip.epochs}")
    p.add_argument("--batch-size", type=positive_int, default=SUPPRESS, help=f"default {d.batch_size}; ipvae {ip.batch_size}")
    p.add_argument("--lr", type=positive_float, default=SUPPRESS, help=f"default {d.lr}; ipvae {ip.lr}")
    p.add_argument("--iterations", type=positive_int, default=ip.n_iter,
                   help="ipvae: inference iterations unrolled in training (T)")
    p.add_argument("--init-from", metavar="CKPT",
                   help="ipvae: start from a P-VAE checkpoint's generative model (its atoms Φ and prior rates)")
    p.add_argument("--temp-start", type=positive_float, default=d.temp_start,
                   help="relaxation temperature at the start of the annealing")
    p.add_argument("--temp-stop", type=positive_float, default=SUPPRESS,
                   help=f"final temperature (default {d.temp_stop}; categorical {FAMILY_TEMP_STOP['categorical']}; "
                        f"ipvae {ip.temp_stop})")
    p.add_argument("--anneal-portion", type=unit_float, default=d.anneal_portion,
                   help="fraction of training over which temperature and beta are annealed")
    p.add_argument("--method", default=d.method, choices=("mc", "exact"),
                   help="mc: relaxed Poisson samples; exact: the closed-form expected loss of a linear decoder")
    p.add_argument("--straight-through", action="store_true", help="hard counts forward after annealing (ST)")
    p.add_argument("--grad-clip", type=positive_float, default=SUPPRESS, help=f"default {d.grad_clip}; ipvae {ip.grad_clip}")
    p.add_argument("--seed", type=seed, default=d.seed, help="seed of the data, the initialisation and the samples")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--resume", metavar="CKPT",
                   help="continue an interrupted run from its checkpoint; with --epochs N, extend a run (finished or "
                        "not) to N epochs in total (the lr follows an N-epoch cosine from there, annealing stays done)")
    p.add_argument("--stop-after", type=positive_int, metavar="EPOCHS",
                   help="stop after this many epochs in total (the schedules still span --epochs); the checkpoint "
                        "keeps its resume state, so --resume continues the run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


#: recipe options of ``--model ipvae``: a resumed run keeps the stored values
_IPVAE_RECIPE = ("epochs", "batch_size", "lr", "beta", "iterations", "temp_start", "temp_stop", "grad_clip", "seed",
                 "latents", "patch_size", "downsample", "whiten_f0", "n_train", "n_val", "dataset", "images", "mnist",
                 "init_from", "arch", "method", "straight_through", "anneal_portion")


def _given(parser: Parser, argv) -> set:
    """The destinations of the options written on the command line (``--opt v`` or ``--opt=v``)."""
    words = [w.split("=", 1)[0] for w in (sys.argv[1:] if argv is None else argv) if w.startswith("--")]
    return {a.dest for a in parser._actions if any(o in words for o in a.option_strings)}


@cli_entry("python -m spikevae.train")
def main(argv=None) -> int:
    """Command-line entry point."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.given = _given(parser, argv)
    for name in ("beta", "epochs", "batch_size", "lr", "grad_clip", "temp_stop"):  # per-model defaults, set below
        setattr(args, name, getattr(args, name, None))
    epochs_given = args.epochs
    device = resolve_device(args.device)
    if args.model == "ipvae":
        return _main_ipvae(args, device)
    d = TrainConfig()
    args.beta, args.epochs, args.batch_size, args.lr = (d.beta if args.beta is None else args.beta,
                                                        args.epochs or d.epochs, args.batch_size or d.batch_size,
                                                        args.lr or d.lr)
    args.grad_clip = args.grad_clip or d.grad_clip
    torch.set_num_threads(max(1, torch.get_num_threads()))
    resume = None
    if args.resume:
        resume = ckpt_mod.load_checkpoint(args.resume, map_location=device)
        mc, _ = ckpt_mod.validate_checkpoint(resume, args.resume)
        tc = TrainConfig(**resume["train_config"])
        done = int(resume["train_state"]["epoch"] if "train_state" in resume else resume.get("epoch") or 0)
        if epochs_given is not None:
            tc = extend_config(tc, done, epochs_given)
            print(f"extending {args.resume} from {done} to {tc.epochs} epochs"
                  + ("" if "train_state" in resume else " (finished run: the optimizer state restarts)"))
        elif "train_state" not in resume:
            raise ArgumentError(f"{args.resume} is a finished run ({done} epochs); to train it further give the new "
                                f"total, e.g. --resume {args.resume} --epochs {2 * done}")
    else:
        dataset = "mnist" if args.mnist else "images" if args.images else args.dataset
        mc, tc = make_configs(args.model, args.latents, args.arch, args.patch_size, dataset=dataset,
                              images=args.images, mnist=args.mnist, n_train=args.n_train, n_val=args.n_val,
                              epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, beta=args.beta,
                              temp_start=args.temp_start, temp_stop=args.temp_stop,
                              anneal_portion=args.anneal_portion, method=args.method,
                              straight_through=args.straight_through, grad_clip=args.grad_clip, seed=args.seed)
    # the training and validation inputs live in memory as float32, once on the host and once on the device
    check_memory(2 * 4 * (tc.n_train + tc.n_val) * mc.n_pixels, f"{tc.n_train} + {tc.n_val} patches")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ArgumentError(f"output folder {out.parent} does not exist")
    ckpt_mod.check_output(out)  # a checkpoint replaces only a checkpoint
    if resume is not None:  # the data of the run being continued, whatever today's defaults are
        prep = Preprocessing.from_dict(resume["preprocessing"])
    else:
        prep = Preprocessing(patch_size=mc.patch_size, downsample=args.downsample, whiten_f0=args.whiten_f0)
        try:
            prep.validate()
        except DataError as exc:
            raise ArgumentError(str(exc)) from None
    data = load_dataset(tc.dataset, n_train=tc.n_train, n_val=tc.n_val, patch_size=mc.patch_size,
                        images=tc.images, mnist_dir=tc.mnist, seed=tc.seed, prep=prep)
    if mc.patch_size != data.train.shape[-1]:
        mc = dataclasses.replace(mc, patch_size=int(data.train.shape[-1])).validate()
    print(f"training {mc.family} VAE {mc.encoder}|{mc.decoder}, K={mc.n_latents}, on {data.source}: "
          f"{len(data.train)} train / {len(data.val)} validation inputs, device {device}")
    if mc.n_latents > 2 * mc.n_pixels:
        print(f"warning: {mc.n_latents} latents for {mc.n_pixels}-pixel inputs: most will stay at the prior (collapsed); "
              f"the reference uses K = 10-50 for digits (--latents 50)", file=sys.stderr)
    res = fit(mc, tc, data, out, device, resume=resume, progress=not args.quiet, stop_after=args.stop_after)
    m = res.metrics
    if m.get("active_fraction", 1.0) == 0.0:
        print(f"warning: no latent is active (every per-latent KL <= 0.01 nats; total KL {m['kl']:.3g}): the posterior "
              "collapsed to the prior. Try fewer --latents, a smaller --beta or more --epochs", file=sys.stderr)
    keys = ("nelbo", "mse", "mse_map", "kl", "active_fraction", "lifetime_sparsity", "portion_zeros")
    print("validation: " + ", ".join(f"{k} {m[k]:.4g}" for k in keys if k in m))
    print(f"wrote {out}")
    return 0


def _main_ipvae(args, device) -> int:
    """``--model ipvae``: the iterative Poisson VAE, trained with the reference's recipe (:func:`spikevae.models.ipvae.fit`).

    A checkpoint is written after every epoch; an unfinished one keeps the optimizer and generator state, and
    ``--resume`` carries the run on, step for step, with the recipe and data stored in it."""
    from ..models import ipvae

    if args.straight_through or args.arch != "lin|lin" or args.method != "mc":
        raise ArgumentError("--model ipvae takes no --straight-through, --arch or --method "
                            "(its decoder is linear and its inference is iterative)")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ArgumentError(f"output folder {out.parent} does not exist")
    ckpt_mod.check_output(out)  # a checkpoint replaces only a checkpoint
    if args.resume:
        model, tc, prep, dataset, images = _ipvae_resume(args)
    else:
        d = IPVAETrainConfig()
        tc = IPVAETrainConfig(epochs=args.epochs or d.epochs, batch_size=args.batch_size or d.batch_size,
                              lr=args.lr or d.lr, beta=d.beta if args.beta is None else args.beta,
                              n_iter=args.iterations, temp_start=args.temp_start, temp_stop=args.temp_stop or d.temp_stop,
                              grad_clip=args.grad_clip or d.grad_clip, seed=args.seed).validate()
        init = load_model_for_init(args.init_from, args.latents) if args.init_from else None
        prep = (init.preprocessing if init is not None else
                Preprocessing(patch_size=args.patch_size, downsample=args.downsample, whiten_f0=args.whiten_f0))
        dataset = "mnist" if args.mnist else "images" if args.images else args.dataset
        images, model = args.images, None
    try:
        prep.validate()
    except DataError as exc:
        raise ArgumentError(str(exc)) from None
    n_train, n_val = ((args.resume_data["n_train"], args.resume_data["n_val"]) if args.resume else
                      (args.n_train, args.n_val))
    check_memory(2 * 4 * (n_train + n_val) * prep.patch_size**2, f"{n_train} + {n_val} patches")
    data = load_dataset(dataset, n_train=n_train, n_val=n_val, patch_size=prep.patch_size, images=images,
                        mnist_dir=args.mnist, seed=tc.seed, prep=prep)
    record = {"source": data.source, "dataset": dataset, "n_train": len(data.train), "n_val": len(data.val),
              "train_sha256_16": fingerprint(data.train), "val_sha256_16": fingerprint(data.val),
              **({"images": str(images)} if images else {})}
    if args.resume:
        stored = args.resume_data
        if (stored.get("train_sha256_16"), stored.get("val_sha256_16")) != (record["train_sha256_16"],
                                                                           record["val_sha256_16"]):
            raise ArgumentError(f"{args.resume}: its training data cannot be drawn again here (the patches differ "
                                "from the ones it recorded); the run cannot continue on the same trajectory")
    else:
        side = int(data.train.shape[-1])
        model = ipvae.IPVAE(ipvae.IPVAEConfig(n_latents=args.latents, patch_size=side), seed=args.seed)
        if init is not None:
            ipvae.init_from_pvae(model, init)
    print(f"training iP-VAE, K={model.config.n_latents}, T={tc.n_iter}, on {data.source}: {len(data.train)} train / "
          f"{len(data.val)} validation inputs, device {device}"
          + (f"; resuming {args.resume} after epoch {args.resume_state['epoch']} of {tc.epochs}" if args.resume else ""))
    xtr = torch.as_tensor(data.train).reshape(len(data.train), -1)

    def checkpoint(epoch, history, state):
        row = history[-1]
        metrics = dict(row.get("val", {}))
        if args.quiet:  # one line per epoch instead of the progress bar: a log of the run
            val = "".join(f", val {k} {metrics[k]:.4f}" for k in ("r2", "r2_pooled", "zeros", "distance") if k in metrics)
            print(f"epoch {epoch}/{tc.epochs} (step {row['step']}): loss {row['loss']:.2f}, nll {row['nll']:.2f}, "
                  f"kl {row['kl']:.3f}, temperature {row['temperature']:.3f}, beta {row['beta']:.2f}, "
                  f"{row['seconds']:.0f} s{val}", flush=True)
        ipvae.save(model, out, history, tc, preprocessing=data.preprocessing.to_dict(), data=record, metrics=metrics,
                   seed=tc.seed, train_state=state)

    history = ipvae.fit(model, xtr, tc, progress=not args.quiet, device=device,
                        resume=args.resume_ck if args.resume else None, stop_after=args.stop_after,
                        on_epoch=checkpoint, x_val=data.val, val_every=VAL_EVERY)
    if history[-1]["epoch"] < tc.epochs:
        print(f"stopped after epoch {history[-1]['epoch']} of {tc.epochs}; continue with "
              f"python -m spikevae.train --model ipvae --resume {out} --out {out}")
        print(f"wrote {out}")
        return 0
    rows = ipvae.evaluate(model, data.val, t_max=tc.n_iter, save_t=(tc.n_iter,), seed=tc.seed, device=device)
    metrics = dict(rows[-1])
    ipvae.save(model, out, history, tc, preprocessing=data.preprocessing.to_dict(), data=record, metrics=metrics,
               seed=tc.seed)
    print(f"validation at T = {tc.n_iter}: " + ", ".join(f"{k} {metrics[k]:.4g}" for k in
                                                          ("r2", "r2_pooled", "r2_rates", "mse", "zeros", "distance",
                                                           "spikes_per_patch")))
    print(f"wrote {out}")
    return 0


#: epochs between the validation rows of an iP-VAE's training history (and after the last)
VAL_EVERY = 5


def _ipvae_resume(args):
    """The model, recipe and data of the unfinished iP-VAE run in ``--resume``; a recipe option on the command
    line that differs from the stored one is refused (the run would not be the one it continues)."""
    from ..errors import CheckpointError
    from ..models import ipvae

    ck = ckpt_mod.load_checkpoint(args.resume)
    if ck.get("family") != ckpt_mod.IPVAE_FAMILY:
        raise ArgumentError(f"{args.resume} holds a {ck.get('family', 'poisson')} VAE run, not an iP-VAE run; resume it "
                            "without --model ipvae")
    model = ipvae.load(args.resume)
    if ck.get("train_state") is None:
        raise ArgumentError(f"{args.resume} is a finished iP-VAE run ({len(ck.get('history', []))} epochs): there is "
                            "nothing to resume")
    tc = IPVAETrainConfig(**ck["train_config"]).validate()
    data = ck.get("data", {})
    if not isinstance(data, dict) or not {"dataset", "n_train", "n_val"} <= set(data):
        raise CheckpointError(f"{args.resume}: its data record does not say which patches it trained on")
    stored = {"epochs": tc.epochs, "batch_size": tc.batch_size, "lr": tc.lr, "beta": tc.beta, "iterations": tc.n_iter,
              "temp_start": tc.temp_start, "temp_stop": tc.temp_stop, "grad_clip": tc.grad_clip, "seed": tc.seed,
              "latents": model.config.n_latents, "n_train": data["n_train"], "n_val": data["n_val"],
              "dataset": data["dataset"]}
    for name in sorted(args.given & set(_IPVAE_RECIPE)):
        if name not in stored or getattr(args, name) != stored[name]:
            shown = f"--{name.replace('_', '-')} {getattr(args, name)}"
            recipe = ", ".join(f"{k} {stored[k]}" for k in ("epochs", "beta", "lr", "iterations", "seed"))
            raise ArgumentError(f"{args.resume} continues its own recipe ({recipe}); {shown} would make it another "
                                "run: start a new one instead")
    args.resume_ck, args.resume_state, args.resume_data = ck, ck["train_state"], data
    return model, tc, Preprocessing.from_dict(ck["preprocessing"]), data["dataset"], data.get("images")


if __name__ == "__main__":
    raise SystemExit(main())
