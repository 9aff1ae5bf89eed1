"""Variational autoencoders: Poisson (P-VAE) and the comparison families.

The P-VAE (Vafaii, Galor & Yates 2024): prior ``Pois(r)`` with learnable
log-rates ``log r`` (K,), an encoder that outputs ``log δr(x)``, and posterior
rates ``λ = r · δr(x)`` with the reference's soft clamps (``log δr ≤ 10``,
``log λ ≤ 5.3``, both smooth). ``λ`` is the expected spike count per
presentation window. KL per latent ``r·f(δr)``, ``f(y) = 1 - y + y log y``, with
``δr = λ / r`` of the rate the model emits (after the clamps; the reference uses the
unclamped δr, which overstates the KL of clamped high-rate latents).

The comparison families share the encoders and decoders (anchor §1.5):
``gaussian`` (prior N(0, 1), closed-form KL), ``laplace`` (prior Lap(0, 1),
closed-form KL), ``gaussian-relu`` (Gaussian posterior and KL, ReLU on the
samples before decoding) and ``categorical`` (one latent with ``n_latents``
categories, Gumbel-softmax samples, KL to the uniform prior). Only the Poisson
family emits spike counts.

Architectures (``encoder|decoder``): ``lin``, ``conv`` and ``mlp`` encoders;
``lin`` and ``conv`` decoders. With a linear decoder ``x̂ = Φ z`` the columns of
``Φ = decoder.weight`` (D, K) are the dictionary atoms.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..errors import ArgumentError
from .poisson import poisson_kl, relaxed_poisson, softclamp_upper

__all__ = ["VAEConfig", "Posterior", "LossTerms", "VAE", "FAMILIES", "ANNEALED", "ENCODERS", "DECODERS",
           "gumbel_softmax", "posterior_array"]

from .config import ANNEALED, DECODERS, ENCODERS, FAMILIES, VAEConfig  # noqa: F401 - re-exported

_EPS = float(torch.finfo(torch.float32).eps)


class Posterior(NamedTuple):
    """Posterior of a batch: moments and per-latent KL (all (B, K))."""

    mean: torch.Tensor  # E[z|x]; for the P-VAE the rate λ (expected counts per window)
    var: torch.Tensor  # Var[z|x]; λ for the P-VAE
    kl: torch.Tensor  # per-latent KL to the prior, nats
    features: torch.Tensor  # encoder output used as features (log δr for P, loc for G)


class LossTerms(NamedTuple):
    """Batch-mean loss terms (scalars)."""

    loss: torch.Tensor  # recon + β·KL, the optimised objective
    recon: torch.Tensor  # squared error summed over pixels
    kl: torch.Tensor  # KL summed over latents, nats


class _ResDense(nn.Module):
    """x + W2 silu(W1 x), with a LayerNorm (the reference's ResDenseLayer, without dropout)."""

    def __init__(self, dim: int, expand: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * expand), nn.SiLU(), nn.Linear(dim * expand, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):  # noqa: D102
        return self.norm(x + self.net(x))


def _conv_encoder(cfg: VAEConfig, n_out: int) -> nn.Sequential:
    ch = int(cfg.n_channels)
    layers: list[nn.Module] = [nn.Conv2d(1, ch, 3, padding=1), nn.SiLU()]
    side = int(cfg.patch_size)
    while side > 4:  # stride-2 levels down to 4 x 4, channels doubling
        layers += [nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), nn.SiLU(),
                   nn.Conv2d(2 * ch, 2 * ch, 3, padding=1), nn.SiLU()]
        ch, side = 2 * ch, side // 2
    layers += [nn.Conv2d(ch, ch, 4), nn.SiLU(), nn.Flatten(), _ResDense(ch, 4),
               nn.Linear(ch, n_out, bias=cfg.bias)]
    return nn.Sequential(*layers)


class _ConvDecoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        n_up = int(math.log2(int(cfg.patch_size) // 2))
        ch = int(cfg.n_channels) * 2 ** n_up
        self.ch = ch
        self.fc = nn.Linear(int(cfg.n_latents), ch * 4, bias=cfg.bias)
        layers: list[nn.Module] = []
        for _ in range(n_up):  # 2 -> patch_size, channels halving
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch // 2, 3, padding=1),
                       nn.SiLU(), nn.Conv2d(ch // 2, ch // 2, 3, padding=1), nn.SiLU()]
            ch //= 2
        layers.append(nn.Conv2d(ch, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z):  # noqa: D102
        return self.net(self.fc(z).view(z.shape[0], self.ch, 2, 2))


class VAE(nn.Module):
    """A VAE over square single-channel patches.

    Parameters
    ----------
    config : VAEConfig
    generator : torch.Generator, optional
        Source of the initial weights (all parameters are re-initialised from it).

    Examples
    --------
    >>> model = VAE(VAEConfig(n_latents=8, patch_size=4), torch.Generator().manual_seed(0))
    >>> model.posterior(torch.zeros(2, 1, 4, 4)).mean.shape
    torch.Size([2, 8])
    """

    def __init__(self, config: VAEConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config.validate()
        K, D = int(config.n_latents), config.n_pixels
        n_out = K if config.family in ("poisson", "categorical") else 2 * K
        if config.encoder == "lin":
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(D, n_out, bias=config.bias))
        elif config.encoder == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), _ResDense(D, max(2, int(config.n_channels) // 2)),
                                         nn.Linear(D, n_out, bias=config.bias))
        else:
            self.encoder = _conv_encoder(config, n_out)
        if config.decoder == "lin":
            self.decoder = nn.Linear(K, D, bias=config.bias)
        else:
            self.decoder = _ConvDecoder(config)
        if config.family == "poisson":
            self.log_r = nn.Parameter(torch.zeros(K))  # prior log-rates (learned)
        self.reset_parameters(generator)

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter from ``generator`` (reference scheme for the linear layers)."""
        cfg = self.config
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    bound = 1.0 / math.sqrt(max(1, m.weight[0].numel()))
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        last_enc = self.encoder[-1]
        nn.init.normal_(last_enc.weight, 0.0, cfg.init_scale, generator=generator)
        if last_enc.bias is not None:
            nn.init.zeros_(last_enc.bias)
        if cfg.decoder == "lin":
            nn.init.normal_(self.decoder.weight, 0.0, cfg.init_scale, generator=generator)
        if cfg.family == "poisson":
            nn.init.uniform_(self.log_r, -6.0, cfg.prior_log_high, generator=generator)

    # --------------------------------------------------------------- forward
    @property
    def dictionary(self) -> torch.Tensor:
        """Φ (D, K): the linear decoder's atoms as columns."""
        if self.config.decoder != "lin":
            raise ArgumentError("the dictionary is defined only for a linear decoder (decoder='lin')")
        return self.decoder.weight

    def posterior(self, x: torch.Tensor) -> Posterior:
        """Posterior moments and per-latent KL for inputs ``x`` (B, 1, P, P)."""
        h = self.encoder(x)  # (B, K) or (B, 2K)
        if self.config.family == "poisson":
            log_dr = softclamp_upper(h, self.config.logdr_clamp)
            log_rate = softclamp_upper(self.log_r + log_dr, self.config.lograte_clamp)
            rate = torch.exp(log_rate) + _EPS  # λ, expected counts per window
            # the KL of the rate the model emits (after the clamp on log λ), not of the unclamped δr
            return Posterior(rate, rate, poisson_kl(self.log_r, log_rate - self.log_r), log_dr)
        if self.config.family == "categorical":
            logp = torch.log_softmax(h, dim=-1)  # (B, K): one latent, K categories
            p = logp.exp()
            kl = p * (logp + math.log(h.shape[-1]))  # KL(Cat(p) || uniform), per category
            return Posterior(p, p * (1 - p), kl, h)
        loc, log_scale = h.chunk(2, dim=-1)
        log_scale = 5.3 * torch.tanh(log_scale / 5.3)
        if self.config.family == "laplace":
            b = torch.exp(log_scale)
            # KL(Lap(μ, b) || Lap(0, 1)) = b·exp(−|μ|/b) + |μ| − log b − 1
            kl = b * torch.exp(-loc.abs() / b) + loc.abs() - log_scale - 1.0
            return Posterior(loc, 2.0 * b.square(), kl, loc)
        var = torch.exp(2.0 * log_scale)
        kl = 0.5 * (loc.square() + var - 2.0 * log_scale - 1.0)  # KL(N(loc, var) || N(0, 1))
        return Posterior(loc, var, kl, loc)

    def sample(self, post: Posterior, temperature: float, generator: torch.Generator | None = None,
               hard: bool = False) -> torch.Tensor:
        """One posterior sample per input (B, K), as the decoder sees it.

        P-VAE: relaxed counts (exact at t = 0). Categorical: Gumbel-softmax (a one-hot sample at
        t = 0). Gaussian/Laplace: reparameterised samples, ``temperature`` scales the noise (the
        reference keeps it at 1); gaussian-relu applies a ReLU to the sample.
        """
        fam = self.config.family
        if fam == "poisson":
            return relaxed_poisson(post.mean, temperature, generator, hard=hard)
        if fam == "categorical":
            return gumbel_softmax(post.features, temperature, generator, hard=hard)
        shape, dev, dt = post.mean.shape, post.mean.device, post.mean.dtype
        if fam == "laplace":
            u = torch.rand(shape, generator=generator, device=dev, dtype=dt).clamp_(1e-7, 1 - 1e-7) - 0.5
            noise = -torch.sign(u) * torch.log1p(-2 * u.abs())  # Lap(0, 1)
            return post.mean + float(temperature) * (post.var / 2).sqrt() * noise
        eps = torch.randn(shape, generator=generator, device=dev, dtype=dt)
        z = post.mean + float(temperature) * post.var.sqrt() * eps
        return torch.relu(z) if fam == "gaussian-relu" else z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction (B, 1, P, P) from latents (B, K)."""
        p = int(self.config.patch_size)
        return self.decoder(z).view(z.shape[0], 1, p, p)

    def loss(self, x: torch.Tensor, beta: float = 1.0, temperature: float = 0.05, method: str = "mc",
             generator: torch.Generator | None = None, hard: bool = False) -> LossTerms:
        """Batch mean of ``recon + β·KL``.

        ``method='mc'``: one posterior sample, squared error summed over pixels.
        ``method='exact'`` (linear decoder only): ``‖x - Φ E[z]‖² + Var[z]ᵀ diag(ΦᵀΦ)``,
        the expectation of the MC term in closed form.
        """
        post = self.posterior(x)
        xf = x.flatten(1)
        if method == "mc":
            z = self.sample(post, temperature, generator, hard=hard)
            recon = (xf - self.decode(z).flatten(1)).square().sum(1)
        elif method == "exact":
            if self.config.family == "gaussian-relu":
                raise ArgumentError("method 'exact' is not defined for the gaussian-relu family; use 'mc'")
            phi = self.dictionary  # (D, K)
            xhat = self.decode(post.mean).flatten(1)
            recon = (xf - xhat).square().sum(1) + post.var @ phi.square().sum(0)
        else:
            raise ArgumentError(f"method must be 'mc' or 'exact', got {method!r}")
        kl = post.kl.sum(1)
        return LossTerms((recon + beta * kl).mean(), recon.mean(), kl.mean())

    def extra_repr(self) -> str:  # noqa: D102
        return f"config={dataclasses.asdict(self.config)}"


@torch.no_grad()
def posterior_array(model: VAE, x, field: str = "mean", batch_size: int = 4096) -> np.ndarray:
    """One posterior field for many inputs, batched, without gradients, on the model's device.

    The one path from a model to rates: ``field='mean'`` gives the P-VAE's λ (expected counts per
    window); ``'features'`` the reference's decoding features; ``'kl'`` the per-latent KL.

    Parameters
    ----------
    model : VAE
    x : array or tensor (n, P, P), (n, 1, P, P) or (n, P*P)
    field : {'mean', 'var', 'kl', 'features'}
    batch_size : int
        Inputs per forward pass (bounds memory).

    Returns
    -------
    ndarray (n, K) float64
    """
    if field not in Posterior._fields:
        raise ArgumentError(f"field must be one of {Posterior._fields}, got {field!r}")
    if batch_size < 1:
        raise ArgumentError(f"batch_size must be >= 1, got {batch_size}")
    p = int(model.config.patch_size)
    dev = next(model.parameters()).device
    xt = torch.as_tensor(x)
    if xt.ndim == 2 and xt.shape[1] == p * p:
        xt = xt.view(-1, p, p)
    if xt.ndim == 3:
        xt = xt.unsqueeze(1)
    if xt.ndim != 4 or tuple(xt.shape[1:]) != (1, p, p):
        raise ArgumentError(f"inputs must be (n, {p}, {p}) patches, got shape {tuple(torch.as_tensor(x).shape)}")
    out = [getattr(model.posterior(xt[i:i + batch_size].to(dev, torch.float32)), field).double().cpu().numpy()
           for i in range(0, len(xt), batch_size)]
    k = model.config.n_latents
    return np.concatenate(out) if out else np.zeros((0, k))


def gumbel_softmax(logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None,
                   hard: bool = False) -> torch.Tensor:
    """Relaxed one-hot sample ``softmax((logits + Gumbel) / t)`` over the last axis.

    ``t = 0`` (or ``hard``, straight-through) gives the one-hot ``argmax(logits + Gumbel)``,
    an exact sample of ``Cat(softmax(logits))``.
    """
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    g = -torch.log(-torch.log(u.clamp_(1e-10, 1 - 1e-7)))  # Gumbel(0, 1)
    y = logits + g
    one_hot = torch.nn.functional.one_hot(y.argmax(-1), logits.shape[-1]).to(logits.dtype)
    if temperature == 0:
        return one_hot
    soft = torch.softmax(y / temperature, dim=-1)
    return soft + (one_hot - soft).detach() if hard else soft
