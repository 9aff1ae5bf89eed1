"""Spike statistics (Elephant) against numpy and Poisson theory; metabolic numbers by hand."""
import math

import numpy as np
import pytest

from spikevae.analysis import (
    PRESETS,
    EnergyModel,
    count_correlations,
    fano_factors,
    isi_cv,
    metabolic_table,
    noise_correlations,
    psth,
    unit_rates,
)
from spikevae.records import Presentations, SpikeTrains

RATE, K, N_STIM, REPEATS, WIN = 20.0, 12, 5, 40, 0.1


@pytest.fixture(scope="module")
def poisson_run():
    """Homogeneous Poisson trains from Elephant's generator (independent of our Brian2 layer)."""
    import quantities as pq
    from elephant.spike_train_generation import StationaryPoissonProcess

    n = N_STIM * REPEATS
    t_stop = n * WIN
    import numpy.random

    numpy.random.seed(7)  # elephant draws from numpy's global generator
    trains = StationaryPoissonProcess(RATE * pq.Hz, t_stop=t_stop * pq.s).generate_n_spiketrains(K)
    unit = np.concatenate([np.full(len(t), k) for k, t in enumerate(trains)])
    time = np.concatenate([t.rescale("s").magnitude for t in trains])
    order = np.lexsort((unit, time))
    on = np.arange(n) * WIN
    pres = Presentations(np.tile(np.arange(N_STIM), REPEATS), np.repeat(np.arange(REPEATS), N_STIM), on, on + WIN,
                         np.full((n, K), RATE * WIN))
    return SpikeTrains(unit[order], time[order], K, t_stop, 1e-9, pres)


def test_rates_match_numpy_and_theory(poisson_run):
    r = unit_rates(poisson_run)
    np.testing.assert_allclose(r, np.bincount(poisson_run.unit, minlength=K) / poisson_run.t_stop, rtol=1e-12)
    assert abs(r.mean() - RATE) < 4 * math.sqrt(RATE / poisson_run.t_stop / K)


def test_isi_cv_is_one(poisson_run):
    cv = isi_cv(poisson_run)
    t = poisson_run.trains()
    manual = np.array([np.std(np.diff(x)) / np.mean(np.diff(x)) for x in t])
    np.testing.assert_allclose(cv, manual, rtol=1e-10)
    n_isi = RATE * poisson_run.t_stop
    assert abs(cv.mean() - 1.0) < 4 / math.sqrt(n_isi * K)  # sd of one CV estimate ≈ 1/sqrt(n)


def test_fano_factor_per_unit_across_repeats(poisson_run):
    stims, fano = fano_factors(poisson_run)
    c = poisson_run.counts()
    manual = np.stack([c[poisson_run.presentations.stimulus == s].var(0, ddof=1)
                       / c[poisson_run.presentations.stimulus == s].mean(0) for s in stims])  # the sample variance
    np.testing.assert_allclose(fano, manual, rtol=1e-10)
    # one Fano factor from R repeats has sd ≈ sqrt(2/(R-1)); the mean of S·K of them
    assert abs(np.nanmean(fano) - 1.0) < 4 * math.sqrt(2 / (REPEATS - 1)) / math.sqrt(fano.size)


def test_independent_trains_are_uncorrelated(poisson_run):
    corr = count_correlations(poisson_run)
    c = poisson_run.counts()
    np.testing.assert_allclose(corr, np.corrcoef(c.T), atol=1e-10)  # Elephant binned == numpy counts
    off = corr[~np.eye(K, dtype=bool)]
    n = len(poisson_run.presentations)
    assert abs(off.mean()) < 4 / math.sqrt(n * off.size / 2)
    assert np.max(np.abs(off)) < 5 / math.sqrt(n)
    noise = noise_correlations(poisson_run)[~np.eye(K, dtype=bool)]
    assert abs(noise.mean()) < 4 / math.sqrt(n * noise.size / 2) and np.max(np.abs(noise)) < 5 / math.sqrt(n)


def test_noise_correlation_removes_shared_stimulus_drive():
    """Two units driven by the same stimulus-dependent rate: total correlation high, noise correlation ~0."""
    rng = np.random.default_rng(3)
    S, R = 20, 50
    lam_s = rng.uniform(0.5, 8, S)
    stim = np.tile(np.arange(S), R)
    counts = rng.poisson(np.stack([lam_s[stim], lam_s[stim]], 1))  # (S·R, 2), independent given the stimulus
    n = len(stim)
    on = np.arange(n) * 0.1
    unit = np.repeat(np.tile([0, 1], n), counts.ravel())
    time = np.repeat(np.repeat(on, 2), counts.ravel()) + 0.05
    order = np.lexsort((unit, time))
    st = SpikeTrains(unit[order], time[order], 2, n * 0.1, 1e-4,
                     Presentations(stim, np.repeat(np.arange(R), S), on, on + 0.1, lam_s[stim][:, None].repeat(2, 1)))
    assert count_correlations(st)[0, 1] > 0.3  # expected Var(λ)/(Var(λ) + E[λ]) ≈ 0.52
    assert abs(noise_correlations(st)[0, 1]) < 4 / math.sqrt(n)


def test_psth_is_flat_at_the_rate(poisson_run):
    edges, rate = psth(poisson_run, 0.02)
    assert len(edges) == 5
    n = len(poisson_run.presentations)
    assert abs(rate.mean() - RATE) < 4 * math.sqrt(RATE / (n * 0.02 * rate.size))
    rel = (poisson_run.time % WIN)
    manual = np.histogram(rel, bins=np.arange(6) * 0.02)[0] / (n * 0.02 * K)
    np.testing.assert_allclose(rate.mean(1), manual, rtol=1e-10)


def test_metabolic_numbers_by_hand():
    r = np.array([0.5, 1.0, 2.0])
    lam = np.array([[0.5, 0.0, 2 * math.e], [1.0, 1.0, 2.0]])  # KL: 0, r = 1, r(1 - e + e) = 2 | 0.5·f(2), 0, 0
    on = np.array([0.0, 0.2])
    pres = Presentations(np.array([0, 1]), np.array([0, 0]), on, on + 0.1, lam)
    st = SpikeTrains(np.array([0, 2, 2, 1]), np.array([0.01, 0.02, 0.05, 0.21]), 3, 0.3, 1e-4, pres)
    e = EnergyModel(atp_per_spike=1e9, resting_atp_per_s=2e8)
    t = metabolic_table(st, prior=r, energy=e)
    np.testing.assert_allclose(t["emitted_spikes"], [3, 1])
    np.testing.assert_allclose(t["expected_spikes"], [0.5 + 2 * math.e, 4.0])
    f2 = 1 - 2 + 2 * math.log(2)
    np.testing.assert_allclose(t["kl_nats"], [0 + 1.0 + 2.0, 0.5 * f2], rtol=1e-12)
    np.testing.assert_allclose(t["kl_bits"], t["kl_nats"] / math.log(2))
    np.testing.assert_allclose(t["bits_per_spike"], t["kl_bits"] / t["expected_spikes"])
    assert t["mean"]["bits_per_spike"] == pytest.approx(t["kl_bits"].sum() / t["expected_spikes"].sum(), rel=1e-12)
    np.testing.assert_allclose(t["atp"], [3e9 + 3 * 0.1 * 2e8, 1e9 + 3 * 0.1 * 2e8])
    np.testing.assert_allclose(t["fraction_active"], [2 / 3, 1 / 3])
    assert PRESETS["lennie2003"].atp_per_spike == 2.4e9


def test_histograms_of_constant_or_empty_values():
    """A silent model gives (nearly) constant per-presentation values: one bar, every value counted."""
    from spikevae import plots

    fig = plots.histograms({"constant": np.full(12, 0.1) + np.arange(12) * 1e-17, "empty": [], "nan": [np.nan, 3.0]})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert sum(heights) == 12 and max(heights) == 12
    assert sum(p.get_height() for p in fig.axes[2].patches) == 1


@pytest.mark.parametrize("bin_size", [1e-300, 1e300, float("nan")])
def test_psth_bin_outside_step_and_span_is_refused(bin_size):
    from spikevae.analysis import psth
    from spikevae.errors import ArgumentError
    from spikevae.spikes import simulate_spikes

    st = simulate_spikes(np.full((4, 3), 2.0), window=0.05, dt=1e-3, target="numpy", seed=1)
    with pytest.raises(ArgumentError, match="PSTH bin must lie between the time step"):
        psth(st, bin_size)
    t, rate = psth(st, 0.01)  # a bin between them is fine
    assert len(t) == 5 and rate.shape == (5, 3)
