"""Receptive fields: STA (against elephant.sta and a planted Gabor through the spiking pipeline),
grating tuning and OSI, Gabor fits on noisy synthetic Gabors."""
import math

import numpy as np
import pytest
import torch

from spikevae.analysis.receptive_fields import fit_gabor, gabor, grating_tuning, sta


def test_sta_matches_elephant():
    import neo
    import quantities as pq
    from elephant.sta import spike_triggered_average

    rng = np.random.default_rng(0)
    n, P, win = 40, 3, 0.01
    x = rng.standard_normal((n, P, P))
    counts = rng.poisson(1.0, (n, 1))
    times = np.concatenate([k * win + np.sort(rng.uniform(0.001, 0.009, c)) for k, c in enumerate(counts[:, 0])])
    # frames as a signal sampled once per frame, plus a blank sample so the last frame's spikes count
    sig = neo.AnalogSignal(np.vstack([x.reshape(n, -1), np.zeros((1, P * P))]), units="dimensionless",
                           sampling_period=win * pq.s)
    ref = spike_triggered_average(sig, neo.SpikeTrain(times * pq.s, t_stop=n * win * pq.s),
                                  window=(0 * pq.s, win * pq.s))
    np.testing.assert_allclose(sta(x, counts)[0].ravel(), np.asarray(ref)[0], rtol=1e-12)


def test_planted_gabor_recovered_through_the_spiking_pipeline():
    """Encoder filter = a known Gabor; white noise -> λ -> Brian2 spikes -> STA -> Gabor fit."""
    from spikevae.models.vae import VAE, VAEConfig
    from spikevae.spikes import PoissonLayerConfig, simulate_poisson

    P = 16
    true = dict(x0=7.3, y0=8.1, theta=0.6, f=0.15, phase=0.4, sx=2.2, sy=3.0)
    filt = gabor((P, P), **true)
    filt /= np.linalg.norm(filt)
    model = VAE(VAEConfig(n_latents=2, patch_size=P), torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        model.encoder[-1].weight.zero_()
        model.encoder[-1].weight[0] = torch.as_tensor(filt.ravel())
        model.log_r.fill_(math.log(2.0))  # λ = 2·exp(w·x): about 2 spikes per frame at w·x = 0
    rng = np.random.default_rng(1)
    frames = rng.standard_normal((6000, P, P))
    with torch.no_grad():
        lam = model.posterior(torch.as_tensor(frames).unsqueeze(1)).mean.numpy()
    cfg = PoissonLayerConfig(window=0.005, dt=1e-3, target="cython", chunk=6000)
    run = simulate_poisson(lam, cfg, seed=2)
    counts = run.counts()
    est = sta(frames, counts)[0]
    corr = np.corrcoef(est.ravel(), filt.ravel())[0, 1]
    assert corr >= 0.9, corr
    fit = fit_gabor(est)
    d_theta = abs((fit.theta - true["theta"] + np.pi / 2) % np.pi - np.pi / 2)
    assert d_theta < math.radians(8), fit
    assert abs(fit.frequency - true["f"]) < 0.15 * true["f"], fit
    assert math.hypot(fit.x0 - true["x0"], fit.y0 - true["y0"]) < 0.8, fit


@pytest.mark.parametrize("seed", range(4))
def test_gabor_fit_on_noisy_synthetic_gabors(seed):
    rng = np.random.default_rng(seed)
    p = dict(x0=rng.uniform(5, 10), y0=rng.uniform(5, 10), theta=rng.uniform(0, np.pi), f=rng.uniform(0.1, 0.25),
             phase=rng.uniform(0, 2 * np.pi), sx=rng.uniform(1.5, 3), sy=rng.uniform(1.5, 4))
    img = gabor((16, 16), **p) + 0.05 * rng.standard_normal((16, 16))
    fit = fit_gabor(img)
    d_theta = abs((fit.theta - p["theta"] + np.pi / 2) % np.pi - np.pi / 2)
    assert fit.r2 > 0.9 and d_theta < math.radians(5), (p, fit)
    assert abs(fit.frequency - p["f"]) < 0.1 * p["f"], (p, fit)
    assert math.hypot(fit.x0 - p["x0"], fit.y0 - p["y0"]) < 0.5, (p, fit)
    assert fit.nx == pytest.approx(fit.sigma_x * fit.frequency)


def test_osi_tuned_and_untuned():
    oris = np.repeat(np.arange(8) * np.pi / 8, 3)
    freqs = np.tile([0.1, 0.2, 0.3], 8)
    tuned = np.where((oris == 2 * np.pi / 8) & (freqs == 0.2), 5.0, 0.0)
    untuned = np.ones_like(oris)
    t = grating_tuning(np.stack([tuned, untuned], 1), oris, freqs)
    assert t.osi[0] == pytest.approx(1.0) and t.osi[1] == pytest.approx(0.0, abs=1e-12)
    assert t.preferred_orientation[0] == pytest.approx(2 * np.pi / 8) and t.preferred_frequency[0] == 0.2


def test_gabor_jacobian_matches_central_differences():
    from spikevae.analysis.receptive_fields import _gabor_jacobian

    p = np.array([7.3, 8.1, 0.6, 0.15, 0.4, 2.2, 3.0, 1.3])
    num = np.stack([(gabor((16, 16), *(p + e)) - gabor((16, 16), *(p - e))).ravel() / 2e-6 for e in np.eye(8) * 1e-6], 1)
    np.testing.assert_allclose(_gabor_jacobian(p, (16, 16)), num, atol=1e-7)


def test_sta_snr_noise_floor_and_growth():
    """Pure noise: the STA's peak is the median max of P² half-normal pixels (closed form) in noise s.d.; a planted
    linear-Poisson unit's signal part grows as √frames (once it stands above the floor: SNR ≳ 4), so frames_for_snr
    predicts the frames a target needs."""
    from spikevae.analysis.receptive_fields import _noise_peak, frames_for_snr, sta_snr

    rng = np.random.default_rng(0)
    P = 16
    x = rng.standard_normal((4000, P, P))
    null = sta_snr(x, rng.poisson(2.0, (4000, 200)).astype(float))
    assert np.median(null) == pytest.approx(_noise_peak(P * P), rel=0.05)  # 3.00 for 256 pixels
    rf = gabor((P, P), 7.5, 7.5, 0.3, 0.15, 0.0, 2.5, 3.0)
    rf /= np.linalg.norm(rf)

    def snr(n):
        xs = rng.standard_normal((n, P, P))
        lam = np.exp(-0.5 + 0.3 * (xs.reshape(n, -1) @ rf.ravel()))[:, None]
        return float(np.median(sta_snr(xs, rng.poisson(np.repeat(lam, 64, 1)).astype(float))))

    s1, s4 = snr(2000), snr(8000)
    floor = _noise_peak(P * P)
    ratio = np.sqrt(s4**2 - floor**2) / np.sqrt(s1**2 - floor**2)
    assert ratio == pytest.approx(2.0, rel=0.15)  # signal ∝ √frames
    assert frames_for_snr(2000, s1, P * P, target=s4) == pytest.approx(8000, rel=0.3)
    # at the noise peak nothing can be extrapolated: no number instead of an absurd one
    assert frames_for_snr(1000, floor, P * P) is None and frames_for_snr(1000, 1.02 * floor, P * P) is None


def test_a_mapping_picks_a_step_that_does_not_under_disperse():
    """By default a P-VAE mapping runs each protocol at the largest step <= 0.25 ms that keeps rate·dt <= 0.05: the
    peak rate decides it (closed form), and a fixed --dt is kept as given."""
    from spikevae.spikes import PoissonLayerConfig
    from spikevae.spikes.config import fitting_dt
    from spikevae.workflows.rf_mapping import RF_DT, rf_producer

    cfg = PoissonLayerConfig(window=0.05, dt=RF_DT)
    assert fitting_dt(100.0, cfg) == RF_DT  # 100 Hz x 0.25 ms = 0.025
    assert fitting_dt(595.0, cfg) == pytest.approx(RF_DT / 3)  # 0.149 -> three steps of 0.0833 ms: 0.0496
    assert fitting_dt(600.0, cfg) == pytest.approx(RF_DT / 3) and fitting_dt(601.0, cfg) == pytest.approx(RF_DT / 4)
    auto, fixed = rf_producer(), rf_producer(dt=RF_DT)
    lam = np.array([[0.1, 29.75]])  # 595 Hz in a 50 ms frame
    assert auto.layer_for(lam).dt == pytest.approx(RF_DT / 3) and fixed.layer_for(lam).dt == RF_DT
    steps = auto.layer_for(lam).steps(0.05, "window")  # still divides the frame
    assert steps == 600
