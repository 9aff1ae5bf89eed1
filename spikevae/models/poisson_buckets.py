"""The per-bucket relaxed Poisson sampler of spikevae 0.1, kept as the baseline of
``benchmarks/train_throughput.py`` and as a second implementation the law tests compare against.

Each element gets the smallest ``n`` of the buckets ``4, 8, 16, ..., 4096`` for which the arrivals past the
first ``n`` change E[z] and E[dz/dλ] by at most ``p_trunc`` at its own rate and the temperature
(:func:`spikevae.models.poisson.truncation_bias`); the elements of each bucket are gathered, counted with
``n`` arrivals and scattered back. A rate past the largest bucket draws its first 256 arrivals one by one and
the rest as a Gaussian with their exact mean and variance. :func:`spikevae.models.poisson.relaxed_poisson`
draws the same law with only the arrivals each element needs and no per-bucket gather or scatter.
"""
from __future__ import annotations

import functools
import math

import torch

from .poisson import _SoftCount, _unit_arrivals, truncation_bias

__all__ = ["relaxed_poisson_bucketed"]

#: truncation buckets (number of exponentials drawn per element)
_BUCKETS = (4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)


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


def relaxed_poisson_bucketed(rate: torch.Tensor, temperature: float, generator: torch.Generator | None = None,
                             p_trunc: float = 1e-5, hard: bool = False) -> torch.Tensor:
    """Relaxed Poisson counts at ``temperature`` > 0 by per-bucket truncation (module docstring)."""
    flat = rate.reshape(-1)
    dev, dt = flat.device, flat.dtype
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
