"""The biologically grounded spike layer against closed forms: expected counts, ISI laws, Fano factors, PSTH."""
import numpy as np
import pytest
from scipy import stats

from spikevae.errors import ArgumentError
from spikevae.spikes import PoissonLayerConfig, simulate_poisson
from spikevae.spikes.spike_model import PRESETS, SpikeModel, transient_kernel


def _run(lam, model, window=0.05, gap=0.0, dt=5e-4, seed=0, target="numpy", chunk=2000):
    cfg = PoissonLayerConfig(window=window, gap=gap, dt=dt, target=target, chunk=chunk, spikes=model)
    return simulate_poisson(lam, cfg, seed=seed)


def _isis(st):
    return np.concatenate([np.diff(t) for t in st.trains() if len(t) > 1])


COMBOS = {
    "refractory": SpikeModel(refractory=0.002),
    "latency+transient": SpikeModel(latency=0.020, transient_ratio=3.0, transient_tau=0.010),
    "spontaneous": SpikeModel(spontaneous_hz=5.0),
    "gamma-3": SpikeModel(gamma_order=3),
    "shared-gain": SpikeModel(gain_cv=0.3),
    "gain-hz": SpikeModel(rate_scale="gain", gain_hz=30.0),
    "everything": SpikeModel(spontaneous_hz=2.0, latency=0.010, transient_ratio=2.0, transient_tau=0.010,
                             refractory=0.002, gamma_order=2, gain_cv=0.2),
}


#: in the everyday run: all of them together; each option alone runs with ``-m slow`` (a few seconds each)
DEFAULT_COMBOS = ("everything",)


@pytest.mark.parametrize("name", [n if n in DEFAULT_COMBOS else pytest.param(n, marks=pytest.mark.slow) for n in COMBOS])
def test_expected_counts_per_window_are_kept(name):
    """Σ counts over 1,000 (presentation, unit) windows equals Σ expected within 4 s.d. (Poisson + shared gain)."""
    model = COMBOS[name]
    lam = np.random.default_rng(1).uniform(0.5, 4.0, (100, 10))
    st = _run(lam, model, gap=0.01)
    c, e = st.counts(), st.presentations.expected
    if model.rate_scale == "gain":  # the recorded expected counts are the closed form
        np.testing.assert_allclose(e, lam * 30.0 * 0.05)
    elif model.gain_cv:
        g = (e - model.spontaneous_hz * 0.05) / lam  # one gain per presentation, mean 1, s.d. gain_cv
        np.testing.assert_allclose(g, g[:, :1] * np.ones((1, 10)), rtol=1e-12)
        assert abs(g[:, 0].mean() - 1) < 4 * model.gain_cv / np.sqrt(100)
    else:
        np.testing.assert_allclose(e, lam + model.spontaneous_hz * 0.05, rtol=1e-12)
    tot = e.sum(1)  # per presentation; a shared gain correlates the units of one presentation
    sd = np.sqrt(tot.sum() + model.gain_cv**2 * (tot**2).sum())
    assert abs(c.sum() - e.sum()) < 4 * sd, (c.sum(), e.sum(), sd)


def _mean_count_z(rate, model, dt, spikes, window=0.1, units=1000, seed=0):
    """z score of the mean count per window against λ = rate·window, over windows holding ``spikes`` in all."""
    n = max(2, int(spikes / (rate * window * units)))
    c = _run(np.full((n, units), rate * window), model, window=window, gap=0.02, dt=dt, seed=seed,
             target="cython").counts()
    return (c.mean() - rate * window) / (c.std(ddof=1) / np.sqrt(c.size)), c.sum()


SPIKE_OPTIONS = {"refractory": SpikeModel(refractory=0.002), "gamma-3": SpikeModel(gamma_order=3)}


@pytest.mark.parametrize("dt", [1e-4, 2.5e-4])
@pytest.mark.parametrize("rate", [5.0, 50.0, 100.0, 200.0, 300.0])
@pytest.mark.parametrize("option", list(SPIKE_OPTIONS))
@pytest.mark.slow
def test_every_spike_option_keeps_expected_counts(option, rate, dt):
    """10⁶ spikes (2.5·10⁵ at 5 Hz, where the refractory excess (ν·τ)²/2 of an uncorrected start is 5·10⁻⁵
    spikes a window): the mean count per 100-ms window within 3 s.e. of λ, each window starting from rest."""
    z, n = _mean_count_z(rate, SPIKE_OPTIONS[option], dt, 2.5e5 if rate < 10 else 1e6)
    assert abs(z) < 3, (z, n)


def test_refractory_counts_are_kept_at_300_hz_from_the_window_onset():
    """The dead-time correction looks back on the rates asked for, so a window that starts from rest gets no
    excess: 300 Hz, 2 ms, dt 0.25 ms, 2·10⁵ spikes, the mean within 3 s.e. of λ (the stationary correction
    alone gives +0.5 %, 5 s.e. here), and without the correction the stationary dead-time rate."""
    z, _ = _mean_count_z(300.0, SpikeModel(refractory=0.002), 2.5e-4, 2e5, units=200)
    assert abs(z) < 3, z
    c = _run(np.full((40, 200), 30.0), SpikeModel(refractory=0.002, correct_refractory=False), window=0.1,
             gap=0.02, dt=2.5e-4, target="cython").counts()
    nu = 300.0 / (1 + 300.0 * (0.002 - 2.5e-4))  # (r − 1) dead steps after each spike, from rest at onset
    assert abs(c.mean() / 0.1 - nu) < 0.02 * nu, c.mean()


@pytest.mark.slow
def test_refractory_psth_follows_the_rate_asked_for_from_the_onset():
    """Per 1-ms bin, with an onset transient, latency, gaps and a spontaneous rate: the spike rate is the one
    asked for at every step (k = 1), so the PSTH matches the schedule right after each onset, where a
    stationary correction overshoots by the drive's ν/(1 − ντ) (about +60 % here). χ² with Poisson variance
    (conservative: refractory counts are sub-Poisson)."""
    model = SpikeModel(refractory=0.003, spontaneous_hz=5.0, latency=0.010, transient_ratio=3.0,
                       transient_tau=0.010, kernel_dt=0.005)
    W, gap, n, K = 0.05, 0.03, 60, 1000
    st = _run(np.full((n, K), 150.0 * W), model, window=W, gap=gap, dt=1e-4, target="cython")
    rel = st.time - np.floor(st.time / (W + gap) + 1e-9) * (W + gap)
    obs = np.bincount(np.floor(rel / 0.001 + 1e-9).astype(int), minlength=80)[:80]
    hz = np.full(80, 5.0)
    hz[10:60] += 150.0 * np.repeat(transient_kernel(W, model), 5)  # the kernel's 5-ms bins from 10 ms on
    exp = hz * 0.001 * n * K
    exp[:10] *= (n + 1) / n  # the run ends one latency after the last period: one more latency of spontaneous
    chi2 = ((obs - exp) ** 2 / exp).sum()
    assert stats.chi2.sf(chi2, 80) > 1e-3, np.round((obs - exp) / np.sqrt(exp), 1)


def test_refractory_isis_are_a_shifted_exponential():
    """No interval below the refractory period; the rest Exp(ν_in) shifted by it (K–S)."""
    tau, rate, dt = 0.002, 100.0, 2e-5
    lam = np.full((1, 40), rate * 1.0)  # one 1-s window at 100 Hz
    st = _run(lam, SpikeModel(refractory=tau), window=1.0, dt=dt, target="cython")
    isi = _isis(st)
    assert isi.min() >= tau - 1e-12  # zero violations
    nu_in = rate / (1 - rate * (tau - dt))  # the corrected drive
    d, p = stats.kstest(isi - tau, "expon", args=(0, 1 / nu_in))
    assert p > 1e-3, (d, p, len(isi))
    assert abs(len(st.time) / 40 - rate) < 4 * np.sqrt(rate / 40)  # the rate asked for, not the drive


@pytest.mark.slow
def test_gamma_renewal_isis_and_fano():
    k, rate = 3, 50.0
    st = _run(np.full((1, 40), rate * 1.0), SpikeModel(gamma_order=k), window=1.0, dt=5e-5, target="cython")
    isi = _isis(st)
    d, p = stats.kstest(isi, "gamma", args=(k, 0, 1 / (k * rate)))
    assert p > 1e-3, (d, p, len(isi))
    # counts in long windows: Fano → CV² = 1/k
    lam = np.full((100, 50), 20.0)  # 100 windows of 0.4 s at 50 Hz
    c = _run(lam, SpikeModel(gamma_order=k), window=0.4, dt=1e-3, target="cython").counts()
    fano = c.var(0, ddof=1) / c.mean(0)
    assert abs(fano.mean() - 1 / k) < 0.1, fano.mean()


def test_shared_gain_fano_is_one_plus_lambda_var():
    sd_g, lam0 = 0.5, 3.0
    lam = np.full((2000, 20), lam0)
    c = _run(lam, SpikeModel(gain_cv=sd_g), window=0.02, dt=1e-3, target="cython").counts()
    # exact law of the Bernoulli steps (20 per window, p = gλ0/20): Var(c | g) = gλ0 (1 − gλ0/20), so
    # Var(c) = λ0²σ² + λ0 − λ0²(1 + σ²)/20 and Cov(c_i, c_j) = λ0²σ² (→ 1 + λ0σ² as dt → 0)
    shared = lam0**2 * sd_g**2
    var = shared + lam0 - lam0**2 * (1 + sd_g**2) / 20
    fano = (c.var(0, ddof=1) / c.mean(0)).mean()
    assert abs(fano - var / lam0) < 0.15, fano
    r = np.corrcoef(c.T)[np.triu_indices(20, 1)].mean()  # shared gain → positive noise correlations
    assert abs(r - shared / var) < 0.05, r


@pytest.mark.slow
def test_psth_recovers_latency_and_transient():
    """Trial-averaged counts in 5-ms bins against the kernel placed at the latency (χ²)."""
    model = SpikeModel(latency=0.030, transient_ratio=4.0, transient_tau=0.015, kernel_dt=0.005)
    W, gap = 0.1, 0.1
    lam = np.full((150, 20), 4.0)
    st = _run(lam, model, window=W, gap=gap, dt=1e-3)
    rel = st.time - np.floor(st.time / (W + gap) + 1e-9) * (W + gap)  # time after the last stimulus onset
    obs = np.bincount(np.floor(rel / 0.005 + 1e-9).astype(int), minlength=40)[:40]
    exp = np.zeros(40)
    exp[6:26] = 4.0 / 20 * transient_kernel(W, model) * 150 * 20  # 20 bins of the response from 30 ms on
    assert obs[:6].sum() == 0 and obs[26:].sum() == 0  # nothing before the latency or after the response
    chi2 = ((obs[6:26] - exp[6:26]) ** 2 / exp[6:26]).sum()
    assert stats.chi2.sf(chi2, 20) > 1e-3, (obs[6:26], exp[6:26])
    assert obs[6] > 2.5 * obs[25]  # the onset transient is there


@pytest.mark.parametrize("model,targets", [(COMBOS["refractory"], ("numpy", "cpp_standalone")),
                                           (COMBOS["everything"], ("numpy", "cython"))],
                         ids=["poisson-refractory", "gamma"])
@pytest.mark.slow
def test_same_seed_same_spikes_on_every_target(model, targets):
    """Each new code path on the numpy target and a compiled one (a C++ build costs ~15 s per chunk)."""
    lam = np.random.default_rng(3).uniform(0.5, 3.0, (30, 6))
    runs = [_run(lam, model, gap=0.01, target=t, seed=4) for t in targets]
    for r in runs[1:]:
        np.testing.assert_array_equal(r.unit, runs[0].unit)
        np.testing.assert_array_equal(r.time, runs[0].time)


@pytest.mark.slow
def test_renewal_state_carried_across_chunks_on_cpp_standalone(tmp_path):
    """The compiled renewal network continues a chunk from the state the last one left (run-time values)."""
    lam = np.random.default_rng(5).uniform(0.5, 3.0, (30, 6))
    ref = _run(lam, COMBOS["everything"], gap=0.01, seed=4)
    cfg = PoissonLayerConfig(window=0.05, gap=0.01, dt=5e-4, target="cpp_standalone", chunk=7,
                             spikes=COMBOS["everything"])
    run = simulate_poisson(lam, cfg, seed=4, build_dir=tmp_path)
    np.testing.assert_array_equal(run.unit, ref.unit)
    np.testing.assert_array_equal(run.time, ref.time)


def test_unreachable_rate_under_refractoriness_is_reported():
    st = _run(np.full((2, 3), 30.0), SpikeModel(refractory=0.005), window=0.05, dt=5e-4)  # 600 Hz, 5 ms dead
    assert any("cannot be reached" in n for n in st.meta["notes"])


@pytest.mark.parametrize("kwargs,msg", [
    ({"rate_scale": "gain"}, "needs gain_hz > 0"),
    ({"gamma_order": 0}, "gamma_order"),
    ({"refractory": -1.0}, "refractory"),
    ({"spontaneous_hz": float("nan")}, "finite"),
])
def test_bad_spike_model_is_refused(kwargs, msg):
    with pytest.raises(ArgumentError, match=msg):
        SpikeModel(**kwargs).validate()


def test_cortex_preset_is_valid():
    assert PRESETS["cortex"].validate().refractory == 0.002 and PRESETS["poisson"].is_plain


@pytest.mark.slow
def test_simulate_options_and_script(tmp_path, tiny_checkpoint, capsys):
    """The options reach the layer, the summary states the time base, and counts keep their expectation."""
    import json

    from conftest import load_script, run_cli

    from spikevae.cli.simulate import main

    out = tmp_path / "run"
    assert run_cli(main, ["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--n-stimuli", "30",
                          "--repeats", "4", "--window", "50", "--gap", "20", "--dt", "0.5", "--target", "numpy",
                          "--quiet", "--no-neo", "--gain-hz", "40", "--spontaneous", "3", "--refractory", "2",
                          "--latency", "10"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["hz_per_lambda"] == 40.0 and s["response_latency_s"] == pytest.approx(0.010)
    assert s["spike_model"]["refractory"] == pytest.approx(0.002)
    sd = np.sqrt(s["expected_spikes"])
    assert abs(s["n_spikes_in_windows"] - s["expected_spikes"]) < 4 * sd
    assert run_cli(main, ["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--gain-hz", "4",
                          "--target-rate", "3"]) == 2
    assert "at most one of --gain-hz and --target-rate" in capsys.readouterr().err
    gen = load_script("simulations/spike_generation.py")
    assert gen.main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "gen"), "--stimuli", "6",
                     "--repeats", "3", "--target", "numpy", "--dt", "1", "--quiet"]) == 0
    rows = json.loads((tmp_path / "gen" / "summary.json").read_text())["layers"]
    assert rows["cortex"]["min_isi_ms"] is None or rows["cortex"]["min_isi_ms"] >= 2.0 - 1e-9
    assert rows["cortex"]["mean_rate_in_windows_hz"] > rows["poisson"]["mean_rate_in_windows_hz"]
    assert (tmp_path / "gen" / "figures" / "spike_generation.png").stat().st_size > 10_000
