"""The V1 property battery: each property against a closed form, and planted units (a Gabor with an exponential
output, a quadrature energy unit) recovered through the Brian2 spiking path within stated tolerances."""
import math

import numpy as np
import pytest

from spikevae.analysis import v1
from spikevae.analysis.v1_reference import V1_DATA, ceiling, ks_binned, score, similarity, synthetic_sample
from spikevae.spikes import PoissonLayerConfig


def test_orientation_properties_of_a_von_mises_curve():
    """r(θ) = exp(κ(cos 2(θ − θ0) − 1)): half-width at 1/√2 is ½·arccos(1 − ln2/(2κ)), CV = 1 − I1(κ)/I0(κ),
    orthogonal/preferred = e^{−2κ}."""
    from scipy.special import i0, i1

    th = np.arange(16) * np.pi / 16
    for kappa in (1.0, 2.0, 3.0):
        r = np.exp(kappa * (np.cos(2 * (th - 0.5)) - 1))
        cv, pref = v1.circular_variance(r, th)
        assert cv[0] == pytest.approx(1 - i1(kappa) / i0(kappa), abs=1e-6) and pref[0] == pytest.approx(0.5, abs=1e-9)
        hw = math.degrees(math.acos(1 - math.log(2) / (2 * kappa)) / 2)
        assert v1.orientation_bandwidth(r, th)[0] == pytest.approx(hw, rel=0.01)
        assert v1.orthogonal_preferred_ratio(r, th)[0] == pytest.approx(math.exp(-2 * kappa), rel=0.02, abs=1e-3)
    flat = np.ones((1, 16))
    assert v1.circular_variance(flat, th)[0][0] == pytest.approx(1.0) and np.isnan(v1.orientation_bandwidth(flat, th)[0])


def test_sf_size_phase_and_overlap_against_closed_forms():
    f = np.geomspace(0.025, 0.45, 12)
    s = 0.6  # log-Gaussian in octaves: 1/√2 of the peak at ±s·√(ln 2) octaves
    out = v1.sf_tuning(np.exp(-np.log2(f / 0.12) ** 2 / (2 * s**2)), f)
    assert out["peak"][0] == pytest.approx(0.12, rel=0.01) and out["selective"][0]
    bw = 2 * s * math.sqrt(math.log(2))
    assert out["bandwidth_octaves"][0] == pytest.approx(bw, rel=0.01)
    assert out["bandwidth_schiller"][0] == pytest.approx(100 * 2**-bw, rel=0.01)
    low_pass = v1.sf_tuning(1 / (1 + f / 0.05), f)
    assert not low_pass["selective"][0] and np.isnan(low_pass["bandwidth_octaves"][0])
    st = v1.size_tuning([[1, 2, 3, 3, 3], [1, 3, 2, 1.5, 1]], [1, 2, 4, 8, 16])
    np.testing.assert_allclose(st["ssi"], [0, 2 / 3])
    np.testing.assert_allclose(st["gsf"], [2 + 2 * 0.85, 1 + 1.85 / 2])  # 95 % of the peak, interpolated
    ph = np.arange(64) * 2 * np.pi / 64
    assert v1.modulation_ratio(np.clip(np.cos(ph), 0, None))[()] == pytest.approx(np.pi / 2, rel=1e-3)
    assert v1.modulation_ratio(np.ones(8))[()] == pytest.approx(0, abs=1e-12)
    # two Gaussian subfields of s.d. 1 px, d px apart along x: OI = (2 − d)/(2 + d)
    yy, xx = np.mgrid[0:32, 0:32]
    blob = lambda x0: np.exp(-((xx - x0) ** 2 + (yy - 16) ** 2) / 2)  # noqa: E731
    for d in (0.0, 2.0, 6.0):
        oi = v1.on_off_overlap(blob(13 + d / 2)[None], blob(13 - d / 2)[None])[0]
        assert oi == pytest.approx((2 - d) / (2 + d), abs=0.03), d


def test_v1_reference_tables_and_ks_distance():
    ssi = V1_DATA["ssi"]
    assert ssi.n == 190 and V1_DATA["gsf_deg"].n == 148 and V1_DATA["sf_selective"].n == 87
    assert V1_DATA["peak_sf_cpd"].n == 148 + 84 + 78 + 53  # De Valois 1982: four cell classes, summed by hand
    for d in V1_DATA.values():
        assert len(d.edges) == len(d.counts) + 1 and np.all(np.diff(d.edges) > 0)
    rng = np.random.default_rng(0)  # a sample drawn from the histogram itself is close; a shifted one is not
    sample = np.concatenate([rng.uniform(a, b, c * 20) for a, b, c in zip(ssi.edges, ssi.edges[1:], ssi.counts)])
    assert ks_binned(sample, ssi) < 0.02 and ks_binned(sample + 0.5, ssi) > 0.3
    assert ssi.median() == pytest.approx(0.2 + 0.2 * (95 - 66) / 44)


#: the ceilings the Brain-Score V1 property benchmarks (Marques et al. 2021) assert for these histograms (±0.005)
BRAIN_SCORE_CEILINGS = {"preferred_orientation_deg": 0.962, "peak_sf_cpd": 0.967, "sf_selective": 0.963,
                        "sf_bandwidth_schiller": 0.933, "ssi": 0.958, "gsf_deg": 0.956}


@pytest.mark.parametrize("key", list(BRAIN_SCORE_CEILINGS))
def test_ceilings_match_the_brain_score_benchmarks(key):
    """Our bootstrap of V1's own values (1,000 resamples at V1's sample size, NaN rows included) against the
    ceilings the benchmarks' tests assert, computed there with another random stream."""
    assert ceiling(V1_DATA[key]) == pytest.approx(BRAIN_SCORE_CEILINGS[key], abs=0.005)


def test_similarity_and_score_against_closed_forms():
    ssi = V1_DATA["ssi"]
    ref = np.cumsum(ssi.counts)[:-1] / ssi.n
    d_max = max(ref.max(), (1 - ref).max())  # the all-in-the-last-bin extreme: the data's CDF at its first edge
    assert similarity(np.full(50, 1.9), ssi) == pytest.approx(1 - ref.max() / d_max)
    assert similarity(np.full(50, -3.0), ssi) == pytest.approx(1 - (1 - ref).max() / d_max)  # clipped into bin 1
    two = np.r_[np.full(66, 0.1), np.full(124, 0.3)]  # bin 1 right, bins 2-10 all in bin 2: D = CDF gap at edge 2
    assert similarity(two, ssi) == pytest.approx(1 - abs(1 - ref[1]) / d_max)
    assert np.isnan(similarity([np.nan, np.nan], ssi))
    rng = np.random.default_rng(3)
    own = score(np.concatenate([synthetic_sample(ssi, rng) for _ in range(10)]), ssi, n_boot=300)
    assert own["lo"] < 1 < own["hi"] and abs(own["score"] - 1) < 0.03  # V1's own population scores at its ceiling
    far = score(rng.uniform(1.6, 2.0, 300), ssi, n_boot=300)
    assert far["hi"] < 0.1
    gsf = V1_DATA["gsf_deg"]  # mostly undefined values: the benchmark's rule scores 0
    assert score(np.r_[np.full(199, np.nan), 0.7], gsf, n_boot=200)["score"] == 0.0  # 39 % of resamples: none


def _synthetic_grid(rng, C, hw_deg, sf_octaves, repeats=4, peak=5.0, base=0.3):
    """Poisson counts per repeat (R, C, O, F, 8 phases) of cells with separable von Mises orientation tuning of
    half-width ``hw_deg`` and log-Gaussian SF tuning of full width ``sf_octaves`` (both at 1/√2 of the peak), at
    the battery's default grid, peaking at ``peak`` spikes per frame over a baseline ``base``."""
    from spikevae.stimuli import DEFAULT_FREQUENCIES
    from spikevae.workflows.rf_mapping import RFConfig

    n_o = RFConfig().n_orientations
    th, x = np.arange(n_o) * np.pi / n_o, np.log2(DEFAULT_FREQUENCIES)
    u = (peak * v1.SQRT_HALF - base) / (peak - base)  # each shape's value at the 1/√2 level
    kappa = np.log(u) / (np.cos(2 * np.radians(hw_deg)) - 1)
    sigma = sf_octaves / 2 / np.sqrt(-2 * np.log(u))
    th0, mu = rng.uniform(0, np.pi, C), rng.uniform(x[0] + 1.5, x[-1] - 1.5, C)
    g_o = np.exp(kappa * (np.cos(2 * (th[None] - th0[:, None])) - 1))  # (C, O)
    g_f = np.exp(-((x[None] - mu[:, None]) ** 2) / (2 * sigma**2))  # (C, F)
    lam = base + (peak - base) * g_o[:, :, None] * g_f[:, None, :]  # separable: the curves at the peak are exact
    lam = lam[..., None] * (1 + 0.5 * np.cos(np.arange(8) * np.pi / 4))  # a drifting cycle of 8 frames
    return rng.poisson(lam, (repeats, *lam.shape)).astype(np.float64), th, np.asarray(DEFAULT_FREQUENCIES)


@pytest.mark.parametrize("hw,octaves", [(10.0, 1.0), (20.0, 1.5), (35.0, 2.0)])
def test_battery_bandwidths_are_unbiased_at_the_default_protocol(hw, octaves):
    """Synthetic cells of known tuning at realistic counts (≤ 5 spikes per frame, 4 repeats, the default grid; 150):
    the median fitted orientation half-width and SF bandwidth within 5 % of the truth, every cell found tuned,
    and the repeats' bootstrap interval around each estimate (the spline through the samples, which takes the
    noisy peak, is 9-16 % narrow here at 20-35°)."""
    from types import SimpleNamespace

    from spikevae.analysis.battery import grid_properties, repeat_intervals

    rng = np.random.default_rng(int(hw))
    reps, th, f = _synthetic_grid(rng, 150, hw, octaves)
    g = grid_properties(reps.mean(0), th, f)
    assert np.all(np.isfinite(g["bw"])) and g["sf"]["selective"].all()
    assert abs(np.median(g["bw"]) / hw - 1) < 0.05, np.median(g["bw"])
    assert abs(np.median(g["sf"]["bandwidth_octaves"]) / octaves - 1) < 0.05, np.median(g["sf"]["bandwidth_octaves"])
    if hw == 20.0:  # the interval over repeats (its cost is a fit per resample)
        b = SimpleNamespace(grid=reps.mean(0), grid_repeats=reps, orientations=th, frequencies=f, size_repeats=None)
        lo, hi = repeat_intervals(b, n_boot=20)["orientation_bandwidth_deg"]
        assert np.mean((lo <= g["bw"]) & (g["bw"] <= hi)) > 0.9 and np.median(hi - lo) > 0


def test_scores_get_an_interval_over_protocol_repeats():
    """The preferred orientations of synthetic cells (uniform, as V1's four bins nearly are) scored against De Valois
    et al.'s histogram, with intervals over units and over resampled repeats that bracket the score."""
    from types import SimpleNamespace

    from spikevae.analysis.battery import grid_properties, repeat_draws, v1_summary

    rng = np.random.default_rng(5)
    reps, th, f = _synthetic_grid(rng, 100, 20.0, 1.5)
    b = SimpleNamespace(grid=reps.mean(0), grid_repeats=reps, orientations=th, frequencies=f, size_repeats=None)
    draws = repeat_draws(b, n_boot=12)
    pref = np.degrees(grid_properties(b.grid, th, f)["pref"])
    rows = [{"unit": c, "weak": False, "ssi": np.nan, "size_measured": False, "poor_fit": True,
             "preferred_orientation_deg": float(p - 180 if p >= 157.5 else p)} for c, p in enumerate(pref)]
    np.testing.assert_allclose(draws["preferred_orientation_deg"].mean(0), [r["preferred_orientation_deg"] for r in rows],
                               atol=3.0)  # resampled repeats move a tuned cell's preference by little
    summ = {r["property"]: r for r in v1_summary(rows, n_boot=200, draws=draws)}
    row, overall = summ["preferred_orientation_deg"], summ["overall"]
    assert row["score_lo"] <= row["score"] <= row["score_hi"] and row["score"] > 0.85
    assert row["score_rep_lo"] <= row["score"] <= row["score_rep_hi"]
    assert overall["score"] == pytest.approx(row["score"])  # the one scored property (no SSI was measured)


P = 16
TRUE = dict(x0=7.5, y0=7.5, theta=0.6, f=0.15, sx=2.2, sy=3.0)


def _units():
    """Rates per frame of two planted units: a Gabor with an exponential output (simple), and the quadrature
    pair's energy (complex), each with a peak of about 15 expected spikes per window."""
    from spikevae.analysis.receptive_fields import gabor

    w = np.stack([gabor((P, P), phase=ph, **TRUE) for ph in (0.0, np.pi / 2)]).reshape(2, -1)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    drive = 3.0 / (math.sqrt(2) * np.abs(w[0] @ np.exp(2j * np.pi * TRUE["f"] * _xr(TRUE["theta"]))))

    def rates(x):
        u = x.reshape(len(x), -1) @ w.T * drive
        return np.stack([0.75 * np.exp(u[:, 0]), 0.9 * (u ** 2).sum(1)], 1)
    return rates


#: 20 steps per window: p = rate·dt ≤ 0.8 at the peak, so every mean count is exact
LAYER = PoissonLayerConfig(window=0.05, dt=2.5e-3, target="cython", chunk=10**6)


def _xr(theta):
    yy, xx = np.mgrid[0:P, 0:P]
    return ((xx - (P - 1) / 2) * np.cos(theta) + (yy - (P - 1) / 2) * np.sin(theta)).ravel()


def test_planted_units_recovered_through_the_spiking_path():
    """Grating grid and apertures → rates → Brian2 Poisson spikes → counts → properties, against the planted
    Gabor (orientation ±5°, SF ±10 %) and against each bandwidth of the noise-free rates, within 3 standard errors
    of its own spread over the protocol's repeats (a bootstrap of the 4 repeats, which one unit's estimate
    differs by from the noise-free one; the bias over many units is the synthetic-cell test's)."""
    from types import SimpleNamespace

    from spikevae.analysis.battery import grid_from_trials, grid_properties, repeat_intervals
    from spikevae.spikes import simulate_poisson
    from spikevae.stimuli import aperture_gratings, grating_grid

    rates = _units()
    g = grating_grid(P, 24, np.geomspace(0.03, 0.45, 10))  # the default 7.5° step, and 10 SFs
    reps = 4
    n = len(g.images)
    st = simulate_poisson(rates(g.images), LAYER,
                          seed=3, index=np.tile(np.arange(n), reps))
    prm = {k: np.tile(v, reps) for k, v in g.params.items()}
    grid, oris, freqs = grid_from_trials(st.counts(), prm["orientation"], prm["spatial_frequency"], prm["phase"])
    per_rep = np.stack([grid_from_trials(c, g.params["orientation"], g.params["spatial_frequency"],
                                         g.params["phase"])[0] for c in st.counts().reshape(reps, n, -1)])
    got = grid_properties(grid, oris, freqs)
    exact_grid = rates(g.images).T.reshape(2, len(oris), len(freqs), -1)  # the noise-free responses
    exact = grid_properties(exact_grid, oris, freqs)
    ci = repeat_intervals(SimpleNamespace(grid=grid, grid_repeats=per_rep, orientations=oris, frequencies=freqs,
                                          size_repeats=None), n_boot=100)
    for k in (0, 1):
        d_theta = abs((got["pref"][k] - TRUE["theta"] + np.pi / 2) % np.pi - np.pi / 2)
        assert math.degrees(d_theta) < 5, (k, got["pref"][k])
        assert got["sf"]["peak"][k] == pytest.approx(TRUE["f"], rel=0.10)
        for key, est, truth in (("orientation_bandwidth_deg", got["bw"][k], exact["bw"][k]),
                                ("sf_bandwidth_octaves", got["sf"]["bandwidth_octaves"][k],
                                 exact["sf"]["bandwidth_octaves"][k])):
            se = (ci[key][1][k] - ci[key][0][k]) / (2 * 1.96)
            assert abs(est - truth) < 3 * se and se < 0.15 * truth, (key, k, est, truth, se)
    # the noise-free bandwidth itself against a dense orientation sweep of the same rates (the spline's own error)
    from spikevae.stimuli import _grating

    fine = np.arange(720) * np.pi / 720
    pf = freqs[np.argmin(np.abs(freqs - got["sf"]["peak"][0]))]
    ph = np.arange(8) * np.pi / 4
    dense = rates(_grating(P, np.repeat(fine, 8), np.full(720 * 8, pf), np.tile(ph, 720))).reshape(720, 8, 2).mean(1)
    # the von Mises half-width of the noise-free curve against the curve's own on a dense sweep: this unit's
    # exponential output makes its curve sharper at the top than a von Mises (12.5 % narrow; on the shipped
    # P-VAE's 200 most active units, every 10th, the median is 2.5 % wide)
    assert exact["bw"][0] == pytest.approx(v1.orientation_bandwidth(dense[:, 0], fine)[0], rel=0.15)
    # F1/F0: the Gabor unit modulates over the cycle (simple), the energy unit does not (complex)
    assert got["f1f0"][0] > 1 and got["f1f0"][1] < 1, got["f1f0"]
    assert got["f1f0"][0] == pytest.approx(exact["f1f0"][0], rel=0.10)
    # size: each unit's preferred grating in growing apertures on its centre
    d = np.geomspace(1, 45, 10)
    ag = aperture_gratings(P, got["pref"], got["sf"]["peak"], np.full((2, 2), 7.5), d)
    st = simulate_poisson(rates(ag.images), LAYER,
                          seed=4, index=np.tile(np.arange(len(ag.images)), 10 * reps))
    c = st.counts().reshape(10 * reps, len(ag.images), 2).mean(0)
    own = c[np.arange(len(ag.images)), ag.params["unit"]].reshape(2, len(d), 4).mean(-1)
    clean = rates(ag.images)[np.arange(len(ag.images)), ag.params["unit"]].reshape(2, len(d), 4).mean(-1)
    s_got, s_exact = v1.size_tuning(own, d), v1.size_tuning(clean, d)
    # the 95 % crossing of a slowly saturating curve (the energy unit) is ill-conditioned: within half a diameter
    # step (the diameters are 0.61 octave apart)
    np.testing.assert_array_less(np.abs(np.log2(s_got["gsf"] / s_exact["gsf"])), 0.61 / 2)
    np.testing.assert_allclose(s_got["ssi"], s_exact["ssi"], atol=0.1)
    assert np.all(s_exact["gsf"] > 2 * TRUE["sx"])  # the summation field spans the envelope, not a pixel
