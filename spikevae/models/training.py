"""Training the P-VAE family: schedules, the training loop and its metrics (the configs: :mod:`.config`)."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ..analysis.sparsity import lifetime_sparsity, population_sparsity
from ..data import PatchSet
from ..errors import ArgumentError
from ..io.files import provenance
from ..seeds import child_seeds
from . import checkpoint as ckpt_mod
from .config import DATASET_PATCH, DECODER_PRIOR_LOG_HIGH, FAMILY_TEMP_STOP, Schedule, TrainConfig, make_configs  # noqa: F401
from .poisson import n_exp_for_rate
from .vae import ANNEALED, VAE, VAEConfig

__all__ = ["TrainResult", "schedule", "evaluate", "extend_config", "fit", "fingerprint", "load_model_for_init"]

log = logging.getLogger(__name__)












class TrainResult(NamedTuple):
    """Outcome of :func:`fit`."""

    model: VAE
    history: list  # one dict per epoch (train loss, schedules, validation metrics)
    metrics: dict  # validation metrics of the last epoch
    path: Path | None  # checkpoint written (None if no output path)


def schedule(step: int, total: int, cfg: TrainConfig) -> Schedule:
    """The :class:`~spikevae.models.config.Schedule` (temperature, β, learning-rate factor) at iteration ``step`` of
    ``total``."""
    frac = min(1.0, step / max(1.0, cfg.anneal_portion * total))
    temp = cfg.temp_start + (cfg.temp_stop - cfg.temp_start) * frac
    beta = cfg.beta_start + (cfg.beta - cfg.beta_start) * frac
    steps_per_epoch = total / cfg.epochs
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        lr_f = (step + 1) / warm
    else:
        prog = (step - warm) / max(1.0, total - warm)
        lr_f = (cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1 + math.cos(math.pi * prog))) / cfg.lr
    return Schedule(temp, beta, lr_f)


@torch.no_grad()
def evaluate(model: VAE, x: torch.Tensor, generator: torch.Generator, batch_size: int = 2000) -> dict:
    """Validation metrics with exact samples (P-VAE: Poisson counts, categorical: one-hot, at t = 0;
    Gaussian/Laplace families at t = 1).

    ``nelbo`` = sampled-latent squared error + KL (the reference's MC NELBO at β = 1); ``nelbo_exact``
    replaces the squared error by its closed-form expectation (linear decoder, not gaussian-relu).
    Sparsities are Treves–Rolls of the sampled latents (of ``|z|`` for the signed Gaussian/Laplace
    families); ``active_fraction`` counts latents with mean KL > 0.01 nats (the reference's training log).
    """
    model.eval()
    cfg = model.config
    poisson = cfg.family == "poisson"
    t_eval = 0.0 if cfg.family in ANNEALED else 1.0  # exact discrete samples for P and C
    exact = cfg.decoder == "lin" and cfg.family != "gaussian-relu"
    mse, mse_map, mse_exact, kl, kl_diag, zs, rates = [], [], [], [], 0.0, [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        post = model.posterior(xb)
        z = model.sample(post, t_eval, generator)
        xf = xb.flatten(1)
        mse.append((xf - model.decode(z).flatten(1)).square().sum(1))
        mse_map.append((xf - model.decode(post.mean).flatten(1)).square().sum(1))
        if exact:
            mse_exact.append(mse_map[-1] + post.var @ model.dictionary.square().sum(0))
        kl.append(post.kl.sum(1))
        kl_diag = kl_diag + post.kl.sum(0)
        zs.append(z)
        rates.append(post.mean)
    model.train()
    mse, mse_map, kl = torch.cat(mse), torch.cat(mse_map), torch.cat(kl)
    kl_diag = (kl_diag / len(x)).cpu().numpy()
    z = torch.cat(zs).cpu().numpy()
    za = np.abs(z)
    out = {
        "nelbo": float((mse + kl).mean()),
        "nelbo_exact": float((torch.cat(mse_exact) + kl).mean()) if exact else float("nan"),
        "mse": float(mse.mean()),
        "mse_map": float(mse_map.mean()),
        "kl": float(kl.mean()),
        "active_fraction": float((kl_diag > 0.01).mean()),
        "lifetime_sparsity": float(lifetime_sparsity(za).mean()),
        "population_sparsity": float(population_sparsity(za).mean()),
        "portion_zeros": float((z == 0).mean()),
        "kl_per_latent": kl_diag.tolist(),
    }
    if poisson:
        lam = torch.cat(rates)
        out["lifetime_sparsity_rates"] = float(lifetime_sparsity(lam.cpu().numpy()).mean())  # of λ, not counts
        out["mean_rate"] = float(lam.mean())  # expected counts per window, averaged over units and inputs
        out["max_rate"] = float(lam.max())
    return out


def fingerprint(a: np.ndarray) -> str:
    """The first 16 hex digits of the SHA-256 of an array's bytes: a data set's identity in a checkpoint."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def extend_config(cfg: TrainConfig, done: int, epochs: int) -> TrainConfig:
    """The training config of a run of ``done`` epochs extended to ``epochs`` in total.

    The learning rate follows the cosine schedule of an ``epochs``-long run from epoch ``done`` on (a warm
    restart when the run had finished); the temperature and β annealing end at the same step as before
    (``anneal_portion`` is rescaled), so an annealed run stays annealed.
    """
    if epochs <= done:
        raise ArgumentError(f"--epochs {epochs} must exceed the {done} epochs the run has done")
    return dataclasses.replace(cfg, epochs=epochs, anneal_portion=cfg.anneal_portion * cfg.epochs / epochs)


def _restore(resume: dict | None, model, opt, g_train, train_cfg: TrainConfig, device) -> tuple[list, int]:
    """Carry a run on from ``resume`` (see :func:`fit`): (history, first epoch to train)."""
    if resume is None:
        return [], 0
    model.load_state_dict(resume["state_dict"])
    history = list(resume.get("history", []))
    state = resume.get("train_state")
    if state is not None:  # an interrupted run: the same trajectory
        opt.load_state_dict(state["optimizer"])
        g_train.set_state(state["rng"].cpu() if device.type == "cpu" else state["rng"])
        start_epoch = int(state["epoch"])
    else:  # a finished run, extended
        start_epoch = int(resume["epoch"])
        g_train.manual_seed(child_seeds(train_cfg.seed + start_epoch, 4)[3])
    if start_epoch >= train_cfg.epochs:
        raise ArgumentError(f"the run has {start_epoch} epochs already; extend it with more (epochs > {start_epoch})")
    return history, start_epoch


def _train_epoch(model, opt, xtr, g_train, epoch: int, n_batches: int, total: int, train_cfg: TrainConfig):
    """One epoch of optimiser steps: ((loss, recon, kl) summed over its batches, float64 on the device; the
    schedule's (temperature, β, learning-rate factor) at its last step)."""
    model.train()
    perm = torch.randperm(len(xtr), generator=g_train, device=xtr.device)
    # (loss, recon, kl) summed over the epoch's batches on the device: no host sync per step, so a GPU
    # can queue steps ahead (float64, added in batch order: the same sums as Python floats)
    running = torch.zeros(3, dtype=torch.float64, device=xtr.device)
    for b in range(n_batches):
        step = epoch * n_batches + b
        temp, beta, lr_f, _ = schedule(step, total, train_cfg)
        if model.config.family not in ANNEALED:
            temp = 1.0  # the reference keeps Gaussian/Laplace noise at full scale
        for grp in opt.param_groups:
            grp["lr"] = train_cfg.lr * lr_f
        hard = train_cfg.straight_through and step >= train_cfg.anneal_portion * total
        xb = xtr[perm[b * train_cfg.batch_size:(b + 1) * train_cfg.batch_size]]
        terms = model.loss(xb, beta, temp, train_cfg.method, g_train, hard=hard)
        opt.zero_grad(set_to_none=True)
        terms.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        opt.step()
        running += torch.stack([terms.loss.detach(), terms.recon.detach(), terms.kl.detach()]).double()
    return running, (temp, beta, lr_f)


def _validate_epoch(model, xtr, xva, s_val: int, last: bool) -> tuple[dict, float]:
    """Validation metrics after an epoch (:func:`evaluate`) and the largest posterior rate on training inputs (a
    Poisson model; else 0); after the ``last`` epoch also the per-latent KL on training inputs (atom ordering,
    unbiased by the few validation photographs)."""
    max_rate = 0.0
    with torch.no_grad():
        if model.config.family == "poisson":
            max_rate = float(model.posterior(xtr[:5000]).mean.max())
    metrics = evaluate(model, xva, torch.Generator(device=xva.device).manual_seed(s_val))
    if last:
        with torch.no_grad():
            kd = sum(model.posterior(xtr[i:i + 5000]).kl.sum(0) for i in range(0, min(len(xtr), 20000), 5000))
        metrics["kl_per_latent_train"] = (kd / min(len(xtr), 20000)).cpu().tolist()
        model.train()
    return metrics, max_rate


def _save_epoch(path: Path, payload_base: dict, model, opt, g_train, metrics: dict, history: list, epoch: int,
                train_cfg: TrainConfig) -> None:
    """The checkpoint after ``epoch`` epochs; an unfinished run keeps its resume state (optimiser, RNG, epoch)."""
    payload = {**payload_base, "state_dict": model.state_dict(), "metrics": metrics,
               "history": history, "epoch": epoch, "provenance": provenance(train_cfg.seed)}
    if epoch != train_cfg.epochs:
        payload["train_state"] = {"optimizer": opt.state_dict(), "rng": g_train.get_state(), "epoch": epoch}
    ckpt_mod.save_checkpoint(path, payload)


def fit(
    model_cfg: VAEConfig,
    train_cfg: TrainConfig,
    data: PatchSet,
    out: str | Path | None = None,
    device: str | torch.device = "cpu",
    resume: dict | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a VAE; write a checkpoint to ``out`` after every epoch.

    Parameters
    ----------
    model_cfg, train_cfg : configs (validated here)
    data : PatchSet
        Train/validation inputs (n, P, P).
    out : path, optional
        Checkpoint path (written atomically each epoch).
    device : torch device
    resume : dict, optional
        A checkpoint dict holding resume state (from an unfinished run), or a finished checkpoint to
        extend to ``train_cfg.epochs`` (see :func:`extend_config`): its weights and history carry on, the
        optimizer's moment estimates restart (a finished file does not keep them) and the batch order
        continues from a stream seeded by the seed and the epoch reached.
    progress : bool
        Show a tqdm progress bar.
    stop_after : int, optional
        Stop after this many epochs in total (the schedules still span ``epochs``);
        the checkpoint keeps its resume state.
    """
    model_cfg.validate()
    train_cfg.validate()
    if train_cfg.method == "exact" and model_cfg.decoder != "lin":
        raise ArgumentError("method 'exact' needs a linear decoder (decoder='lin')")
    if data.train.shape[-1] != model_cfg.patch_size:
        raise ArgumentError(f"data patches are {data.train.shape[-1]} px but the model expects {model_cfg.patch_size}")
    device = torch.device(device)
    s_init, s_train, s_val = child_seeds(train_cfg.seed, 3)
    model = VAE(model_cfg, torch.Generator().manual_seed(s_init)).to(device)
    opt = torch.optim.Adamax(model.parameters(), lr=train_cfg.lr)
    g_train = torch.Generator(device=device).manual_seed(s_train)
    xtr = torch.as_tensor(data.train, device=device).unsqueeze(1)
    xva = torch.as_tensor(data.val, device=device).unsqueeze(1)
    n_batches = len(xtr) // train_cfg.batch_size
    if n_batches == 0:
        raise ArgumentError(f"batch size {train_cfg.batch_size} is larger than the training set ({len(xtr)})")
    total = n_batches * train_cfg.epochs
    history, start_epoch = _restore(resume, model, opt, g_train, train_cfg, device)
    payload_base = {
        "family": model_cfg.family,
        "model_config": dataclasses.asdict(model_cfg),
        "train_config": dataclasses.asdict(train_cfg),
        "preprocessing": data.preprocessing.to_dict(),
        "data": {"source": data.source, "n_train": len(xtr), "n_val": len(xva),
                 "train_sha256_16": fingerprint(data.train), "val_sha256_16": fingerprint(data.val)},
    }
    last_epoch = train_cfg.epochs if stop_after is None else min(train_cfg.epochs, stop_after)
    bar = tqdm(range(start_epoch, last_epoch), disable=not progress, desc="train", unit="epoch",
               initial=start_epoch, total=train_cfg.epochs)
    metrics: dict = history[-1]["val"] if history else {}
    path = Path(out) if out is not None else None
    for epoch in bar:
        t0 = time.perf_counter()
        running, (temp, beta, lr_f) = _train_epoch(model, opt, xtr, g_train, epoch, n_batches, total, train_cfg)
        metrics, max_rate = _validate_epoch(model, xtr, xva, s_val, epoch + 1 == train_cfg.epochs)
        rec = {
            "epoch": epoch + 1,
            **dict(zip(("train_loss", "train_recon", "train_kl"), (running / n_batches).tolist())),
            "temperature": temp,
            "beta": beta,
            "lr": train_cfg.lr * lr_f,
            "seconds": time.perf_counter() - t0,
            "val": {k: v for k, v in metrics.items() if not k.startswith("kl_per_latent")},
        }
        if model_cfg.family == "poisson":
            rec["max_rate"] = max_rate
            rec["n_exp_max_rate"] = n_exp_for_rate(max_rate, train_cfg.p_trunc)
        history.append(rec)
        bar.set_postfix(nelbo=f"{metrics['nelbo']:.1f}", mse=f"{metrics['mse']:.1f}", kl=f"{metrics['kl']:.1f}",
                        active=f"{metrics['active_fraction']:.2f}")
        log.info("epoch %d: %s", epoch + 1, rec["val"])
        if path is not None:
            _save_epoch(path, payload_base, model, opt, g_train, metrics, history, epoch + 1, train_cfg)
    bar.close()
    return TrainResult(model.eval(), history, metrics, path)


def load_model_for_init(path, n_latents: int):
    """The P-VAE whose generative model starts an iP-VAE (``--init-from``): Poisson, linear decoder, same K."""
    from .trained import load_model

    m = load_model(path)
    if m.family != "poisson" or m.config.decoder != "lin":
        raise ArgumentError(f"--init-from needs a P-VAE with a linear decoder; {path} holds a {m.family} VAE "
                            f"with a {m.config.decoder} decoder")
    if m.config.n_latents != n_latents:
        raise ArgumentError(f"--init-from {path} has K = {m.config.n_latents} latents; pass --latents {m.config.n_latents}")
    return m

