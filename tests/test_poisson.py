"""Relaxed Poisson sampler and Poisson KL against scipy oracles."""
import numpy as np
import pytest
import torch
from scipy import stats

import spikevae.models.poisson as P
from spikevae.models.poisson import (
    _SoftCount,
    n_exp_for_rate,
    poisson_kl,
    relaxed_poisson,
    relaxed_poisson_reference,
    tail_terms,
    truncation_bias,
    window_edges,
)
from spikevae.models.poisson_buckets import _BUCKETS, _bucket_limits, relaxed_poisson_bucketed

N = 200_000


def _use(which, monkeypatch):
    if which == "torch":
        monkeypatch.setattr(P, "_kernel", lambda: None)
    else:
        assert P._kernel() is not None, "the compiled sampler did not build here"
    return which


@pytest.fixture(params=["compiled", pytest.param("torch", marks=pytest.mark.slow)])
def sampler(request, monkeypatch):
    """Each implementation of the default sampler: the compiled one (CPU) and the torch one (any device; in the
    everyday suite through the law test against the earlier sampler)."""
    return _use(request.param, monkeypatch)


@pytest.fixture(params=["compiled", "torch"])
def both_samplers(request, monkeypatch):
    return _use(request.param, monkeypatch)


@pytest.mark.parametrize("temperature,var_tol", [(0.05, 0.08), (0.01, 0.025)])
@pytest.mark.parametrize("rate", [0.1, 1.0, 5.0, 20.0])
def test_relaxed_moments_match_poisson(rate, temperature, var_tol, gen, sampler):
    z = relaxed_poisson(torch.full((N,), rate, dtype=torch.float64), temperature, gen).numpy()
    mean, var = stats.poisson.stats(rate, moments="mv")
    se = np.sqrt(var / N)
    # mean: 5 standard errors + 0.5 % relaxation bias; variance: the relaxation shrinks it slightly
    assert abs(z.mean() - mean) < 5 * se + 0.005 * mean
    assert abs(z.var() / var - 1) < var_tol
    assert z.var() <= var * (1 + 5 * np.sqrt((1 + 2 * rate) / (rate * N)))  # never above Poisson beyond noise


@pytest.mark.parametrize("rate", [0.3, 4.0, 30.0])
def test_zero_temperature_gives_exact_counts(rate, gen):
    z = relaxed_poisson(torch.full((N,), rate), 0.0, gen).numpy()
    assert np.array_equal(z, np.round(z))
    kmax = int(stats.poisson.ppf(1 - 1e-6, rate))
    obs = np.bincount(z.astype(int), minlength=kmax + 1)[: kmax + 1]
    exp = stats.poisson.pmf(np.arange(kmax + 1), rate) * N
    keep = exp > 5
    chi2 = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3


def test_straight_through_forward_is_integer_with_soft_gradient(gen, sampler):
    rate = torch.full((50_000,), 2.0, requires_grad=True)
    z = relaxed_poisson(rate, 0.05, gen, hard=True)
    assert torch.equal(z, z.round())
    assert abs(z.mean().item() - 2.0) < 5 * np.sqrt(2.0 / 50_000)
    z.mean().backward()
    # d E[z] / dλ = 1, so the mean gradient per element is ~1 / n
    assert abs(rate.grad.sum().item() - 1.0) < 0.03


@pytest.mark.parametrize("rate", [1e-3, 0.5, 1.0, 5.0, 20.0, 200.0])
def test_n_exp_truncation_bound_is_tight(rate):
    n = n_exp_for_rate(rate, 1e-5)
    assert stats.poisson.sf(n - 1, rate) <= 1e-5  # P(count >= n) <= p
    assert n == 1 or stats.poisson.sf(n - 2, rate) > 1e-5  # and n is the smallest such


def test_bucket_limits_respect_the_bound():
    """The earlier per-bucket sampler (the benchmark's baseline) keeps its guarantee."""
    for n, lim in zip(_BUCKETS, _bucket_limits(1e-5)):
        assert stats.poisson.sf(n - 1, lim) <= 1e-5 * (1 + 1e-6)
        assert n_exp_for_rate(lim * (1 - 1e-9)) <= n


def _mean_and_gradient(rate, temperature, n, gen, n_exp=None):
    lam = torch.full((n,), rate, dtype=torch.float64, requires_grad=True)
    z = relaxed_poisson(lam, temperature, gen, n_exp=n_exp)
    z.sum().backward()
    z, g = z.detach().numpy(), lam.grad.numpy()
    return z.mean(), z.std() / np.sqrt(n), g.mean(), g.std() / np.sqrt(n)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 1.0])
@pytest.mark.parametrize("rate", [0.05, 0.5, 3.0, 20.0, 50.0])
def test_relaxed_count_and_gradient_unbiased_at_every_temperature(rate, temperature, sampler):
    """E[z] and E[dz/dλ] of the untruncated relaxed count are λ·t·softplus(1/t) and t·softplus(1/t)
    (arrivals form a Poisson process of intensity λ: E[Σ σ((1 − T_k)/t)] = λ ∫ σ((1 − u)/t) du); the
    truncated sampler must match both within 3 standard errors."""
    gen = torch.Generator().manual_seed(int(rate * 100) + int(temperature * 1000))
    n = 20_000
    mean, se, grad, se_g = _mean_and_gradient(rate, temperature, n, gen)
    slope = temperature * np.logaddexp(0.0, 1.0 / temperature)
    assert abs(mean - rate * slope) < 3 * se, (mean, rate * slope, se)
    assert abs(grad - slope) < 3 * se_g, (grad, slope, se_g)


def test_hard_count_truncation_is_biased_at_high_temperature():
    """The test above can fail: truncating at the hard-count bound (43 arrivals for λ = 20) at t = 1."""
    gen = torch.Generator().manual_seed(0)
    mean, se, grad, se_g = _mean_and_gradient(20.0, 1.0, 20_000, gen, n_exp=n_exp_for_rate(20.0))
    slope = np.logaddexp(0.0, 1.0)
    assert (20 * slope - mean) / se > 20 and (slope - grad) / se_g > 20  # E[z] −17.5 %, E[dz/dλ] −53 %
    bz, bg = truncation_bias(43, 20.0, 1.0)  # and truncation_bias computes what is missing
    assert abs(bz - (20 * slope - mean)) < 3 * se and abs(bg - (slope - grad)) < 3 * se_g


@pytest.mark.parametrize("temperature", [0.05, 1.0])
def test_relaxed_bucket_limits_of_the_earlier_sampler_respect_the_bound(temperature):
    for n, lim in zip(_BUCKETS, _bucket_limits(1e-5, temperature)):
        assert max(truncation_bias(n, lim, temperature)) <= 1e-5
        assert n_exp_for_rate(lim, temperature=temperature) <= n
        assert n_exp_for_rate(lim * 1.01, temperature=temperature) > n * 0.9  # and not far below the limit


def test_mixed_rates_match_reference_formulation(gen, sampler):
    rates = torch.tensor([0.05, 0.7, 3.0, 12.0, 40.0]).repeat(40_000)
    ours = relaxed_poisson(rates, 0.05, gen).view(-1, 5).mean(0)
    ref = relaxed_poisson_reference(rates, 0.05, 263, gen).view(-1, 5).mean(0)
    se = torch.sqrt(torch.tensor([0.05, 0.7, 3.0, 12.0, 40.0]) / 40_000)
    assert torch.all((ours - ref).abs() < 6 * se)


def test_soft_count_gradient_is_exact():
    g = torch.Generator().manual_seed(0)
    arrivals = torch.cumsum(torch.empty(6, 12, dtype=torch.float64).exponential_(generator=g), -1)
    rate = torch.tensor([0.2, 0.9, 1.5, 3.0, 6.0, 9.0], dtype=torch.float64, requires_grad=True)
    fn = lambda r: _SoftCount.apply(r, arrivals.clone(), 0.3, False)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (rate,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("r,dr", [(0.02, 0.1), (0.5, 1.0), (1.0, 3.0), (3.0, 0.4), (0.1, 25.0)])
def test_kl_closed_form_matches_monte_carlo(r, dr):
    rng = np.random.default_rng(0)
    lam = r * dr
    k = rng.poisson(lam, 1_000_000)
    terms = stats.poisson.logpmf(k, lam) - stats.poisson.logpmf(k, r)
    kl = poisson_kl(torch.tensor(np.log(r)), torch.tensor(np.log(dr))).item()
    assert abs(terms.mean() - kl) < 5 * terms.std() / np.sqrt(len(k)) + 1e-12
    # and the full sum over the pmf (exact)
    ks = np.arange(0, int(stats.poisson.ppf(1 - 1e-14, max(lam, r))) + 50)
    exact = np.sum(stats.poisson.pmf(ks, lam) * (stats.poisson.logpmf(ks, lam) - stats.poisson.logpmf(ks, r)))
    assert kl == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="temperature"):
        relaxed_poisson(torch.ones(3), -1.0)
    with pytest.raises(ValueError, match="rate"):
        n_exp_for_rate(float("nan"))


@pytest.mark.parametrize("rate,temperature", [(1e4, 0.05), (1e4, 1.0), (2500.0, 0.5)])
def test_rates_with_a_gaussian_remainder_keep_the_relaxed_counts_moments(rate, temperature, gen, sampler):
    """Past ``GAUSSIAN_AFTER`` arrivals the remainder is Gaussian: mean, variance and mean gradient are still those
    of the untruncated relaxed count (Campbell: λ t softplus(1/t), λ t (softplus(1/t) − σ(1/t)), t softplus(1/t))."""
    n, t = 20_000, temperature
    lam = torch.full((n,), rate, dtype=torch.float64, requires_grad=True)
    z = relaxed_poisson(lam, t, gen)
    sp, sg = np.logaddexp(0, 1 / t), 1 / (1 + np.exp(-1 / t))
    mean, var = rate * t * sp, rate * t * (sp - sg)
    zn = z.detach().numpy()
    assert abs(zn.mean() - mean) < 4 * np.sqrt(var / n)
    assert abs(zn.var() / var - 1) < 4 * np.sqrt(2 / n)
    z.sum().backward()
    g = lam.grad.numpy()
    assert abs(g.mean() - t * sp) < 4 * g.std() / np.sqrt(n)
    z_hard = relaxed_poisson(torch.full((n,), rate, dtype=torch.float64), t, gen, hard=True).numpy()
    assert np.array_equal(z_hard, np.round(z_hard))
    assert abs(z_hard.mean() - rate) < 4 * np.sqrt(rate / n) and abs(z_hard.var() / rate - 1) < 4 * np.sqrt(2 / n)


@pytest.mark.parametrize("temperature", [0.01, 0.1, 1.0])
@pytest.mark.parametrize("rate", [0.01, 1.0, 30.0, 3000.0])
def test_window_edges_hold_their_bounds(rate, temperature):
    """Against quadrature: the arrivals before a miss <= 1e-5 of E[z] (counted as 1 each) and of E[dz/dλ]; the
    arrivals after b, replaced by their mean (tail_terms, checked against the integrals), have variance <= 1e-5."""
    from scipy.integrate import quad
    from scipy.special import expit

    t, p = temperature, 1e-5
    a, b = (float(v) for v in window_edges(torch.tensor([rate], dtype=torch.float64), t, p))
    kw = dict(epsabs=1e-13, epsrel=1e-10, limit=400)
    if a > 0:
        miss_z = rate * quad(lambda x: expit((x - 1) / t), 0, a, **kw)[0]
        miss_g = quad(lambda x: expit((1 - x) / t) * expit((x - 1) / t) * x / t, 0, a, **kw)[0]
        assert miss_z <= p and miss_g <= p
    end = b + 80 * t
    mean = rate * quad(lambda x: expit((1 - x) / t), b, end, **kw)[0]
    grad = quad(lambda x: expit((1 - x) / t) * expit((x - 1) / t) * x / t, b, end, **kw)[0]
    var = rate * quad(lambda x: expit((1 - x) / t) ** 2, b, end, **kw)[0]
    f64 = dict(dtype=torch.float64)
    z_tail, g_tail = (float(v) for v in tail_terms(torch.tensor([rate], **f64), torch.tensor([b], **f64), t))
    assert z_tail == pytest.approx(mean, rel=1e-6, abs=1e-14) and g_tail == pytest.approx(grad, rel=1e-6, abs=1e-14)
    assert var <= p


@pytest.mark.parametrize("rate,temperature", [(0.3, 0.02), (2.0, 0.3), (12.0, 1.0)])
def test_same_law_as_the_earlier_bucketed_sampler(rate, temperature, both_samplers):
    """Two-sample checks against the per-bucket sampler of earlier releases: mean and variance of z, mean and
    variance of dz/dλ, within 4 standard errors of their difference (normal-theory s.e. of a variance)."""
    n = 100_000
    draws = []
    for fn, seed in ((relaxed_poisson, 1), (relaxed_poisson_bucketed, 2)):
        lam = torch.full((n,), rate, dtype=torch.float64, requires_grad=True)
        z = fn(lam, temperature, torch.Generator().manual_seed(seed))
        z.sum().backward()
        draws.append((z.detach().numpy(), lam.grad.numpy()))
    for k in range(2):
        x, y = draws[0][k], draws[1][k]
        assert abs(x.mean() - y.mean()) < 4 * np.sqrt((x.var() + y.var()) / n)
        sx = np.sqrt((np.mean((x - x.mean()) ** 4) - x.var() ** 2) / n)
        sy = np.sqrt((np.mean((y - y.mean()) ** 4) - y.var() ** 2) / n)
        assert abs(x.var() - y.var()) < 4 * np.hypot(sx, sy)


def test_the_compiled_and_torch_samplers_repeat_with_the_seed(monkeypatch):
    """A seeded call repeats exactly (the compiled sampler also on any number of threads); a zero rate gives 0."""
    lam = torch.exp(torch.linspace(-6.0, 5.0, 30_000)).requires_grad_(True)
    lam_zero = torch.cat([lam.detach(), torch.zeros(3)])
    outs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        outs.append(relaxed_poisson(lam, 0.3, torch.Generator().manual_seed(7)))
    torch.set_num_threads(1)
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(relaxed_poisson(lam_zero, 0.3, torch.Generator().manual_seed(7))[-3:], torch.zeros(3))
    monkeypatch.setattr(P, "_kernel", lambda: None)
    again = [relaxed_poisson(lam, 0.3, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(again[0], again[1])
    assert torch.equal(relaxed_poisson(lam_zero, 0.3, torch.Generator().manual_seed(7))[-3:], torch.zeros(3))
