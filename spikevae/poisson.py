"""Relaxed Poisson sampling and the Poisson KL, as pure torch functions.

The P-VAE (Vafaii, Galor & Yates 2024, Algorithm 1) draws a spike count
``z ~ Pois(λ)`` in a differentiable way: exponential inter-arrival times with
rate λ are summed into arrival times ``T_k``, and each arrival inside the unit
window is counted softly by ``sigmoid((1 - T_k) / t)``. As the temperature
``t → 0`` the soft count becomes the exact count.

Truncation (``n_exp``)
----------------------
Only ``n`` arrivals are drawn, so a count above ``n`` is clipped. The reference
uses ``n = 263`` (enough for rates up to e^5.3 ≈ 200) in the first epoch. Here
``n`` is chosen from the rate itself: :func:`n_exp_for_rate` returns the
smallest ``n`` with ``P(count ≥ n) ≤ p_trunc`` (default 1e-5), i.e.
``poisson.ppf(1 - p_trunc, λ) + 1``. Rather than applying the bound of the
largest rate in the batch to every element, :func:`relaxed_poisson` groups the
elements into buckets of ``n ∈ {4, 8, 16, 32, ...}`` by their own rate, so each
element carries the same guarantee as under the max-rate rule while the work is
``Σ n_i`` instead of ``N · n_max``. Passing ``n_exp=<int>`` reproduces the
reference's single fixed truncation.

Gradients flow to the rate only: the unit-rate arrival times are drawn without
gradient and divided by the rate (``T = cumsum(E) / λ``), and the derivative of
the soft count is computed in the same pass (``dz/dλ = Σ s(1 - s) T / (λ t)``),
so no ``(B, K, n)`` tensor is kept for the backward pass.
"""
from __future__ import annotations

import functools
import math

import torch

from .errors import ArgumentError

__all__ = [
    "n_exp_for_rate",
    "relaxed_poisson",
    "relaxed_poisson_reference",
    "poisson_kl",
    "kl_f",
    "softclamp_upper",
]

#: truncation buckets (number of exponentials drawn per element)
_BUCKETS = (4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def n_exp_for_rate(rate: float, p_trunc: float = 1e-5) -> int:
    """Smallest number of arrivals ``n`` with ``P(count ≥ n) ≤ p_trunc``.

    Parameters
    ----------
    rate : float
        Poisson rate λ (expected count per window), ≥ 0.
    p_trunc : float
        Allowed probability that the true count reaches the truncation.

    Returns
    -------
    int
        ``scipy.stats.poisson.ppf(1 - p_trunc, rate) + 1`` (at least 1).

    Examples
    --------
    >>> n_exp_for_rate(1.0), n_exp_for_rate(20.0)
    (9, 43)
    """
    from scipy.stats import poisson

    if not (rate >= 0 and math.isfinite(rate)):
        raise ArgumentError(f"rate must be finite and >= 0, got {rate!r}")
    if not 0 < p_trunc < 1:
        raise ArgumentError(f"p_trunc must be in (0, 1), got {p_trunc!r}")
    if rate == 0:
        return 1
    return int(poisson.ppf(1.0 - p_trunc, rate)) + 1


@functools.lru_cache(maxsize=16)
def _bucket_limits(p_trunc: float) -> tuple[float, ...]:
    """Largest rate each bucket size in ``_BUCKETS`` can carry at ``p_trunc``."""
    from scipy.optimize import brentq
    from scipy.stats import poisson

    limits = []
    for n in _BUCKETS:
        # P(count >= n) = sf(n - 1) is increasing in the rate; solve sf(n - 1; r) = p
        limits.append(brentq(lambda r: poisson.sf(n - 1, r) - p_trunc, 1e-12, 10.0 * n))
    return tuple(limits)


class _SoftCount(torch.autograd.Function):
    """Soft (or straight-through hard) count of unit-rate arrivals inside the window."""

    @staticmethod
    def forward(ctx, rate, arrivals, temperature, hard):  # noqa: D102
        # rate: (N,), arrivals: (N, n) unit-rate arrival times (consumed in place)
        t = float(temperature)
        T = arrivals.div_(rate.unsqueeze(-1))  # (N, n) arrival times at rate λ
        s = torch.sigmoid((1.0 - T) / t)  # (N, n) soft indicators
        z = (T < 1.0).sum(-1).to(rate.dtype) if hard else s.sum(-1)
        if ctx.needs_input_grad[0]:
            # d/dλ sigmoid((1 - E/λ)/t) = s (1 - s) · T / (λ t)
            ctx.save_for_backward((s.sub_(s.square()).mul_(T)).sum(-1).div_(rate * t))
        return z

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        (dz_drate,) = ctx.saved_tensors
        return grad_out * dz_drate, None, None, None


def _unit_arrivals(shape, generator, device, dtype) -> torch.Tensor:
    """Cumulative sums of Exp(1) draws along the last axis (no gradient)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    return torch.cumsum(u.neg_().log1p_().neg_(), dim=-1)  # Exp(1) = -log(1 - U)


def relaxed_poisson(
    rate: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None = None,
    n_exp: int | None = None,
    p_trunc: float = 1e-5,
    hard: bool = False,
) -> torch.Tensor:
    """Relaxed Poisson counts with gradients to the rate (Algorithm 1).

    Parameters
    ----------
    rate : Tensor, any shape
        Poisson rates λ > 0 (expected counts per window).
    temperature : float
        Relaxation temperature t ≥ 0. ``t = 0`` returns exact Poisson counts
        (``torch.poisson``, no gradient).
    generator : torch.Generator, optional
        Source of randomness.
    n_exp : int, optional
        Fixed number of arrivals for every element (the reference's
        formulation). Default: chosen per element from its own rate so that
        ``P(count ≥ n) ≤ p_trunc`` (module docstring).
    p_trunc : float
        Truncation probability bound used when ``n_exp`` is None.
    hard : bool
        Straight-through: the forward value is the hard count of arrivals
        inside the window, the gradient that of the soft count.

    Returns
    -------
    Tensor, same shape as ``rate``
        Relaxed (or hard) counts.
    """
    if temperature < 0:
        raise ArgumentError(f"temperature must be >= 0, got {temperature!r}")
    if temperature == 0:
        with torch.no_grad():
            return torch.poisson(rate.detach(), generator=generator)
    flat = rate.reshape(-1)
    dev, dt = flat.device, flat.dtype
    if n_exp is not None:
        if n_exp < 1:
            raise ArgumentError(f"n_exp must be >= 1, got {n_exp!r}")
        arr = _unit_arrivals((flat.numel(), int(n_exp)), generator, dev, dt)
        return _SoftCount.apply(flat, arr, temperature, hard).reshape(rate.shape)

    limits = torch.tensor(_bucket_limits(p_trunc), device=dev, dtype=dt)
    with torch.no_grad():
        bucket = torch.searchsorted(limits, flat.detach().contiguous())  # (N,)
        if int(bucket.max()) >= len(_BUCKETS):
            top = float(flat.detach().max())
            raise ArgumentError(
                f"rate {top:.4g} exceeds the largest truncation bucket "
                f"({_BUCKETS[-1]} arrivals); pass n_exp explicitly"
            )
    # one bucket for all: no gather / scatter. On an accelerator always: memory bandwidth is plentiful and
    # every gather, scatter and host sync of the per-bucket loop costs more than the extra arrivals
    # (the largest bucket still holds each element's guarantee P(count >= n) <= p_trunc)
    if dev.type != "cpu" or int(bucket.min()) == int(bucket.max()):
        arr = _unit_arrivals((flat.numel(), _BUCKETS[int(bucket.max())]), generator, dev, dt)
        return _SoftCount.apply(flat, arr, temperature, hard).reshape(rate.shape)
    out = torch.zeros_like(flat)
    for b in torch.unique(bucket).tolist():
        idx = torch.nonzero(bucket == b).squeeze(1)
        arr = _unit_arrivals((idx.numel(), _BUCKETS[b]), generator, dev, dt)
        out = out.index_put((idx,), _SoftCount.apply(flat[idx], arr, temperature, hard))
    return out.reshape(rate.shape)


def relaxed_poisson_reference(
    rate: torch.Tensor, temperature: float, n_exp: int = 263, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The reference formulation: fixed ``n_exp``, ``cumsum(Exp(λ))`` through autograd.

    Kept as the baseline for ``benchmarks/train_throughput.py`` and as an
    oracle in tests. Same distribution as :func:`relaxed_poisson`.
    """
    e = torch.empty((n_exp, *rate.shape), device=rate.device, dtype=rate.dtype)
    e = e.exponential_(generator=generator) / rate  # (n_exp, ...) Exp(λ) inter-arrival times
    T = torch.cumsum(e, dim=0)
    return torch.sigmoid((1.0 - T) / temperature).sum(0)


def softclamp_upper(x: torch.Tensor, upper: float) -> torch.Tensor:
    """Smooth upper bound: ``upper - softplus(upper - x)``."""
    return upper - torch.nn.functional.softplus(upper - x)


def kl_f(log_dr: torch.Tensor) -> torch.Tensor:
    """``f(δr) = 1 - δr + δr·log δr`` evaluated from ``log δr``."""
    return 1.0 + torch.exp(log_dr) * (log_dr - 1.0)


def poisson_kl(log_r: torch.Tensor, log_dr: torch.Tensor) -> torch.Tensor:
    """Per-latent ``KL(Pois(r·δr) || Pois(r)) = r · f(δr)`` (nats).

    Parameters
    ----------
    log_r : Tensor, (K,) or broadcastable
        Prior log-rates.
    log_dr : Tensor, (B, K)
        Encoder output, log of the multiplicative rate change.

    Returns
    -------
    Tensor, (B, K)
    """
    return torch.exp(log_r) * kl_f(log_dr)

