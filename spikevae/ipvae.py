"""Iterative Poisson VAE (iP-VAE; Vafaii, Galor & Yates, arXiv 2410.19315): inference as Poisson spiking dynamics.

Each latent k is a neuron with membrane potential ``u_k`` (its log-rate, ``λ_k = e^{u_k}`` expected spikes
per iteration). Inference starts at the learned prior log-rates ``u0`` and iterates (reference
``PoissonLayer``; see ``research/anchor_ipvae.md`` §1.2)::

    z  ~ relaxed-Pois(e^u)                          # spikes of this iteration (draw a)
    Δu = η [Φᵀ Σ⁻¹ (x − Φ z) − b]                   # feedforward drive, inhibition by the spikes, leak b
    Δu ← SCU(max(Δu, −8), c_du);  u ← SCU(max(u + Δu, −8), c_u)
    z′ ~ relaxed-Pois(e^u)                          # the read-out (draw b), x̂ = Φ z′

with ``SCU(x, c) = c − softplus(c − x)`` and ``Σ = diag σ²``. The prior of iteration t is the posterior of
iteration t − 1 (``u0`` at the first), and the loss of an iteration is the Gaussian NLL of x under ``Φz′``
plus β times the *exact* Poisson KL in its prior-rate form, ``e^{u_prev} f(e^{u − u_prev})`` with
``f(y) = 1 − y + y log y`` (the reference multiplies by the posterior rate instead, §6 of the digest). The
training loss is the mean over ``T`` unrolled iterations, back-propagated through all of them.

Learned: Φ (M, K), per-pixel ``log σ`` (bounded by ``3.45·tanh(p/3.45)``), ``u0``, ``b = e^{log_bias}`` and
the global step ``η = e^{log_lr}``.

Status (#14, in progress): the model, its update, KL, read-outs and checkpoints are tested; :func:`fit`
implements the reference's schedules but is not yet validated. Two things measured so far: from the
reference's initial Φ (s.d. 1e-4) a few epochs barely move the loss (89.2 → 88.7 nats per 8×8 patch after
4 epochs of 2,000 patches), and from a larger initial Φ the rates reach the thousands per iteration at
temperatures near 1, beyond what :func:`~spikevae.poisson.relaxed_poisson` can sample without bias
(4,096 arrivals cover rates up to about 227 at t = 0.85); the reference truncates at the 0.999 quantile of
the batch's maximum rate instead, which is biased there. Not yet wired into ``train`` or ``simulate``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .errors import ArgumentError
from .poisson import poisson_kl, relaxed_poisson

__all__ = ["IPVAEConfig", "IPVAE", "IPVAETrainConfig", "IterationTrace", "scu", "schedule", "fit", "save", "load"]

U_FLOOR = -8.0  # hard floor of u and Δu (the reference's clamp_(min=-8))
SIGMA_BOUND = 3.45  # log σ = 3.45·tanh(p/3.45)


def scu(x: torch.Tensor, c: float) -> torch.Tensor:
    """Soft upper clamp ``c − softplus(c − x)``."""
    return c - nn.functional.softplus(c - x)


@dataclass(frozen=True)
class IPVAEConfig:
    """Architecture of an iP-VAE (the reference's vH16 linear model by default)."""

    n_latents: int = 512
    patch_size: int = 16
    clamp_u: float = 10.0  # final soft ceilings c_u and c_du (they rise from CLAMP_START with the KL schedule)
    clamp_du: float = 10.0
    init_scale: float = 1e-4  # s.d. of Φ at initialisation

    def validate(self) -> IPVAEConfig:
        if self.n_latents < 1 or self.patch_size < 1:
            raise ArgumentError("n_latents and patch_size must be >= 1")
        if not (self.clamp_u > CLAMP_START and self.clamp_du > CLAMP_START):
            raise ArgumentError(f"clamp_u and clamp_du must exceed {CLAMP_START}")
        if not (self.init_scale > 0 and math.isfinite(self.init_scale)):
            raise ArgumentError("init_scale must be > 0")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


CLAMP_START = 2.0  # c_init of the reference's Poisson layer


@dataclass
class IterationTrace:
    """Per-iteration quantities of one inference run (lists over t = 1..T)."""

    u: list  # (B, K) log-rates after each update
    spikes: list  # (B, K) read-out counts z′ (draw b)
    recon: list  # (B, M) Φ z′
    nll: list  # (B,) Gaussian NLL of x under Φ z′ (nats)
    kl: list  # (B,) exact Poisson KL to the previous iteration's rates (nats)


class IPVAE(nn.Module):
    """The iP-VAE's generative model and its iterative Poisson inference."""

    def __init__(self, config: IPVAEConfig = IPVAEConfig(), seed: int = 0):
        super().__init__()
        self.config = config.validate()
        g = torch.Generator().manual_seed(seed)
        M, K = config.patch_size**2, config.n_latents
        self.phi = nn.Parameter(torch.randn(M, K, generator=g) * config.init_scale)
        self.dec_log_sigma = nn.Parameter(torch.zeros(1, M))
        self.u0 = nn.Parameter(torch.rand(1, K, generator=g) * 2.0 - 6.0)  # U(−6, −4): rates 0.0025–0.018
        self.log_bias = nn.Parameter(torch.full((1, K), -3.0))
        self.log_lr = nn.Parameter(torch.zeros(1))
        self.clamp_progress = 1.0  # 0 → 1 with the KL schedule during training: ceilings from 2 to their final value

    # ------------------------------------------------------------------ pieces
    @property
    def log_sigma(self) -> torch.Tensor:
        return SIGMA_BOUND * torch.tanh(self.dec_log_sigma / SIGMA_BOUND)

    def ceilings(self) -> tuple[float, float]:
        """(c_u, c_du) at the current clamp progress."""
        p = float(self.clamp_progress)
        c = self.config
        return CLAMP_START + p * (c.clamp_u - CLAMP_START), CLAMP_START + p * (c.clamp_du - CLAMP_START)

    def drive(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``Φᵀ Σ⁻¹ (x − Φ z) − b`` (B, K): the gradient step's direction before the step size η."""
        inv_var = torch.exp(-2.0 * self.log_sigma)
        return ((x - z @ self.phi.T) * inv_var) @ self.phi - torch.exp(self.log_bias)

    def step(self, x: torch.Tensor, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """One update of the membrane potentials given this iteration's spikes ``z``."""
        c_u, c_du = self.ceilings()
        du = torch.exp(self.log_lr) * self.drive(x, z)
        du = scu(torch.clamp(du, min=U_FLOOR), c_du)
        return scu(torch.clamp(u + du, min=U_FLOOR), c_u)

    def nll(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL of ``x`` under mean ``recon`` and the learned σ, summed over pixels (B,)."""
        ls = self.log_sigma
        return (0.5 * (x - recon) ** 2 * torch.exp(-2.0 * ls) + ls + 0.5 * math.log(2 * math.pi)).sum(-1)

    # ------------------------------------------------------------------ inference
    def infer(self, x: torch.Tensor, n_iter: int, temperature: float = 0.0,
              generator: torch.Generator | None = None, keep: bool = True) -> IterationTrace:
        """Run ``n_iter`` iterations on inputs ``x`` (B, M); ``temperature`` 0 gives hard Poisson spikes."""
        if n_iter < 1:
            raise ArgumentError(f"the number of iterations must be >= 1, got {n_iter}")
        x = x.reshape(len(x), -1)
        if x.shape[1] != self.phi.shape[0]:
            raise ArgumentError(f"inputs have {x.shape[1]} pixels, the model {self.phi.shape[0]}")
        u = self.u0.expand(len(x), -1)
        tr = IterationTrace([], [], [], [], [])
        for _ in range(n_iter):
            z = relaxed_poisson(torch.exp(u), temperature, generator)  # draw a: drives the update
            u_new = self.step(x, u, z)
            z_out = relaxed_poisson(torch.exp(u_new), temperature, generator)  # draw b: the read-out
            recon = z_out @ self.phi.T
            tr.nll.append(self.nll(x, recon))
            tr.kl.append(poisson_kl(u, u_new - u).sum(-1))  # KL(Pois(e^u_new) ‖ Pois(e^u)): prior rate e^u
            if keep:
                tr.u.append(u_new)
                tr.spikes.append(z_out)
                tr.recon.append(recon)
            u = u_new
        if not keep:
            tr.u, tr.spikes, tr.recon = [u], [z_out], [recon]
        return tr

    def loss(self, x: torch.Tensor, n_iter: int, beta: float, temperature: float,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Sequence loss: mean over iterations of the batch-mean ``NLL + β·KL``; and its parts."""
        tr = self.infer(x, n_iter, temperature, generator, keep=False)
        nll = torch.stack(tr.nll).mean(-1)  # (T,)
        kl = torch.stack(tr.kl).mean(-1)
        per_iter = nll + beta * kl
        return per_iter.mean(), {"nll": nll.detach(), "kl": kl.detach(), "loss_per_iteration": per_iter.detach()}


# ------------------------------------------------------------------ training (the reference's recipe, §2 of the digest)
@dataclass(frozen=True)
class IPVAETrainConfig:
    """Schedules of the reference's vH16 run: Adamax lr 0.005 (warm-up 0.5 %, cosine to 1e-5), weight decay 3e-4,
    batch 200, T = 16, temperature 1 → 0.01 over the first half, β from 1e-4 to its final value over 10 % after
    0.1 %, gradient norm clip 300."""

    epochs: int = 300
    batch_size: int = 200
    lr: float = 0.005
    lr_min: float = 1e-5
    weight_decay: float = 3e-4
    n_iter: int = 16
    beta: float = 24.0
    temp_start: float = 1.0
    temp_stop: float = 0.01
    grad_clip: float = 300.0
    seed: int = 0

    def validate(self) -> IPVAETrainConfig:
        if self.n_iter < 1:
            raise ArgumentError(f"the number of unrolled iterations T must be >= 1, got {self.n_iter}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ArgumentError("epochs and batch_size must be >= 1")
        if not (self.beta >= 0 and self.lr > 0 and self.temp_start >= self.temp_stop > 0):
            raise ArgumentError("need beta >= 0, lr > 0 and temp_start >= temp_stop > 0")
        return self


def schedule(step: int, total: int, cfg: IPVAETrainConfig) -> tuple[float, float, float, float]:
    """(learning-rate factor, temperature, β, clamp progress) at optimizer step ``step`` of ``total``."""
    f = step / max(total, 1)
    warm = 0.005
    lr_f = f / warm if f < warm else (cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 *
                                      (1 + math.cos(math.pi * (f - warm) / (1 - warm)))) / cfg.lr
    temp = cfg.temp_start + (cfg.temp_stop - cfg.temp_start) * min(f / 0.5, 1.0)
    ramp = min(max((f - 0.001) / 0.1, 0.0), 1.0)
    beta = 1e-4 + (cfg.beta - 1e-4) * ramp
    return lr_f, temp, beta, ramp


def fit(model: IPVAE, x_train: torch.Tensor, cfg: IPVAETrainConfig = IPVAETrainConfig(),
        progress: bool = False) -> list[dict]:
    """Train ``model`` on patches ``x_train`` (N, M) with the reference's recipe; returns per-epoch history."""
    from tqdm.auto import tqdm

    cfg.validate()
    x_train = x_train.reshape(len(x_train), -1).to(torch.float32)
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adamax(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                             weight_decay=cfg.weight_decay)
    n_batches = max(len(x_train) // cfg.batch_size, 1)
    total = n_batches * cfg.epochs
    history, step = [], 0
    for epoch in tqdm(range(cfg.epochs), disable=not progress, desc="ipvae", unit="epoch"):
        order = torch.randperm(len(x_train), generator=g)
        sums = torch.zeros(3)
        for b in range(n_batches):
            lr_f, temp, beta, ramp = schedule(step, total, cfg)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_f
            model.clamp_progress = ramp
            xb = x_train[order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
            loss, parts = model.loss(xb, cfg.n_iter, beta, temp, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip * (3 if step < 0.005 * total else 1))
            opt.step()
            sums += torch.stack([loss.detach(), parts["nll"].mean(), parts["kl"].mean()])
            step += 1
        loss_m, nll_m, kl_m = (sums / n_batches).tolist()
        history.append({"epoch": epoch + 1, "loss": loss_m, "nll": nll_m, "kl": kl_m, "temperature": temp,
                        "beta": beta})
    model.clamp_progress = 1.0
    return history


# ------------------------------------------------------------------ checkpoints (their own family)
FORMAT = "spikevae-ipvae"


def save(model: IPVAE, path, history: list | None = None, train_config: IPVAETrainConfig | None = None) -> None:
    """Write an iP-VAE checkpoint (tensors and plain data only; atomically)."""
    from .io.files import atomic_write

    ck = {"format": FORMAT, "version": 1, "config": model.config.to_dict(),
          "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
          "train_config": asdict(train_config) if train_config else {}, "history": history or []}
    atomic_write(path, lambda tmp: torch.save(ck, tmp))


def load(path) -> IPVAE:
    """Read an iP-VAE checkpoint without running code (``weights_only``); every field is checked."""
    from .errors import CheckpointError

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one message
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an iP-VAE checkpoint (format {ck.get('format') if isinstance(ck, dict) else None!r})")
    try:
        cfg = IPVAEConfig(**ck["config"])
    except (TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: bad iP-VAE config ({exc})") from None
    model = IPVAE(cfg)
    sd = ck.get("state_dict")
    expect = model.state_dict()
    if not isinstance(sd, dict) or set(sd) != set(expect):
        raise CheckpointError(f"{path}: parameters {sorted(sd) if isinstance(sd, dict) else sd!r} do not match "
                              f"{sorted(expect)}")
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor) or v.shape != expect[k].shape or not torch.isfinite(v).all():
            raise CheckpointError(f"{path}: parameter {k} has the wrong shape or non-finite values")
    model.load_state_dict(sd)
    return model
