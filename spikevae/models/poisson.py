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

Rather than one ``n`` for every element, :func:`relaxed_poisson` lets each element draw the arrivals of
its own window ``(a, b)`` (:func:`window_edges`) and stop at the first one past ``b``: the arrivals before
``a`` add 1 each (``σ`` is within ``p_trunc`` of 1 there), the arrivals past ``b`` add their exact
expectation to ``z`` and to ``dz/dλ`` (:func:`tail_terms`; what this leaves out is their variance, at most
``p_trunc``), and only the arrivals in between are drawn one by one. Many arrivals before ``a`` (a high
rate at a low temperature) are counted by one Poisson draw, and more than ``GAUSSIAN_AFTER`` arrivals left
in the window (rates in the thousands) become one Gaussian with the remainder's exact mean and variance
(Campbell's theorem). So E[z] and E[dz/dλ] are those of the untruncated relaxed count to ``p_trunc``, and
the work is the few arrivals each element needs: about ``λ(1 + t·log(max(λt, 1)/p_trunc)/2) + 1``. On the
CPU a compiled loop (``spikevae/brian/_relaxed_kernel.pyx``, built on first use) draws them element by
element over ``torch.get_num_threads()`` threads; elsewhere, or without a compiler, the torch
implementation draws the same law in a few vectorised passes. The per-bucket sampler of earlier releases
is :mod:`spikevae.models.poisson_buckets`; passing ``n_exp=<int>`` reproduces the reference's single fixed
truncation.

Gradients flow to the rate only: the unit-rate arrival times are drawn without
gradient and divided by the rate (``T = cumsum(E) / λ``), and the derivative of
the soft count is computed in the same pass (``dz/dλ = Σ s(1 - s) T / (λ t)``),
so nothing of size (elements × arrivals) is kept for the backward pass.
"""
from __future__ import annotations

import math

import torch

from ..errors import ArgumentError

__all__ = [
    "window_edges",
    "tail_terms",
    "n_exp_for_rate",
    "truncation_bias",
    "relaxed_poisson",
    "relaxed_poisson_reference",
    "poisson_kl",
    "kl_f",
    "softclamp_upper",
]

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
        Poisson rates λ ≥ 0 (expected counts per window).
    temperature : float
        Relaxation temperature t ≥ 0. ``t = 0`` returns exact Poisson counts
        (``torch.poisson``, no gradient).
    generator : torch.Generator, optional
        Source of randomness.
    n_exp : int, optional
        Fixed number of arrivals for every element (the reference's
        formulation). Default: each element draws the arrivals its own window
        needs, so that the arrivals left out change E[z] and E[dz/dλ] by at
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

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> lam = torch.full((100_000,), 2.0, requires_grad=True)
    >>> z = relaxed_poisson(lam, 0.05, g)
    >>> z.sum().backward()
    >>> round(z.mean().item(), 1), round(lam.grad.mean().item(), 1)  # E[z] = λ t softplus(1/t), E[dz/dλ] = t softplus(1/t)
    (2.0, 1.0)
    """
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ArgumentError(f"temperature must be finite and >= 0, got {temperature!r}")
    if temperature == 0:
        with torch.no_grad():
            return torch.poisson(rate.detach(), generator=generator)
    flat = rate.reshape(-1)
    if n_exp is not None:
        if n_exp < 1:
            raise ArgumentError(f"n_exp must be >= 1, got {n_exp!r}")
        arr = _unit_arrivals((flat.numel(), int(n_exp)), generator, flat.device, flat.dtype)
        return _SoftCount.apply(flat, arr, temperature, hard).reshape(rate.shape)
    if not 0 < p_trunc < 1:
        raise ArgumentError(f"p_trunc must be in (0, 1), got {p_trunc!r}")
    with torch.no_grad():
        count = _compiled_count if flat.device.type == "cpu" and _kernel() is not None else _windowed_count
        z, dz = count(flat.detach(), float(temperature), generator, p_trunc, hard)
    return _Counted.apply(flat, z, dz).reshape(rate.shape)


class _Counted(torch.autograd.Function):
    """The count ``z`` drawn for ``rate``, with its pathwise derivative ``dz/dλ`` drawn with it."""

    @staticmethod
    def forward(ctx, rate, z, dz):  # noqa: D102
        ctx.save_for_backward(dz)
        return z

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        (dz,) = ctx.saved_tensors
        return grad_out * dz, None, None


#: expected arrivals left in an element's window past which its remainder is drawn as one Gaussian
GAUSSIAN_AFTER = 4096
#: expected arrivals before the window's inner edge past which they are counted by one Poisson draw
SKIP_AFTER = 16


def window_edges(rate: torch.Tensor, temperature: float, p_trunc: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """The window ``(a, b)`` of each rate's relaxed count at ``p_trunc``: the arrivals before ``a`` are counted
    as 1 each, those after ``b`` by their expectation (:func:`tail_terms`), those between one by one.

    With ``y = (1 − a)/t``, the arrivals before ``a`` miss ``λ∫₀ᵃ σ((x − 1)/t) dx ≤ λt e^{−y}`` of E[z] and at
    most ``e^{−y}`` of E[dz/dλ]: ``y = log(max(λt, 1)/p)``. With ``w = (b − 1)/t``, replacing the arrivals after
    ``b`` by their mean keeps E[z] and E[dz/dλ] and removes their variance, ``λt (softplus(−w) − σ(−w)) ≤
    λt e^{−2w}``: ``w = ½ log(max(λt, 1)/p)``.

    Examples
    --------
    >>> a, b = window_edges(torch.tensor([1.0, 1000.0]), 0.01)
    >>> [round(v, 4) for v in a.tolist()], [round(v, 4) for v in b.tolist()]
    ([0.8849, 0.8618], [1.0576, 1.0691])
    """
    lt = (rate * temperature).clamp_min(1.0)
    return 1.0 - temperature * torch.log(lt / p_trunc), 1.0 + 0.5 * temperature * torch.log(lt / p_trunc)


def tail_terms(rate: torch.Tensor, b: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The expected contribution of the arrivals after ``b`` to the relaxed count, ``λt softplus(−w)``, and to
    its pathwise derivative ``Σ σ(1 − σ)·T/(λt)``, ``b σ(−w) + t softplus(−w)`` (``w = (b − 1)/t``; integration
    by parts of ``∫_b^∞ σ(1 − σ) x dx``). They are independent of the arrivals before ``b``."""
    w = (1.0 - b) / temperature
    sp = torch.nn.functional.softplus(w)
    return rate * temperature * sp, b * torch.sigmoid(w) + temperature * sp


def _windowed_count(lam: torch.Tensor, t: float, generator, p_trunc: float, hard: bool):
    """``(z, dz/dλ)`` for flat rates ``lam``: the relaxed (or hard) count and the pathwise derivative
    ``Σ σ(1 − σ)·T/(λt)`` of the same arrivals, each element drawing the arrivals of its window only.

    The arrivals past each element's window add their expectation (:func:`tail_terms`). Each pass draws
    ``n`` arrivals for every element still drawing (the first pass: all; ``n`` from their
    mean number of arrivals left in the window); an element whose last arrival is still inside its window
    continues from there (memorylessness) in the next pass, of twice the size, among the few that need it.
    Before a pass, an element with more than ``SKIP_AFTER`` arrivals expected before its window's inner edge
    ``a`` counts them with one Poisson draw and continues from ``a``, and one with more than
    ``GAUSSIAN_AFTER`` arrivals left draws its whole remainder as a Gaussian with the remainder's exact mean
    and variance (:func:`_gaussian_remainder`).
    """
    rate, lam = lam, lam.clamp_min(1e-30)  # a zero rate: its first arrival lies past any window
    a, b = window_edges(lam, t, p_trunc)
    z = torch.zeros_like(lam)
    dz = torch.zeros_like(lam)  # Σ σ(1 − σ) T, divided by λt at the end
    gauss = torch.zeros(lam.shape, dtype=torch.bool, device=lam.device)  # drawn as a Gaussian remainder
    idx = None  # the elements still drawing (None: all)
    r, aa, bb, start = lam, a, b, torch.zeros_like(lam)  # their rates, window edges and last arrival (0: none)
    n = 0
    while True:
        left = r * (bb - start)  # expected arrivals left in the window
        big = left > GAUSSIAN_AFTER
        if bool(big.any()):
            sel = big.nonzero().squeeze(1)
            gz, gdz = _gaussian_remainder(r[sel], start[sel], t, generator, hard)
            sel = sel if idx is None else idx[sel]
            z.index_add_(0, sel, gz)
            dz.index_add_(0, sel, gdz)
            gauss[sel] = True
            keep = (~big).nonzero().squeeze(1)
            idx = keep if idx is None else idx[keep]
            r, aa, bb, start, left = r[keep], aa[keep], bb[keep], start[keep], left[keep]
            if idx.numel() == 0:
                break
        inner = r * (aa - start)
        skip = inner > SKIP_AFTER
        if bool(skip.any()):
            count = torch.poisson(torch.where(skip, inner, 0.0), generator=generator)
            z.add_(count) if idx is None else z.index_add_(0, idx, count)
            start = torch.where(skip, aa, start)
            left = r * (bb - start)
        if n == 0:  # the first pass: a little under the mean number of arrivals to the first past the window
            need = float(left.mean()) + 1.0
            n = max(1, math.floor(need - math.sqrt(need)))
        else:
            n = min(2 * n, 2 * GAUSSIAN_AFTER)
        last = torch.empty_like(start)
        rows = max(1, (1 << 22) // n)  # at most 4 M arrivals in memory at once
        for i in range(0, len(r), rows):
            sl = slice(i, i + rows)
            T = _unit_arrivals((len(r[sl]), n), generator, lam.device, lam.dtype)
            T = T.div_(r[sl].unsqueeze(-1)).add_(start[sl].unsqueeze(-1))
            sg = T.mul(-1.0 / t).add_(1.0 / t).sigmoid_().mul_(T < bb[sl].unsqueeze(-1))  # past b: the tail terms
            zc = (T < 1.0).sum(-1).to(lam.dtype) if hard else sg.sum(-1)
            dc = sg.sub_(sg.square()).mul_(T).sum(-1)
            if idx is None:
                z[sl] += zc
                dz[sl] += dc
            else:
                z.index_add_(0, idx[sl], zc)
                dz.index_add_(0, idx[sl], dc)
            last[sl] = T[:, -1]
        more = (last < bb).nonzero().squeeze(1)
        if more.numel() == 0:
            break
        idx = more if idx is None else idx[more]
        r, aa, bb, start = r[more], aa[more], bb[more], last[more]
    # the arrivals past b, by their expectation (not for elements drawn as a Gaussian: theirs is in it)
    z_tail, dz_tail = tail_terms(rate, b, t)
    if not hard:
        z.add_(z_tail.masked_fill_(gauss, 0.0))
    return z, (dz / (lam * t)).add_(dz_tail.masked_fill_(gauss, 0.0))


_POOL = None


def _kernel():
    """The compiled per-element sampler (``spikevae/brian/_relaxed_kernel.pyx``), or None where it cannot be built."""
    from ..brian._build import load_kernel

    try:
        return load_kernel("_relaxed_kernel")
    except ImportError as exc:
        import logging

        logging.getLogger(__name__).info("relaxed Poisson: compiled sampler unavailable (%s); using torch", exc)
        return None


def _compiled_count(lam: torch.Tensor, t: float, generator, p_trunc: float, hard: bool):
    """:func:`_windowed_count`'s ``(z, dz/dλ)`` from the compiled sampler: one element at a time, each drawing
    arrivals until one falls past its window, the elements split over ``torch.get_num_threads()`` threads.
    Its seed is drawn from ``generator``, so a seeded run repeats exactly, whatever the number of threads."""
    import numpy as np

    global _POOL
    kern = _kernel()
    x = lam.to(torch.float64) if lam.dtype not in (torch.float32, torch.float64) else lam
    x = x.contiguous().numpy()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=lam.device))
    z, dz = np.empty_like(x), np.empty_like(x)
    n, n_threads = len(x), max(1, min(torch.get_num_threads(), 16))
    args = (x, t, p_trunc, seed, hard, SKIP_AFTER, GAUSSIAN_AFTER, z, dz)
    if n_threads == 1 or n < 8192:
        kern.relaxed_counts(*args, 0, n)
    else:
        from concurrent.futures import ThreadPoolExecutor

        if _POOL is None or _POOL._max_workers < n_threads:
            _POOL = ThreadPoolExecutor(n_threads)
        edges = np.linspace(0, n, n_threads + 1).astype(int)
        for f in [_POOL.submit(kern.relaxed_counts, *args, int(i0), int(i1)) for i0, i1 in zip(edges[:-1], edges[1:])]:
            f.result()
    return torch.from_numpy(z).to(lam.dtype), torch.from_numpy(dz).to(lam.dtype)


def _gaussian_remainder(lam, start, t: float, generator, hard: bool):
    """The relaxed count of the arrivals after ``start`` (the last arrival drawn, or 0) and its derivative, as
    a Gaussian with their exact mean and variance: after ``start`` the arrivals are a Poisson process of rate λ
    (memorylessness), so by Campbell's theorem their soft count has mean ``λt softplus(y)`` and variance
    ``λt (softplus(y) − σ(y))``, ``y = (1 − start)/t`` (``∫σ² = softplus − σ``), a sum of thousands of terms
    here. Its derivative is that of ``mean + sd·ε`` with ``start = Γ/λ`` (``dy/dλ = start/(λt)``), whose
    expectation given ``start`` is that of the arrivals' ``Σ σ(1 − σ)T/(λt)``. In ``hard`` mode the forward
    value is the exact hard count ``Pois(λ·max(1 − start, 0))``."""
    y = (1.0 - start) / t
    sp, sg = torch.nn.functional.softplus(y), torch.sigmoid(y)
    var = (lam * t * (sp - sg)).clamp_min(1e-30)
    sd = var.sqrt()
    eps = torch.randn(lam.shape, generator=generator, device=lam.device, dtype=lam.dtype)
    dmean = t * sp + sg * start
    dvar = t * (sp - sg) + sg * sg * start
    dz = dmean + dvar / (2.0 * sd) * eps
    z = (lam * t * sp + sd * eps).clamp_min(0.0)
    if hard:
        z = torch.poisson(lam * (1.0 - start).clamp_min(0.0), generator=generator)
    return z, dz * (lam * t)  # the caller divides Σ by λt


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

