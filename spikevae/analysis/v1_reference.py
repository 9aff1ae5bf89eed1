"""Published macaque V1 property distributions, transcribed as the histograms the papers report.

Facts, with their sources. The counts are those of the papers' figures as packaged for the Brain-Score V1
property benchmarks (Marques, Schrimpf & DiCarlo 2021, "Multi-scale hierarchical neural network models that
bridge from single neurons in the primate primary visual cortex to object recognition behavior"; their
``brainio`` packaging scripts list bins and counts per figure). Nothing here is downloaded.

Properties without a transcribable published distribution are not invented: Ringach et al. 2002's circular
variance, orientation bandwidth, orthogonal/preferred ratio and modulation ratio (F1/F0) were packaged from the
authors' raw data, not from histograms, and are not reproduced here; :func:`reference` returns None for them and
the reports say so.

Units: spatial frequency in cycles/degree and sizes in degrees of visual angle, so a model's values (cycles or
pixels of its input patch) are compared only given a stated pixels-per-degree mapping.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["V1Distribution", "V1_DATA", "reference", "ks_binned", "similarity", "score", "ceiling", "synthetic_sample",
           "N_BOOTSTRAP"]


class V1Distribution(NamedTuple):
    """A published V1 histogram: ``counts[i]`` neurons with values in ``[edges[i], edges[i + 1])``; ``rows`` cells
    in the benchmark's population, ``rows − n`` of them without a value (not selective, not suppressed): the size
    of each bootstrap sample of the score (:func:`score`)."""

    property: str
    unit: str
    edges: np.ndarray
    counts: np.ndarray
    log_bins: bool  # bins equal on a log₂ axis (plot and compare on it)
    source: str
    population: str
    rows: int = 0  # 0: as many as the histogram holds

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def median(self) -> float:
        """Median by linear interpolation inside its bin (on log₂ for log bins)."""
        cdf = np.concatenate([[0.0], np.cumsum(self.counts) / self.counts.sum()])
        e = np.log2(self.edges) if self.log_bins else self.edges
        m = float(np.interp(0.5, cdf, e))
        return float(2**m) if self.log_bins else m


def _d(prop, unit, edges, counts, log_bins, source, population, rows=0) -> V1Distribution:
    counts = np.asarray(counts, dtype=np.int64)
    return V1Distribution(prop, unit, np.asarray(edges, dtype=np.float64), counts, log_bins, source, population,
                          int(rows or counts.sum()))


V1_DATA: dict[str, V1Distribution] = {
    # De Valois, Yund & Hepler 1982, Vision Res 22:531-544: preferred orientation in four 45° bins centred on 0°,
    # 45°, 90°, 135° (values of 157.5° and above taken as negative angles)
    "preferred_orientation_deg": _d("preferred orientation", "deg", [-22.5, 22.5, 67.5, 112.5, 157.5],
                                    [110, 83, 100, 92], False, "De Valois, Yund & Hepler 1982 (Vision Res 22:531)",
                                    "385 cells"),
    # De Valois, Albrecht & Thorell 1982, Vision Res 22:545-559 (foveal and parafoveal, simple and
    # complex cells summed): peak spatial frequency
    "peak_sf_cpd": _d("peak spatial frequency", "cycles/deg",
                      [0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.2, 16.0, 22.4],
                      np.array([0, 4, 4, 8, 25, 33, 26, 28, 12, 5, 2, 1]) + np.array([0, 0, 0, 9, 9, 7, 10, 23, 12, 8, 3, 3])
                      + np.array([2, 4, 10, 12, 18, 7, 18, 3, 4, 0, 0, 0]) + np.array([1, 2, 1, 2, 5, 15, 13, 9, 3, 2, 0, 0]),
                      True, "De Valois, Albrecht & Thorell 1982 (Vision Res 22:545)", "foveal + parafoveal, simple + complex"),
    # Schiller, Finlay & Volman 1976c, J Neurophysiol 39:1334-1351: SF bandwidth as 100·f_low/f_high at 1/√2 of
    # the peak (larger is narrower), simple + complex cells; 73 of 87 cells were SF-selective (band-pass)
    "sf_bandwidth_schiller": _d("SF bandwidth (Schiller: 100·f_low/f_high)", "%", np.linspace(0, 100, 11),
                                np.array([0, 0, 0, 6, 5, 10, 7, 2, 0, 0]) + np.array([0, 3, 4, 10, 17, 6, 2, 1, 0, 0]),
                                False, "Schiller, Finlay & Volman 1976 (J Neurophysiol 39:1334)",
                                "SF-selective simple + complex cells of 87", rows=87),
    "sf_selective": _d("SF selective (band-pass)", "fraction", [0, 0.5, 1.0], [14, 73], False,
                       "Schiller, Finlay & Volman 1976 (J Neurophysiol 39:1334)", "87 cells"),
    # Cavanaugh, Bair & Movshon 2002a, J Neurophysiol 88:2530-2546: 190 foveal neurons responding > 5 spikes/s
    "ssi": _d("surround-suppression index", "", np.linspace(0, 2, 11), [66, 44, 38, 23, 16, 3, 0, 0, 0, 0], False,
              "Cavanaugh, Bair & Movshon 2002 (J Neurophysiol 88:2530)", "190 foveal neurons, > 5 spikes/s"),
    # grating summation field of the 148 of them suppressed by more than 10 %
    "gsf_deg": _d("grating summation field", "deg", [0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0],
                  [0, 9, 30, 55, 42, 10, 2, 0], True, "Cavanaugh, Bair & Movshon 2002 (J Neurophysiol 88:2530)",
                  "148 of 190 neurons, suppressed by > 10 %", rows=190),
    "strongly_suppressed": _d("surround suppressed (SSI ≥ 0.1)", "fraction", [0, 0.5, 1.0], [42, 148], False,
                              "Cavanaugh, Bair & Movshon 2002 (J Neurophysiol 88:2530)", "190 foveal neurons"),
    # Ringach 2002 (J Neurophysiol 88:455), as packaged by VOneNet (Dapello, Marques et al. 2020): the marginals
    # of the joint nx-ny histogram of simple-cell Gabor fits, edges 10^(-1 ... 0.2)
    "nx": _d("Gabor nx = σx·f", "", np.logspace(-1, 0.2, 6), [3, 22, 42, 12, 0], True,
             "Ringach 2002 (J Neurophysiol 88:455), as packaged by VOneNet", "79 simple cells"),
    "ny": _d("Gabor ny = σy·f", "", np.logspace(-1, 0.2, 6), [11, 11, 25, 25, 7], True,
             "Ringach 2002 (J Neurophysiol 88:455), as packaged by VOneNet", "79 simple cells"),
}

#: bootstrap samples of every score (Marques et al. 2021 draw 1,000)
N_BOOTSTRAP = 1000


def reference(key: str) -> V1Distribution | None:
    """The shipped V1 distribution of a property key of :data:`spikevae.analysis.battery.PROPERTIES`, or None."""
    return V1_DATA.get(key)


def ks_binned(values, dist: V1Distribution) -> float:
    """Two-sample Kolmogorov–Smirnov distance between a model's values and a binned V1 distribution, evaluated
    at the published bin edges (the only points where V1's CDF is known): ``max_e |F_model(e) − F_V1(e)|``.
    NaN without finite model values. Model values outside the histogram's range count below its first edge or
    above its last."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan")
    f_v1 = np.concatenate([[0.0], np.cumsum(dist.counts) / dist.counts.sum()])
    f_model = np.searchsorted(np.sort(v), dist.edges, side="left") / len(v)
    return float(np.max(np.abs(f_model - f_v1)))


def _binned_cdf(values, dist: V1Distribution) -> np.ndarray | None:
    """CDF at the inner edges of values clipped into the histogram's range (NaN dropped); None without values."""
    v = np.asarray(values, dtype=np.float64)
    v = np.clip(v[np.isfinite(v)], dist.edges[0], dist.edges[-1])
    if not len(v):
        return None
    h = np.histogram(v, bins=dist.edges)[0]
    return np.cumsum(h)[:-1] / len(v)


def _similarity_cdf(cdf_model: np.ndarray, dist: V1Distribution) -> float:
    ref = np.cumsum(dist.counts)[:-1] / dist.counts.sum()
    d = np.max(np.abs(cdf_model - ref)) if len(ref) else 0.0
    d_max = max(np.max(np.abs(1 - ref)), np.max(ref)) if len(ref) else 1.0  # all mass in the first / in the last bin
    return float(1 - d / d_max)


def similarity(values, dist: V1Distribution) -> float:
    """Marques et al. 2021's binned similarity of a model's values to a V1 histogram: values clipped into the
    histogram's range and binned on its edges (NaN dropped), D the largest difference of the two cumulative
    histograms, normalised by the largest D of an extreme distribution (all mass in the first or in the last
    bin): 1 − D / D_max, in [0, 1]. NaN without finite values."""
    cdf = _binned_cdf(values, dist)
    return float("nan") if cdf is None else _similarity_cdf(cdf, dist)


def synthetic_sample(dist: V1Distribution, rng: np.random.Generator) -> np.ndarray:
    """The histogram as values: each bin's count spread uniformly (log-uniformly for log bins) inside it, plus a NaN
    for each row of the population without a value, as the benchmarks package a histogram (``rows`` values)."""
    e = np.log2(dist.edges) if dist.log_bins else dist.edges
    v = np.concatenate([rng.uniform(e[i], e[i + 1], c) for i, c in enumerate(dist.counts)])
    v = 2**v if dist.log_bins else v
    return np.concatenate([v, np.full(dist.rows - len(v), np.nan)])


def _bootstrap(values, dist: V1Distribution, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Similarity of ``n_boot`` resamples (with replacement, ``dist.rows`` values each, NaN rows included)."""
    v = np.asarray(values, dtype=np.float64)
    out = np.full(n_boot, np.nan)
    for b in range(n_boot):
        out[b] = similarity(v[rng.integers(0, len(v), dist.rows)], dist)
    return out


def ceiling(dist: V1Distribution, seed: int = 0, n_boot: int = N_BOOTSTRAP) -> float:
    """The benchmark's ceiling: the mean bootstrapped similarity of V1's own values (:func:`synthetic_sample`) to
    V1's histogram, what a model drawn from V1's population scores at V1's sample size."""
    rng = np.random.default_rng(seed)
    return float(np.nanmean(_bootstrap(synthetic_sample(dist, rng), dist, rng, n_boot)))


def score(values, dist: V1Distribution, seed: int = 0, n_boot: int = N_BOOTSTRAP, samples: bool = False) -> dict:
    """A model's score on one V1 property as Marques et al. 2021 compute it: the model's values (NaN where the
    property is undefined for a unit) resampled over units ``n_boot`` times at V1's sample size, the mean
    similarity divided by the ceiling (not clipped), 0 when more than a tenth of the resamples have no value.
    Returns ``similarity`` (mean), ``score``, ``lo``/``hi`` (2.5 and 97.5 percentiles of the resampled score:
    the interval over units), ``sd`` and ``ceiling``; with ``samples``, also the resampled scores."""
    rng = np.random.default_rng(seed)
    v = np.asarray(values, dtype=np.float64)
    c = ceiling(dist, seed)
    if not np.isfinite(v).any():
        sims = np.full(n_boot, np.nan)
    else:
        sims = _bootstrap(v, dist, rng, n_boot)
    if np.isnan(sims).sum() > n_boot // 10:  # the benchmark's rule: a property the model rarely has scores 0
        sims = np.zeros(n_boot)
    sims = np.where(np.isfinite(sims), sims, np.nanmean(sims)) / c
    out = {"similarity": float(sims.mean() * c), "score": float(sims.mean()), "lo": float(np.percentile(sims, 2.5)),
           "hi": float(np.percentile(sims, 97.5)), "sd": float(sims.std()), "ceiling": c}
    if samples:
        out["samples"] = sims
    return out
