"""Iterative Poisson VAE (iP-VAE; Vafaii, Galor & Yates, arXiv 2410.19315): inference as Poisson spiking dynamics.

Each latent k is a neuron with membrane potential ``u_k`` (its log-rate, ``λ_k = e^{u_k}`` expected spikes
per iteration). Inference starts at the learned prior log-rates ``u0`` and iterates (reference
``PoissonLayer``; Vafaii, Galor & Yates, arXiv 2410.19315)::

    Δu = η [Φᵀ Σ⁻¹ (x − Φ z) − b]                   # feedforward drive, inhibition by the spikes, leak b
    Δu ← SCU(max(Δu, −8), c_du);  u ← SCU(max(u + Δu, −8), c_u)
    z  ~ relaxed-Pois(e^u)                          # this iteration's spikes: the read-out x̂ = Φ z, and the
                                                    # drive of the next update (z at the start: Pois(e^{u0}))

with ``SCU(x, c) = c − softplus(c − x)`` and ``Σ = diag σ²``. The prior of iteration t is the posterior of
iteration t − 1 (``u0`` at the first), and the loss of an iteration is the Gaussian NLL of x under ``Φz``
plus β times the *exact* Poisson KL in its prior-rate form, ``e^{u_prev} f(e^{u − u_prev})`` with
``f(y) = 1 − y + y log y`` (the reference multiplies by the posterior rate instead, §6 of the digest). The
training loss is the mean over ``T`` unrolled iterations, back-propagated through all of them.

One draw per iteration: the reference draws the read-out of iteration t and the spikes that drive update
t + 1 independently from the same rates ``e^{u_t}``; here they are one draw, as in a circuit whose spikes
are both what it says and what it hears (:mod:`spikevae.brian.ipvae`). The potentials u_t and each
iteration's read-out have the reference's law (the same transition from u_{t−1} to u_t); only the read-out
of t and the drive of t + 1 are now the same spikes. The sampling costs half.

Learned: Φ (M, K), per-pixel ``log σ`` (bounded by ``3.45·tanh(p/3.45)``), ``u0``, ``b = e^{log_bias}`` and
the global step ``η = e^{log_lr}``.

Training (:func:`fit`, ``python -m spikevae.train --model ipvae``) follows the reference's schedules
(:class:`IPVAETrainConfig`). It starts from larger atoms (s.d. 0.01 against 1e-4) and higher prior rates
(``u0 ~ U(−2, 0)`` against ``U(−6, −4)``): units must spike to receive a gradient, and from the reference's
start a 16×16, K = 512 model at β = 24 is nearly silent for hundreds of steps (training NLL 350 after 500
steps, against 266 after 250 from ours; docs/ipvae.md; the reference trains 150,000 steps on a GPU).
:func:`evaluate` runs inference to any T with spike and rate read-outs; :mod:`spikevae.brian.ipvae` runs
the same inference as a Brian2 spiking circuit.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ArgumentError
from .config import Schedule
from .poisson import poisson_kl, relaxed_poisson, softclamp_upper

__all__ = ["IPVAEConfig", "IPVAE", "IPVAETrainConfig", "IterationTrace", "scu", "schedule", "fit", "save", "load",
           "evaluate", "r_squared", "SAVE_T", "loss_reference"]

U_FLOOR = -8.0  # hard floor of u and Δu (the reference's clamp_(min=-8))
SIGMA_BOUND = 3.45  # log σ = 3.45·tanh(p/3.45)


scu = softclamp_upper  # the reference's name for the soft upper clamp c − softplus(c − x)


@dataclass(frozen=True)
class IPVAEConfig:
    """Architecture of an iP-VAE (the reference's vH16 linear model by default)."""

    n_latents: int = 512
    patch_size: int = 16
    clamp_u: float = 10.0  # final soft ceilings c_u and c_du (they rise from CLAMP_START with the KL schedule)
    clamp_du: float = 10.0
    init_scale: float = 0.01  # s.d. of Φ at initialisation (the reference: 1e-4)
    u0_low: float = -2.0  # prior log-rates start U(u0_low, u0_high): rates 0.14-1 per iteration
    u0_high: float = 0.0  # (the reference: U(-6, -4), rates 0.0025-0.018)

    def validate(self) -> IPVAEConfig:
        if not 1 <= self.n_latents <= 100_000:
            raise ArgumentError(f"n_latents must be between 1 and 100,000, got {self.n_latents}")
        if not 2 <= self.patch_size <= 256:
            raise ArgumentError(f"patch_size must be between 2 and 256, got {self.patch_size}")
        if not (self.clamp_u > CLAMP_START and self.clamp_du > CLAMP_START):
            raise ArgumentError(f"clamp_u and clamp_du must exceed {CLAMP_START}")
        if not (self.init_scale > 0 and math.isfinite(self.init_scale)):
            raise ArgumentError("init_scale must be > 0")
        if not (U_FLOOR <= self.u0_low <= self.u0_high < CLAMP_START):
            raise ArgumentError(f"need {U_FLOOR} <= u0_low <= u0_high < {CLAMP_START}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


CLAMP_START = 2.0  # c_init of the reference's Poisson layer


@dataclass
class IterationTrace:
    """Per-iteration quantities of one inference run (lists over t = 1..T)."""

    u: list  # (B, K) log-rates after each update
    spikes: list  # (B, K) the iteration's spikes z ~ Pois(e^u): read-out and next drive
    recon: list  # (B, M) Φ z
    nll: list  # (B,) Gaussian NLL of x under Φ z (nats)
    kl: list  # (B,) exact Poisson KL to the previous iteration's rates (nats)


def _above_floor(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``grad`` where ``x ≥ U_FLOOR`` and 0 below (the gradient of ``clamp(x, min=U_FLOOR)``), in place. The mask is
    ``clamp(sign(x − U_FLOOR) + 1, max=1)`` (``x − U_FLOOR`` is exact near the floor, Sterbenz), cheaper on a CPU
    than a comparison and a masked fill; skipped on a CPU when nothing lies below the floor."""
    if x.device.type == "cpu" and float(x.min()) >= U_FLOOR:
        return grad
    return grad.mul_((x - U_FLOOR).sign_().add_(1.0).clamp_(max=1.0))


class _GaussianNLL(torch.autograd.Function):
    """``Σ_m ½ (x − x̂)² e^{−2 log σ} + log σ + ½ log 2π`` per row, with the backward pass written out."""

    @staticmethod
    def forward(ctx, x, recon, log_sigma):  # noqa: D102
        r = x - recon
        ri = r * torch.exp(-2.0 * log_sigma)  # (x − x̂)/σ²
        q = r.mul_(ri)  # (x − x̂)²/σ²
        ctx.save_for_backward(ri, q)
        return q.sum(-1).mul_(0.5).add_(log_sigma.sum() + 0.5 * math.log(2 * math.pi) * x.shape[-1])

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        ri, q = ctx.saved_tensors
        g = g.unsqueeze(-1)
        g_ls = None
        if ctx.needs_input_grad[2]:  # ∂/∂log σ = 1 − (x − x̂)²/σ²
            g_ls = (q * g).sum(0, keepdim=True).neg_().add_(g.sum())
        g_x = ri * g if ctx.needs_input_grad[0] or ctx.needs_input_grad[1] else None
        return g_x if ctx.needs_input_grad[0] else None, -g_x if ctx.needs_input_grad[1] else None, g_ls


class _Update(torch.autograd.Function):
    """The update of the potentials after the drive's matrix product ``m = (x − Φz) Σ⁻¹ Φ``, its rates and its KL
    (None when ``rate_u`` is None),
    with the backward pass written out: ``u_t = SCU(max(u + SCU(max(η (m − b), −8), c_du), −8), c_u)``, ``e^{u_t}``
    and ``Σ_k e^{u} + e^{u_t} (u_t − u − 1)``, the exact Poisson KL to the rates ``e^{u}`` (the same value as
    :func:`~spikevae.models.poisson.poisson_kl` without its two exponentials). The forward pass is the same
    arithmetic as the update written with torch operations, so the dynamics are the same to the last bit. The
    backward pass needs no transcendental for the ceiling of u: ``SCU'(x, c) = σ(c − x) = 1 − e^{SCU(x, c) − c}``,
    and ``e^{u_t}`` is the rate already computed."""

    @staticmethod
    def forward(ctx, m, u, rate_u, bias, eta, c_u, c_du):  # noqa: D102
        # scu(x, c) = c − softplus(c − x), each c − y computed in place as (−y) + c (the same IEEE result)
        du = (m - bias).mul_(eta)
        du2 = torch.nn.functional.softplus(torch.clamp(du, min=U_FLOOR).neg_().add_(c_du)).neg_().add_(c_du)
        v = u + du2
        u_new = torch.nn.functional.softplus(torch.clamp(v, min=U_FLOOR).neg_().add_(c_u)).neg_().add_(c_u)
        rate = torch.exp(u_new)
        d = u_new - u
        kl = None if rate_u is None else (rate * d).sub_(rate).add_(rate_u).sum(-1)  # Σ e^u + e^{u_t}(u_t − u − 1)
        ctx.save_for_backward(du, du2, v, rate, d, eta)
        ctx.ceilings = (c_u, c_du)
        ctx.u_shape, ctx.bias_shape = u.shape, bias.shape
        ctx.rate_u_shape = None if rate_u is None else rate_u.shape
        return u_new, rate, kl

    @staticmethod
    def backward(ctx, g_u_new, g_rate, g_kl):  # noqa: D102
        du, du2, v, rate, d, eta = ctx.saved_tensors
        c_u, c_du = ctx.ceilings
        # dL/du_t: directly, through the rate (e^{u_t}) and through the KL (∂KL/∂u_t = e^{u_t} (u_t − u))
        gk = g_kl.unsqueeze(-1) if g_kl is not None else None
        if g_rate is None:
            g_rate = torch.zeros_like(rate)
        gv = (g_rate * rate if gk is None else torch.addcmul(g_rate, gk, d).mul_(rate))
        if g_u_new is not None:
            gv = gv.add_(g_u_new)
        # through the ceiling of u: SCU'(v) = 1 − e^{u_t − c_u}; and its floor
        gv = _above_floor(gv.addcmul_(gv, rate, value=-math.exp(-c_u)), v)
        g_u = gv if gk is None else torch.addcmul(gv, gk, rate, value=-1.0)  # ∂KL/∂u = −e^{u_t}
        # through the ceiling of Δu, 1 − e^{SCU(Δu) − c_du}, and its floor
        e = (du2 - c_du).exp_()
        gdu = _above_floor(torch.addcmul(gv, gv, e, value=-1.0), du)
        g_eta = torch.dot(gdu.reshape(-1), du.reshape(-1)).div(eta).reshape(eta.shape)  # ∂Δu/∂η = m − b = Δu/η
        g_m = gdu.mul_(eta)
        g_bias = g_m.sum_to_size(ctx.bias_shape).neg()
        g_rate_u = None
        if ctx.needs_input_grad[2] and gk is not None:
            g_rate_u = gk.expand(rate.shape).sum_to_size(ctx.rate_u_shape)
        return g_m, g_u.sum_to_size(ctx.u_shape), g_rate_u, g_bias, g_eta, None, None


class IPVAE(nn.Module):
    """The iP-VAE's generative model and its iterative Poisson inference."""

    def __init__(self, config: IPVAEConfig = IPVAEConfig(), seed: int = 0):
        super().__init__()
        self.config = config.validate()
        g = torch.Generator().manual_seed(seed)
        M, K = config.patch_size**2, config.n_latents
        self.phi = nn.Parameter(torch.randn(M, K, generator=g) * config.init_scale)
        self.dec_log_sigma = nn.Parameter(torch.zeros(1, M))
        self.u0 = nn.Parameter(torch.rand(1, K, generator=g) * (config.u0_high - config.u0_low) + config.u0_low)
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

    @torch.no_grad()
    def circuit_parameters(self):
        """The parameters the Brian2 circuit runs on, as float64 numpy
        (:class:`spikevae.brian.ipvae.CircuitParameters`: Φ, 1/σ², b, η, u0, c_u, c_du, the floor of u)."""
        from ..brian.ipvae import CircuitParameters

        c_u, c_du = self.ceilings()
        return CircuitParameters(self.phi.double().cpu().numpy(),
                                 torch.exp(-2.0 * self.log_sigma).double().cpu().numpy().ravel(),
                                 torch.exp(self.log_bias).double().cpu().numpy().ravel(), float(torch.exp(self.log_lr)),
                                 self.u0.double().cpu().numpy().ravel(), c_u, c_du, U_FLOOR)

    def drive(self, x: torch.Tensor, z: torch.Tensor, recon: torch.Tensor | None = None) -> torch.Tensor:
        """``Φᵀ Σ⁻¹ (x − Φ z) − b`` (B, K): the gradient step's direction before the step size η
        (``recon``: ``Φ z`` when already computed)."""
        recon = z @ self.phi.T if recon is None else recon
        return self._feedforward(x, recon, torch.exp(-2.0 * self.log_sigma)) - torch.exp(self.log_bias)

    def _feedforward(self, x, recon, inv_var):
        """``(x − Φz) Σ⁻¹ Φ`` (B, K) from the read-out ``recon = Φz``."""
        return ((x - recon) * inv_var) @ self.phi

    def _constants(self):
        """What every update of one run shares: ``Σ⁻¹`` (1, M), ``b`` (1, K), ``η`` (1,) and the ceilings."""
        return (torch.exp(-2.0 * self.log_sigma), torch.exp(self.log_bias), torch.exp(self.log_lr), *self.ceilings())

    def _update(self, x, u, rate_u, recon, constants):
        """``(u_t, e^{u_t}, KL)`` from ``u = u_{t−1}``, its rates (None: no KL) and the read-out
        ``recon = Φ z_{t−1}``: the fused :class:`_Update` after the drive's matrix product."""
        inv_var, bias, eta, c_u, c_du = constants
        return _Update.apply(self._feedforward(x, recon, inv_var), u, rate_u, bias, eta, c_u, c_du)

    def step(self, x: torch.Tensor, u: torch.Tensor, z: torch.Tensor, recon: torch.Tensor | None = None) -> torch.Tensor:
        """One update of the membrane potentials given this iteration's spikes ``z`` (and ``recon = Φ z``)."""
        recon = z @ self.phi.T if recon is None else recon
        return self._update(x, u, None, recon, self._constants())[0]

    def nll(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL of ``x`` under mean ``recon`` and the learned σ, summed over pixels (B,)."""
        return _GaussianNLL.apply(x, recon, self.log_sigma)

    # ------------------------------------------------------------------ inference
    def iterate(self, x: torch.Tensor, n_iter: int, sample, with_kl: bool = True):
        """The inference iteration, the one loop every caller runs: yields ``(t, u_prev, u_t, z_t, recon_t, kl_t)``
        for t = 0 (the prior period: ``u_prev`` and ``kl_0`` None, ``u_0 = u0``, spikes at the prior rates) then
        t = 1..n_iter, where ``u_t = step(x, u_{t−1}, z_{t−1})``, ``z_t = sample(e^{u_t})`` is both the read-out
        of t and the drive of t + 1, ``recon_t = z_t Φᵀ`` and ``kl_t`` (B,) is the exact Poisson KL of ``e^{u_t}``
        to the previous iteration's rates (None without ``with_kl``). ``x`` (B, M); ``sample(rate)`` draws the
        spikes (relaxed or exact Poisson)."""
        constants = self._constants()
        u = self.u0.expand(len(x), -1)
        rate = torch.exp(u)
        z = sample(rate)
        recon = z @ self.phi.T
        yield 0, None, u, z, recon, None
        for t in range(1, n_iter + 1):
            u_new, rate, kl = self._update(x, u, rate if with_kl else None, recon, constants)  # last period's spikes
            z = sample(rate)
            recon = z @ self.phi.T
            yield t, u, u_new, z, recon, kl
            u = u_new

    def infer(self, x: torch.Tensor, n_iter: int, temperature: float = 0.0,
              generator: torch.Generator | None = None, keep: bool = True) -> IterationTrace:
        """Run ``n_iter`` iterations on inputs ``x`` (B, M); ``temperature`` 0 gives hard Poisson spikes."""
        if n_iter < 1:
            raise ArgumentError(f"the number of iterations must be >= 1, got {n_iter}")
        x = x.reshape(len(x), -1)
        if x.shape[1] != self.phi.shape[0]:
            raise ArgumentError(f"inputs have {x.shape[1]} pixels, the model {self.phi.shape[0]}")
        tr = IterationTrace([], [], [], [], [])
        for t, _, u_new, z, recon, kl in self.iterate(x, n_iter,
                                                       lambda r: relaxed_poisson(r, temperature, generator)):
            if t == 0:
                continue
            tr.nll.append(self.nll(x, recon))
            tr.kl.append(kl)  # KL(Pois(e^u_new) ‖ Pois(e^u)): prior rate e^u
            if keep:
                tr.u.append(u_new)
                tr.spikes.append(z)
                tr.recon.append(recon)
        if not keep:
            tr.u, tr.spikes, tr.recon = [u_new], [z], [recon]
        return tr

    def loss(self, x: torch.Tensor, n_iter: int, beta: float, temperature: float,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Sequence loss: mean over iterations of the batch-mean ``NLL + β·KL``; and its parts."""
        tr = self.infer(x, n_iter, temperature, generator, keep=False)
        nll = torch.stack(tr.nll).mean(-1)  # (T,)
        kl = torch.stack(tr.kl).mean(-1)
        per_iter = nll + beta * kl
        return per_iter.mean(), {"nll": nll.detach(), "kl": kl.detach(), "loss_per_iteration": per_iter.detach()}


def loss_reference(model: IPVAE, x: torch.Tensor, n_iter: int, beta: float, temperature: float,
                   generator: torch.Generator | None = None, sample=relaxed_poisson) -> torch.Tensor:
    """:meth:`IPVAE.loss` with the update, the NLL and the KL written in torch operations and differentiated by
    autograd: the oracle of the fused passes (the same forward arithmetic, the same draws) and, with the
    per-bucket sampler as ``sample``, the training step of earlier releases in ``benchmarks/train_throughput.py``."""
    c_u, c_du = model.ceilings()
    x = x.reshape(len(x), -1)
    u = model.u0.expand(len(x), -1)
    z = sample(torch.exp(u), temperature, generator)
    recon, nll, kl = z @ model.phi.T, [], []
    for _ in range(n_iter):
        du = torch.exp(model.log_lr) * model.drive(x, z, recon)
        u_new = scu(torch.clamp(u + scu(torch.clamp(du, min=U_FLOOR), c_du), min=U_FLOOR), c_u)
        z = sample(torch.exp(u_new), temperature, generator)
        recon = z @ model.phi.T
        ls = model.log_sigma
        nll.append((0.5 * (x - recon) ** 2 * torch.exp(-2.0 * ls) + ls + 0.5 * math.log(2 * math.pi)).sum(-1))
        kl.append(poisson_kl(u, u_new - u).sum(-1))
        u = u_new
    return (torch.stack(nll).mean(-1) + beta * torch.stack(kl).mean(-1)).mean()


# ------------------------------------------------------------------ evaluation to any T
#: the iterations the reference reports (its Fig. 3 and df_convergence)
SAVE_T = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)


def r_squared(x: torch.Tensor, xhat: torch.Tensor) -> torch.Tensor:
    """Per-sample ``1 − Σ(x − x̂)² / Σ(x − x̄)²`` (x̄ the sample's pixel mean), the reference's R² (B,)."""
    return 1.0 - ((x - xhat) ** 2).sum(-1) / ((x - x.mean(-1, keepdim=True)) ** 2).sum(-1).clamp_min(1e-12)


@torch.no_grad()
def evaluate(model: IPVAE, x, t_max: int = 1000, save_t=SAVE_T, batch_size: int = 1000, seed: int = 0,
             device: str | torch.device = "cpu") -> list[dict]:
    """Run inference on ``x`` (n, M) to ``t_max`` iterations with hard Poisson spikes; one row per saved t.

    Each row holds, for the spike read-out ``z ~ Pois(e^{u_t})`` and the rate read-out ``e^{u_t}``, the metrics
    of that code alone: ``r2``/``mse``/``zeros``/``lifetime_sparsity``/``population_sparsity``/``distance`` of
    the spikes, ``r2_rates``/``mse_rates``/``distance_rates`` of the rates (whose zeros are 0, so their distance
    is at least 1), plus the reference's mixed ``distance_map`` (rate R² with the spikes' zeros), the spikes per
    patch in that iteration, the cumulative spikes of periods 0..t (all the spikes the circuit has emitted when
    the read-out of t is complete), ``‖u_t − u_{t−1}‖`` and the KL of ``Pois(e^{u_t})`` from the prior
    ``Pois(e^{u0})`` (nats per patch, the rate code's information cost). MSE is the squared error summed over
    the pixels of a patch.

    ``r2`` is the reference's R², the mean over patches of each patch's ``1 − ‖x − x̂‖² / ‖x − x̄‖²``, and
    ``r2_pooled`` the R² pooled over patches, ``1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²`` (:mod:`spikevae.analysis.metrics`);
    ``distance`` and ``distance_pooled`` are the reference's ``√((1 − R²)² + (1 − zeros)²)`` from each. The
    rate read-out's ``r2_rates`` is pooled.
    """
    from ..analysis.sparsity import lifetime_sparsity, population_sparsity

    if t_max < 1:
        raise ArgumentError(f"the number of iterations T must be >= 1, got {t_max}")
    saves = sorted({int(t) for t in save_t if 1 <= int(t) <= t_max} | {t_max})
    dev = torch.device(device)
    model = model.to(dev)
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(len(x), -1)
    if x.shape[1] != model.phi.shape[0]:
        raise ArgumentError(f"inputs have {x.shape[1]} pixels, the model {model.phi.shape[0]}")
    g = torch.Generator(device=dev).manual_seed(seed)
    acc = {t: {"sq": [], "sq_rates": [], "var": [], "r2": [], "z": [], "du": [], "cum": [], "kl": []} for t in saves}
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(dev)
        cum = 0
        for t, u, u_new, z, rec, _ in model.iterate(xb, t_max, lambda rate: torch.poisson(rate, generator=g),
                                                    with_kl=False):
            cum = cum + z.sum(-1)  # every spike emitted up to the read-out of t (period 0 included)
            if t in acc:
                rec_r = torch.exp(u_new) @ model.phi.T
                a = acc[t]
                a["sq"].append(((xb - rec) ** 2).sum(-1).cpu())
                a["sq_rates"].append(((xb - rec_r) ** 2).sum(-1).cpu())
                a["var"].append(((xb - xb.mean(-1, keepdim=True)) ** 2).sum(-1).cpu())
                a["r2"].append(r_squared(xb, rec).cpu())
                a["z"].append(z.cpu())
                a["du"].append((u_new - u).norm(dim=-1).cpu())
                a["cum"].append(cum.cpu().clone())
                a["kl"].append(poisson_kl(model.u0, u_new - model.u0).sum(-1).cpu())  # KL(posterior ‖ prior)
    rows = []
    for t in saves:
        a = {k: torch.cat(v).double().numpy() for k, v in acc[t].items()}
        var = a["var"].sum()
        r2p, r2r, zeros = 1 - a["sq"].sum() / var, 1 - a["sq_rates"].sum() / var, float((a["z"] == 0).mean())
        r2 = float(a["r2"].mean())
        rows.append({"t": t, "r2": r2, "r2_pooled": float(r2p), "mse": float(a["sq"].mean()), "zeros": zeros,
                     "lifetime_sparsity": float(np.mean(lifetime_sparsity(a["z"]))),
                     "population_sparsity": float(np.mean(population_sparsity(a["z"]))),
                     "distance": math.hypot(1 - r2, 1 - zeros), "distance_pooled": math.hypot(1 - r2p, 1 - zeros),
                     "r2_rates": float(r2r), "mse_rates": float(a["sq_rates"].mean()),
                     "distance_rates": math.hypot(1 - r2r, 1.0), "distance_map": math.hypot(1 - r2r, 1 - zeros),
                     "spikes_per_patch": float(a["z"].sum(1).mean()), "cumulative_spikes": float(a["cum"].mean()),
                     "du_norm": float(a["du"].mean()), "kl_to_prior": float(a["kl"].mean())})
    return rows


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
        for name in ("beta", "lr", "lr_min", "temp_start", "temp_stop", "grad_clip"):
            v = getattr(self, name, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ArgumentError(f"{name} must be a finite number, got {v!r}")
        if not (0 <= self.beta <= 1e6 and 0 < self.lr <= 1 and 100 >= self.temp_start >= self.temp_stop >= 1e-3):
            raise ArgumentError("need 0 <= beta <= 1e6, 0 < lr <= 1 and 100 >= temp_start >= temp_stop >= 0.001")
        return self


def schedule(step: int, total: int, cfg: IPVAETrainConfig) -> Schedule:
    """The :class:`~spikevae.models.config.Schedule` (temperature, β, learning-rate factor, clamp progress) at
    optimizer step ``step`` of ``total``."""
    f = step / max(total, 1)
    warm = 0.005
    lr_f = f / warm if f < warm else (cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 *
                                      (1 + math.cos(math.pi * (f - warm) / (1 - warm)))) / cfg.lr
    temp = cfg.temp_start + (cfg.temp_stop - cfg.temp_start) * min(f / 0.5, 1.0)
    ramp = min(max((f - 0.001) / 0.1, 0.0), 1.0)
    beta = 1e-4 + (cfg.beta - 1e-4) * ramp
    return Schedule(temp, beta, lr_f, ramp)


def fit(model: IPVAE, x_train: torch.Tensor, cfg: IPVAETrainConfig = IPVAETrainConfig(),
        progress: bool = False, device: str | torch.device = "cpu", *, resume: dict | None = None,
        stop_after: int | None = None, on_epoch=None, x_val=None, val_every: int = 0) -> list[dict]:
    """Train ``model`` on patches ``x_train`` (N, M) with the reference's recipe; returns per-epoch history.

    Parameters
    ----------
    resume : dict, optional
        A checkpoint dict of an unfinished run (``train_state``: optimizer, generator state, epoch): training
        continues on the same trajectory, step for step, as if it had not stopped (the model's weights must
        already be loaded from it).
    stop_after : int, optional
        Stop after this many epochs in total; the schedules still span ``cfg.epochs``.
    on_epoch : callable, optional
        ``on_epoch(epoch, history, train_state)`` after every epoch (``train_state`` None after the last):
        the caller writes its checkpoint there.
    x_val, val_every : optional
        Every ``val_every`` epochs (and after the last), :func:`evaluate` at T = ``cfg.n_iter`` on ``x_val``
        (hard spikes, a fixed seed) goes into the epoch's history row as ``val``.
    """
    import time

    from tqdm.auto import tqdm

    cfg.validate()
    dev = torch.device(device)
    model.to(dev)
    x_train = torch.as_tensor(x_train).reshape(len(x_train), -1).to(dev, torch.float32)
    if len(x_train) < cfg.batch_size:
        raise ArgumentError(f"batch size {cfg.batch_size} is larger than the training set ({len(x_train)})")
    g = torch.Generator(device=dev).manual_seed(cfg.seed)
    opt = torch.optim.Adamax(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                             weight_decay=cfg.weight_decay)
    n_batches = max(len(x_train) // cfg.batch_size, 1)
    total = n_batches * cfg.epochs
    history, start = [], 0
    if resume is not None:
        state = resume["train_state"]
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["rng"].cpu() if dev.type == "cpu" else state["rng"])
        start, history = int(state["epoch"]), list(resume.get("history", []))
    last = cfg.epochs if stop_after is None else min(cfg.epochs, max(int(stop_after), start))
    bar = tqdm(range(start, last), disable=not progress, desc="train ipvae", unit="epoch", initial=start,
               total=cfg.epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        order = torch.randperm(len(x_train), generator=g, device=dev)
        sums = torch.zeros(3, device=dev)
        for b in range(n_batches):
            step = epoch * n_batches + b
            temp, beta, lr_f, ramp = schedule(step, total, cfg)
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
        loss_m, nll_m, kl_m = (sums / n_batches).tolist()
        row = {"epoch": epoch + 1, "step": (epoch + 1) * n_batches, "loss": loss_m, "nll": nll_m, "kl": kl_m,
               "temperature": temp, "beta": beta, "eta": float(model.log_lr.detach().exp()),
               "seconds": time.perf_counter() - t0}
        if not math.isfinite(loss_m):
            raise ArgumentError(f"the iP-VAE's loss became {loss_m} in epoch {epoch + 1}; lower --lr or --beta")
        if x_val is not None and val_every and ((epoch + 1) % val_every == 0 or epoch + 1 == cfg.epochs):
            keep = model.clamp_progress
            model.clamp_progress = ramp
            v = evaluate(model, x_val, t_max=cfg.n_iter, save_t=(cfg.n_iter,), seed=cfg.seed, device=dev)[-1]
            row["val"] = {k: v[k] for k in ("r2", "r2_pooled", "zeros", "distance", "distance_pooled", "r2_rates",
                                            "spikes_per_patch")}
            model.clamp_progress = keep
            model.train()
        history.append(row)
        bar.set_postfix(loss=f"{loss_m:.1f}", nll=f"{nll_m:.1f}", kl=f"{kl_m:.2f}")
        if on_epoch is not None:
            done = epoch + 1 == cfg.epochs
            on_epoch(epoch + 1, history, None if done else
                     {"optimizer": opt.state_dict(), "rng": g.get_state(), "epoch": epoch + 1})
    model.clamp_progress = 1.0 if last == cfg.epochs else schedule(last * n_batches, total, cfg).clamp
    return history


@torch.no_grad()
def init_from_pvae(model: IPVAE, pvae) -> IPVAE:
    """Start an iP-VAE from a trained P-VAE's generative model (the same model: Poisson prior, linear
    Gaussian decoder): its atoms Φ, its prior log-rates as ``u0``, σ² = ½ (the P-VAE's loss is the summed
    squared error, i.e. a Gaussian NLL at σ² = ½) and the step ``η = σ² / (2 λ_max(ΦᵀΦ))``, half the
    stable gradient step of the quadratic ``‖x − Φλ‖²/2σ²`` at unit rates (η = 1, the reference's initial
    step, makes these atoms' dynamics diverge within a few iterations)."""
    phi = torch.as_tensor(pvae.dictionary, dtype=torch.float32)
    if phi.shape != model.phi.shape:
        raise ArgumentError(f"the P-VAE's dictionary is {tuple(phi.shape)}, the iP-VAE's {tuple(model.phi.shape)}")
    model.phi.copy_(phi)
    model.u0.copy_(torch.log(torch.as_tensor(pvae.prior_rates, dtype=torch.float32))[None])
    var = 0.5
    model.dec_log_sigma.fill_(0.5 * math.log(var))
    model.log_lr.fill_(math.log(var / (2.0 * float(torch.linalg.eigvalsh(phi.T @ phi).max()))))
    return model


# ------------------------------------------------------------------ checkpoints (their own family)
def save(model: IPVAE, path, history: list | None = None, train_config: IPVAETrainConfig | None = None,
         preprocessing: dict | None = None, data: dict | None = None, metrics: dict | None = None,
         seed: int = 0, train_state: dict | None = None) -> None:
    """Write an iP-VAE checkpoint atomically: the project's checkpoint container (tensors and plain data
    only) with ``family = "ipvae"``, the iP-VAE's own configs, the preprocessing of its training data, the
    final metrics and the per-epoch history; an unfinished run also keeps its ``train_state`` (optimizer,
    generator state, epoch) for ``train --model ipvae --resume``."""
    from ..data import Preprocessing
    from ..io.files import provenance
    from .checkpoint import IPVAE_FAMILY, save_checkpoint

    prep = preprocessing if preprocessing is not None else Preprocessing(patch_size=model.config.patch_size).to_dict()
    save_checkpoint(path, {
        "family": IPVAE_FAMILY, "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_config": asdict(train_config or IPVAETrainConfig()), "preprocessing": prep,
        "data": data or {}, "metrics": metrics or {}, "history": history or [], "provenance": provenance(seed),
        **({"train_state": train_state} if train_state is not None else {})})


#: the ranges a trained iP-VAE's parameters lie in (all logs, natural units): outside them its rates are not ones a
#: neuron or the circuit's time step can carry (e^u0 above e^12 spikes per iteration, a step size e^log_lr over e^8)
PLAUSIBLE = {"u0": (U_FLOOR, 12.0), "log_lr": (-30.0, 8.0), "log_bias": (-30.0, 30.0), "dec_log_sigma": (-15.0, 15.0)}


def load(path) -> IPVAE:
    """Read an iP-VAE checkpoint without running code (``weights_only``); every field is checked.

    The returned model carries the stored fields other than the weights as ``model.checkpoint`` and the
    preprocessing of its training data as ``model.preprocessing``.
    """
    from ..errors import CheckpointError
    from .checkpoint import IPVAE_FAMILY, check_train_state, check_weights, load_checkpoint, validate_container

    ck = load_checkpoint(path)
    if ck.get("family") != IPVAE_FAMILY:
        raise CheckpointError(f"{path} holds a {ck.get('family', 'poisson')} VAE, not an iP-VAE "
                              "(train one with python -m spikevae.train --model ipvae)")
    cfg, prep = validate_container(ck, path, IPVAEConfig, IPVAETrainConfig, check_weights)
    model = IPVAE(cfg)
    sd, expect = ck["state_dict"], model.state_dict()
    if not isinstance(sd, dict) or set(sd) != set(expect):
        raise CheckpointError(f"{path}: parameters {sorted(sd) if isinstance(sd, dict) else type(sd).__name__} do "
                              f"not match {sorted(expect)}")
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor) or v.shape != expect[k].shape or not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{path}: parameter {k!r} has the wrong shape or non-finite values")
    for name, (lo, hi) in PLAUSIBLE.items():
        v = sd[name].to(torch.float64)
        if not bool(((v >= lo) & (v <= hi)).all()):
            raise CheckpointError(f"{path}: parameter {name!r} ranges over [{float(v.min()):.3g}, {float(v.max()):.3g}], "
                                  f"outside [{lo:g}, {hi:g}]: the model would not spike in any physical range")
    if ck.get("train_state") is not None:
        check_train_state(ck["train_state"], [tuple(q.shape) for q in model.parameters()], ck["train_config"], path)
    model.load_state_dict(sd)
    model.checkpoint = {k: v for k, v in ck.items() if k != "state_dict"}
    model.preprocessing = prep
    return model.eval()
