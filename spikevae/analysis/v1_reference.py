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

__all__ = ["V1Distribution", "V1_DATA", "reference", "ks_binned"]


class V1Distribution(NamedTuple):
    """A published V1 histogram: ``counts[i]`` neurons with values in ``[edges[i], edges[i + 1])``."""

    property: str
    unit: str
    edges: np.ndarray
    counts: np.ndarray
    log_bins: bool  # bins equal on a log₂ axis (plot and compare on it)
    source: str
    population: str

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def median(self) -> float:
        """Median by linear interpolation inside its bin (on log₂ for log bins)."""
        cdf = np.concatenate([[0.0], np.cumsum(self.counts) / self.counts.sum()])
        e = np.log2(self.edges) if self.log_bins else self.edges
        m = float(np.interp(0.5, cdf, e))
        return float(2**m) if self.log_bins else m


def _d(prop, unit, edges, counts, log_bins, source, population) -> V1Distribution:
    return V1Distribution(prop, unit, np.asarray(edges, dtype=np.float64), np.asarray(counts, dtype=np.int64),
                          log_bins, source, population)


V1_DATA: dict[str, V1Distribution] = {
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
                                "SF-selective simple + complex cells"),
    "sf_selective": _d("SF selective (band-pass)", "fraction", [0, 0.5, 1.0], [14, 73], False,
                       "Schiller, Finlay & Volman 1976 (J Neurophysiol 39:1334)", "87 cells"),
    # Cavanaugh, Bair & Movshon 2002a, J Neurophysiol 88:2530-2546: 190 foveal neurons responding > 5 spikes/s
    "ssi": _d("surround-suppression index", "", np.linspace(0, 2, 11), [66, 44, 38, 23, 16, 3, 0, 0, 0, 0], False,
              "Cavanaugh, Bair & Movshon 2002 (J Neurophysiol 88:2530)", "190 foveal neurons, > 5 spikes/s"),
    # grating summation field of the 148 of them suppressed by more than 10 %
    "gsf_deg": _d("grating summation field", "deg", [0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0],
                  [0, 9, 30, 55, 42, 10, 2, 0], True, "Cavanaugh, Bair & Movshon 2002 (J Neurophysiol 88:2530)",
                  "148 neurons suppressed by > 10 %"),
}


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
