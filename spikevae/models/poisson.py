"""Relaxed Poisson sampling and the Poisson KL, as pure torch functions.

The P-VAE (Vafaii, Galor & Yates 2024, Algorithm 1) draws a spike count
``z ~ Pois(λ)`` in a differentiable way: exponential inter-arrival times with
rate λ are summed into arrival times ``T_k``, and each arrival inside the unit
window is counted softly by ``sigmoid((1 - T_k) / t)``. As the temperature
``t → 0`` the soft count becomes the exact count.

Truncation (``n_exp``)
----------------------
Only ``n`` arrivals are drawn. For the hard count (``t → 0``) the arrivals past ``n`` matter only
when the count reaches ``n``; for the *relaxed* count every arrival past the window still adds
``σ((1 − T)/t)``, which at ``t ≥ 0.5`` is far from 0 (at ``t = 1`` and λ = 20, truncating at the
hard-count rule's 43 arrivals drops 22 % of E[z] and 60 % of E[dz/dλ]). :func:`truncation_bias`
computes the expected contribution of the arrivals past ``n`` to ``z`` and to ``dz/dλ`` (one
integral each, exact to quadrature error), and :func:`n_exp_for_rate` returns the smallest ``n``
for which both are ``≤ p_trunc`` (default 1e-5) at the given temperature (at ``t = 0``: the
hard-count rule ``P(count ≥ n) ≤ p_trunc``). So the sampler's E[z] and E[dz/dλ] are those of the
untruncated relaxed count, ``λ t softplus(1/t)`` and ``t softplus(1/t)``, to ``p_trunc``. The
reference uses ``n = 263`` for every element whatever the temperature.

Rather than applying the ``n`` of the largest rate in the batch to every element,
:func:`relaxed_poisson` groups the elements into buckets of ``n ∈ {4, 8, 16, ..., 4096}`` by their
own rate, so each element carries the same guarantee as under the max-rate rule while the work is
``Σ n_i`` instead of ``N · n_max``. A rate past the largest bucket's limit (about 227 at ``t = 0.85``,
3,800 at ``t → 0``) draws its first 256 arrivals one by one and the rest as a Gaussian with their exact
mean and variance (:func:`_count_with_tail`), so E[z] and E[dz/dλ] stay those of the untruncated count.
The bucket limits depend on the temperature; they are computed for a grid of temperatures (4 per
octave, ≤ 1 s each, once per process) and the grid point at or above ``t`` is used (the dropped
share grows with ``t``). Passing ``n_exp=<int>`` reproduces the reference's single fixed truncation.

Gradients flow to the rate only: the unit-rate arrival times are drawn without
gradient and divided by the rate (``T = cumsum(E) / λ``), and the derivative of
the soft count is computed in the same pass (``dz/dλ = Σ s(1 - s) T / (λ t)``),
so no ``(B, K, n)`` tensor is kept for the backward pass.
"""
from __future__ import annotations

import functools
import math

import torch

from ..errors import ArgumentError

__all__ = [
    "n_exp_for_rate",
    "truncation_bias",
    "relaxed_poisson",
    "relaxed_poisson_reference",
    "poisson_kl",
    "kl_f",
    "softclamp_upper",
]

#: truncation buckets (number of exponentials drawn per element); 4096 carries the largest rate the
#: P-VAE emits (e^5.3 ≈ 200) at t = 1. Larger rates (the iP-VAE's reach e^10) take :func:`_count_with_tail`
_BUCKETS = (4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)


def truncation_bias(n: int, rate: float, temperature: float) -> tuple[float, float]:
    """Expected contribution of the arrivals past the first ``n`` to the relaxed count and to its derivative:
    ``E[Σ_{k>n} σ((1 − T_k)/t)]`` and ``E[Σ_{k>n} σ(1 − σ) T_k / (λ t)]``, ``T_k = Γ_k / λ``, ``Γ_k ~ Gamma(k, 1)``.

    Exact up to quadrature error (~1e-10): the densities of the dropped unit-rate arrivals sum to
    ``Σ_{k>n} g^{k−1} e^{−g}/(k−1)! = P(Pois(g) ≥ n)``, the regularised lower incomplete gamma
    function ``P(n, g)``, so each expectation is one integral over g, e.g.
    ``∫ σ((1 − g/λ)/t) P(n, g) dg``.

    Examples
    --------
    >>> z, g = truncation_bias(43, 20.0, 1.0)  # the hard-count truncation at t = 1 drops 22 % of E[z]
    >>> round(z / (20.0 * math.log1p(math.e)), 3), round(g / math.log1p(math.e), 3)
    (0.217, 0.604)
    """
    from scipy.integrate import quad
    from scipy.special import expit, gammainc

    lam, t = float(rate), float(temperature)
    if lam <= 0:
        return 0.0, 0.0

    def z(g):
        return expit((1.0 - g / lam) / t) * gammainc(n, g)

    def dz(g):
        s = expit((1.0 - g / lam) / t)
        return s * (1.0 - s) * g / (lam * lam * t) * gammainc(n, g)

    # split at the window's end (g = λ); past λ(1 + 60 t) the sigmoid is below e^-60
    kw = dict(epsabs=1e-10, epsrel=1e-6, limit=200)
    return tuple(quad(f, 0.0, lam, **kw)[0] + quad(f, lam, lam * (1.0 + 60.0 * t), **kw)[0] for f in (z, dz))


def _check_rate(rate, p_trunc):
    if not (rate >= 0 and math.isfinite(rate)):
        raise ArgumentError(f"rate must be finite and >= 0, got {rate!r}")
    if not 0 < p_trunc < 1:
        raise ArgumentError(f"p_trunc must be in (0, 1), got {p_trunc!r}")


def n_exp_for_rate(rate: float, p_trunc: float = 1e-5, temperature: float = 0.0) -> int:
    """Smallest number of arrivals ``n`` whose truncation keeps the count's bias below ``p_trunc``.

    Parameters
    ----------
    rate : float
        Poisson rate λ (expected count per window), ≥ 0.
    p_trunc : float
        At ``temperature = 0`` (hard counts): the allowed ``P(count ≥ n)``. At ``t > 0`` (relaxed
        counts): the allowed expected contribution of the dropped arrivals to ``z`` and to ``dz/dλ``
        (:func:`truncation_bias`), and at least the hard-count ``n``.
    temperature : float
        Relaxation temperature t ≥ 0.

    Returns
    -------
    int
        At ``t = 0``: ``scipy.stats.poisson.ppf(1 - p_trunc, rate) + 1`` (at least 1).

    Examples
    --------
    >>> n_exp_for_rate(1.0), n_exp_for_rate(20.0)
    (9, 43)
    >>> n_exp_for_rate(20.0, temperature=0.05), n_exp_for_rate(20.0, temperature=1.0)
    (46, 318)
    """
    from scipy.stats import poisson

    _check_rate(rate, p_trunc)
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ArgumentError(f"temperature must be finite and >= 0, got {temperature!r}")
    if rate == 0:
        return 1
    hard = int(poisson.ppf(1.0 - p_trunc, rate)) + 1
    if temperature == 0:
        return hard
    lo, hi = hard, 2 * hard
    while max(truncation_bias(hi, rate, temperature)) > p_trunc:
        lo, hi = hi, 2 * hi
    while lo < hi:  # the dropped share falls with n
        mid = (lo + hi) // 2
        if max(truncation_bias(mid, rate, temperature)) > p_trunc:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _temperature_grid(temperature: float) -> float:
    """The grid temperature (4 per octave) at or above ``temperature``; 0 stays 0."""
    if temperature == 0:
        return 0.0
    return 2.0 ** (math.ceil(4.0 * math.log2(temperature) - 1e-9) / 4.0)


@functools.lru_cache(maxsize=64)
def _bucket_limits(p_trunc: float, temperature: float = 0.0) -> tuple[float, ...]:
    """Largest rate each bucket size in ``_BUCKETS`` can carry at ``p_trunc`` and ``temperature``."""
    from scipy.optimize import brentq
    from scipy.stats import poisson

    limits = []
    for n in _BUCKETS:
        # P(count >= n) = sf(n - 1) is increasing in the rate; solve sf(n - 1; r) = p
        hard = brentq(lambda r: poisson.sf(n - 1, r) - p_trunc, 1e-12, 10.0 * n)
        if temperature == 0:
            limits.append(hard)
            continue
        # the dropped arrivals' share grows with the rate; solved to 0.1 % and shrunk by 0.2 % so that every
        # rate below the limit holds the bound, and never above the hard-count limit
        f = lambda r: math.log(max(truncation_bias(n, r, temperature)) + 1e-300) - math.log(p_trunc)  # noqa: E731
        limits.append(min(hard, brentq(f, 1e-9, 4 * hard, rtol=1e-3) * 0.998) if f(1e-9) < 0 else 0.0)
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
        formulation). Default: chosen per element from its own rate and the
        temperature so that the dropped arrivals change E[z] and E[dz/dλ] by at
        most ``p_trunc`` (module docstring).
    p_trunc : float
        Truncation bound used when ``n_exp`` is None.
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

    grid_t = _temperature_grid(float(temperature))
    limits = torch.tensor(_bucket_limits(p_trunc, grid_t), device=dev, dtype=dt)
    with torch.no_grad():
        bucket = torch.searchsorted(limits, flat.detach().contiguous())  # (N,); len(_BUCKETS): past every bucket
    # one bucket for all: no gather / scatter. On an accelerator always: memory bandwidth is plentiful and
    # every gather, scatter and host sync of the per-bucket loop costs more than the extra arrivals
    # (the largest bucket still holds each element's guarantee at this temperature)
    top = int(bucket.max())
    if top < len(_BUCKETS) and (dev.type != "cpu" or int(bucket.min()) == top):
        arr = _unit_arrivals((flat.numel(), _BUCKETS[top]), generator, dev, dt)
        return _SoftCount.apply(flat, arr, temperature, hard).reshape(rate.shape)
    out = torch.zeros_like(flat)
    for b in torch.unique(bucket).tolist():
        idx = torch.nonzero(bucket == b).squeeze(1)
        if b == len(_BUCKETS):
            z = _count_with_tail(flat[idx], temperature, generator, hard)
        else:
            z = _SoftCount.apply(flat[idx], _unit_arrivals((idx.numel(), _BUCKETS[b]), generator, dev, dt),
                                 temperature, hard)
        out = out.index_put((idx,), z)
    return out.reshape(rate.shape)


#: arrivals drawn one by one for a rate past the largest bucket; the rest is the Gaussian tail
TAIL_AFTER = 256


def _count_with_tail(rate: torch.Tensor, temperature: float, generator, hard: bool) -> torch.Tensor:
    """Relaxed count of a rate too large for the buckets: the first ``TAIL_AFTER`` arrivals one by one, the
    rest as a Gaussian with the exact mean and variance of their contribution.

    Given the last drawn arrival ``T_n``, the later arrivals are a Poisson process of rate λ on (T_n, ∞)
    (memorylessness), so by Campbell's theorem their soft count has mean ``λ t softplus(y)`` and variance
    ``λ t (softplus(y) − σ(y))``, ``y = (1 − T_n)/t`` (using ``∫σ² = softplus − σ``); both are in the
    thousands here (λ ≥ ~200), where the sum of that many small terms is Gaussian. The mean and its
    derivative in λ are therefore those of the untruncated count. In ``hard`` mode the forward value of
    the tail is the exact hard count ``Pois(λ·max(1 − T_n, 0))`` and its gradient that of the soft tail.
    """
    n = TAIL_AFTER
    arr = _unit_arrivals((rate.numel(), n), generator, rate.device, rate.dtype)
    gamma_n = arr[:, -1].clone()
    head = _SoftCount.apply(rate, arr, temperature, hard)
    t = float(temperature)
    y = (1.0 - gamma_n / rate) / t  # gradient flows to the rate through T_n = Γ_n / λ
    sp = torch.nn.functional.softplus(y)
    mean = rate * t * sp
    var = (rate * t * (sp - torch.sigmoid(y))).clamp_min(0.0)
    eps = torch.randn(rate.shape, generator=generator, device=rate.device, dtype=rate.dtype)
    tail = (mean + var.sqrt() * eps).clamp_min(0.0)
    if hard:
        with torch.no_grad():
            exact = torch.poisson((rate * (1.0 - gamma_n / rate).clamp_min(0.0)).detach(), generator=generator)
        tail = tail + (exact - tail).detach()
    return head + tail


def relaxed_poisson_reference(
    rate: torch.Tensor, temperature: float, n_exp: int = 263, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The reference formulation: fixed ``n_exp``, ``cumsum(Exp(λ))`` through autograd.

    Kept as the baseline for ``benchmarks/train_throughput.py``. Same distribution as
    :func:`relaxed_poisson` only where 263 arrivals cover the relaxed count: at t = 0.05 up to rates of
    about 140, at t = 1 up to about 16 (:func:`truncation_bias`).
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

