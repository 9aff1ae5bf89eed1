"""VAE architectures and objectives."""
import numpy as np
import pytest
import torch

from spikevae.models.vae import VAE, VAEConfig


@pytest.mark.parametrize("family", ["poisson", "gaussian"])
@pytest.mark.parametrize("arch", ["lin|lin", "conv|lin", "mlp|lin", "lin|conv", "conv|conv"])
def test_shapes_and_finite_loss(family, arch, gen):
    enc, dec = arch.split("|")
    m = VAE(VAEConfig(family=family, n_latents=10, patch_size=16, encoder=enc, decoder=dec, n_channels=8), gen)
    x = torch.randn(5, 1, 16, 16, generator=gen)
    post = m.posterior(x)
    assert post.mean.shape == post.kl.shape == (5, 10)
    assert m.decode(post.mean).shape == (5, 1, 16, 16)
    terms = m.loss(x, beta=1.0, temperature=0.5, method="mc", generator=gen)
    assert torch.isfinite(terms.loss)
    terms.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters() if p.requires_grad)


def test_default_model_matches_reference_shape():
    m = VAE(VAEConfig())
    n = sum(p.numel() for p in m.parameters())
    assert n == 262_656  # reference lin|lin P-VAE parameter count (anchor §1.4)
    assert m.encoder[-1].bias is None and m.decoder.bias is None


def test_rates_are_prior_times_delta(gen):
    m = VAE(VAEConfig(n_latents=6, patch_size=4), gen)
    x = torch.randn(3, 1, 4, 4, generator=gen) * 0.1
    post = m.posterior(x)
    expected = torch.exp(m.log_r + post.features)  # far below both soft clamps: λ ≈ r·δr
    torch.testing.assert_close(post.mean, expected, rtol=1e-4, atol=1e-6)


def test_rate_clamps_are_soft_upper_bounds(gen):
    m = VAE(VAEConfig(n_latents=4, patch_size=4), gen)
    with torch.no_grad():
        m.encoder[-1].weight.fill_(50.0)
        m.log_r.fill_(5.0)
    post = m.posterior(torch.ones(2, 1, 4, 4))
    assert post.features.max() <= 10.0 and post.mean.max() <= np.exp(5.3) + 1e-3


def test_exact_objective_is_expectation_of_mc(gen):
    """E_q ||x - Φz||² (Poisson z, t = 0) equals ||x - Φλ||² + λᵀ diag(ΦᵀΦ)."""
    m = VAE(VAEConfig(n_latents=16, patch_size=4), gen).double()
    with torch.no_grad():
        m.log_r.fill_(0.0)
        m.decoder.weight.normal_(0, 0.5, generator=gen)
    x = torch.randn(3, 1, 4, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        exact = m.loss(x, beta=0.0, method="exact").recon.item()
        post = m.posterior(x)
        R = 20_000
        z = torch.poisson(post.mean.expand(R, *post.mean.shape), generator=gen)  # (R, 3, K)
        err = (x.flatten(1) - z @ m.decoder.weight.T).square().sum(-1).mean(-1)  # (R,)
    assert abs(err.mean().item() - exact) < 5 * err.std().item() / np.sqrt(R)


def test_gaussian_kl_closed_form(gen):
    m = VAE(VAEConfig(family="gaussian", n_latents=3, patch_size=4), gen)
    post = m.posterior(torch.randn(2, 1, 4, 4, generator=gen))
    mu, var = post.mean.detach().numpy(), post.var.detach().numpy()
    from scipy import integrate, stats

    for j in range(3):
        q = stats.norm(mu[0, j], np.sqrt(var[0, j]))
        f = lambda z: q.pdf(z) * (q.logpdf(z) - stats.norm.logpdf(z))  # noqa: E731
        val, _ = integrate.quad(f, mu[0, j] - 12 * np.sqrt(var[0, j]), mu[0, j] + 12 * np.sqrt(var[0, j]))
        assert post.kl[0, j].item() == pytest.approx(val, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("kwargs,match", [
    ({"n_latents": 0}, "n_latents"), ({"family": "beta"}, "family"), ({"encoder": "rnn"}, "encoder"),
    ({"decoder": "conv", "patch_size": 12}, "power-of-two"),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAEConfig(**kwargs).validate()


def test_exact_needs_linear_decoder(gen):
    m = VAE(VAEConfig(n_latents=4, patch_size=4, decoder="conv", n_channels=4), gen)
    with pytest.raises(ValueError, match="linear decoder"):
        m.loss(torch.zeros(1, 1, 4, 4), method="exact")
