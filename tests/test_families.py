"""Comparison families: closed-form KLs against Monte Carlo, Gumbel-softmax limits, training runs."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from spikevae.models.vae import FAMILIES, VAE, VAEConfig, gumbel_softmax


def _model(family, gen, K=6):
    return VAE(VAEConfig(family=family, n_latents=K, patch_size=4), gen).double()


@pytest.mark.parametrize("family,dist", [
    ("gaussian", lambda m, v: stats.norm(m, np.sqrt(v))),
    ("laplace", lambda m, v: stats.laplace(m, np.sqrt(v / 2))),
])
def test_kl_closed_form_matches_monte_carlo(family, dist, gen):
    m = _model(family, gen)
    with torch.no_grad():
        m.encoder[-1].weight.normal_(0, 1.0, generator=gen)
        post = m.posterior(torch.randn(2, 1, 4, 4, generator=gen, dtype=torch.float64))
    prior = stats.norm(0, 1) if family == "gaussian" else stats.laplace(0, 1)
    rng = np.random.default_rng(0)
    for j in range(4):
        q = dist(post.mean[0, j].item(), post.var[0, j].item())
        z = q.rvs(400_000, random_state=rng)
        terms = q.logpdf(z) - prior.logpdf(z)
        assert abs(terms.mean() - post.kl[0, j].item()) < 5 * terms.std() / math.sqrt(len(z)) + 1e-9


def test_laplace_sampler_moments(gen):
    m = _model("laplace", gen, K=3)
    post = m.posterior(torch.randn(1, 1, 4, 4, generator=gen, dtype=torch.float64))
    big = post._replace(mean=post.mean.expand(200_000, 3), var=post.var.expand(200_000, 3))
    z = m.sample(big, 1.0, gen).detach().numpy()
    np.testing.assert_allclose(z.mean(0), post.mean[0].detach().numpy(), atol=5 * np.sqrt(post.var.max().item() / 2e5))
    np.testing.assert_allclose(z.var(0), post.var[0].detach().numpy(), rtol=0.03)


def test_categorical_kl_is_kl_to_uniform(gen):
    m = _model("categorical", gen, K=8)
    post = m.posterior(torch.randn(3, 1, 4, 4, generator=gen, dtype=torch.float64))
    p = post.mean.detach().numpy()
    expect = (p * np.log(p * 8)).sum(1)
    np.testing.assert_allclose(post.kl.sum(1).detach().numpy(), expect, rtol=1e-10)
    assert np.all(post.kl.sum(1).detach().numpy() <= math.log(8) + 1e-12)


def test_gumbel_softmax_limits(gen):
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)).expand(100_000, 4)
    hard = gumbel_softmax(logits, 0.0, gen)
    assert torch.all(hard.sum(1) == 1) and torch.all((hard == 0) | (hard == 1))
    freq = hard.mean(0).numpy()
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=5 * np.sqrt(0.25 / 1e5))  # exact Cat(p)
    cold = gumbel_softmax(logits[:2000], 0.01, gen)
    assert (cold.max(1).values > 0.99).float().mean() > 0.95  # low t: nearly one-hot
    hot = gumbel_softmax(logits[:2000], 100.0, gen)
    np.testing.assert_allclose(hot.numpy(), 0.25, atol=0.02)  # high t: nearly uniform
    st = gumbel_softmax(logits[:10].clone().requires_grad_(True), 0.5, gen, hard=True)
    assert torch.all(st.sum(1) == 1)


# the Poisson family's Monte Carlo training is the slowest (its relaxed sampler): its everyday cover is test_train's
@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f == "poisson" else f for f in FAMILIES])
def test_every_family_trains(family, small_patches):
    from spikevae.models.training import TrainConfig, fit

    res = fit(VAEConfig(family=family, n_latents=32, patch_size=8, prior_log_high=-2.0),
              TrainConfig(epochs=2, batch_size=200, lr=0.01, warmup_epochs=0.5), small_patches, progress=False)
    h = res.history
    assert all(np.isfinite(e["train_loss"]) for e in h)
    assert h[-1]["val"]["nelbo"] < h[0]["val"]["nelbo"] + 1e-6
    if family in ("gaussian", "laplace", "gaussian-relu"):
        assert all(e["temperature"] == 1.0 for e in h)  # no annealing for these families


def test_exact_objective_for_laplace_and_categorical(gen):
    """E_q ||x − Φz||² = ||x − Φ E[z]||² + Var[z]ᵀ diag(ΦᵀΦ) holds for these families too."""
    for family in ("laplace", "categorical"):
        m = _model(family, gen, K=5)
        x = torch.randn(2, 1, 4, 4, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            exact = m.loss(x, beta=0.0, method="exact").recon.item()
            post = m.posterior(x)
            R = 40_000
            big = post._replace(mean=post.mean.repeat(R, 1), var=post.var.repeat(R, 1),
                                features=post.features.repeat(R, 1))
            z = m.sample(big, 0.0 if family == "categorical" else 1.0, gen)
            err = (x.flatten(1).repeat(R, 1) - m.decode(z).flatten(1)).square().sum(1).view(R, 2).mean(1)
        assert abs(err.mean().item() - exact) < 5 * err.std().item() / math.sqrt(R)
