"""Typical values reported for neurons in primary visual cortex (V1), to read a model's spike statistics against.

Facts transcribed from the literature, as ranges: they vary with species, anaesthesia, stimulus
and cell type, so they frame a comparison rather than decide it. Each entry:
``(low, high, what the range describes, source)``.
"""
from __future__ import annotations

__all__ = ["V1_SPIKE_STATISTICS", "v1_comparison"]

V1_SPIKE_STATISTICS = {
    "spontaneous_rate_hz": (0.5, 10.0, "spontaneous (blank-screen) rate of single units, awake macaque V1; "
                            "most units fire a few spikes/s",
                            "Gur, Beylin & Snodderly 1997, J Neurosci 17:2914"),
    "rate_hz": (1.0, 20.0, "mean evoked rate to natural scenes, heavy-tailed (near-exponential) across time; "
                "means of a few Hz to about 20 Hz",
                "Baddeley et al. 1997, Proc R Soc B 264:1775; Vinje & Gallant 2000, Science 287:1273"),
    "isi_cv": (0.7, 1.2, "coefficient of variation of inter-spike intervals, close to a Poisson process's 1",
               "Softky & Koch 1993, J Neurosci 13:334; Shinomoto et al. 2009, PLoS Comput Biol 5:e1000433"),
    "fano": (1.0, 1.5, "Fano factor of spike counts across repeats, at or above 1 (super-Poisson); falls "
             "at stimulus onset to about 1.2-1.4",
             "Tolhurst, Movshon & Dean 1983, Vision Res 23:775; Churchland et al. 2010, Nat Neurosci 13:369"),
    "refractory_ms": (1.0, 2.0, "absolute refractory period (shortest inter-spike interval)",
                      "Dayan & Abbott 2001, Theoretical Neuroscience, ch. 1"),
    "latency_ms": (30.0, 70.0, "onset latency of visual responses in macaque V1 (mean about 66 ms under "
                   "anaesthesia, 40-60 ms awake)",
                   "Maunsell & Gibson 1992, J Neurophysiol 68:1332; Schmolesky et al. 1998, J Neurophysiol 79:3272"),
    "noise_correlation": (0.0, 0.2, "mean spike-count (noise) correlation of nearby pairs, about 0.1-0.2 "
                          "under anaesthesia and lower awake",
                          "Cohen & Kohn 2011, Nat Neurosci 14:811; Ecker et al. 2010, Science 327:584"),
}


def v1_comparison(summary: dict) -> list[tuple[str, float | None, str]]:
    """Rows ``(quantity, the model's value, V1's range with its source)`` for a ``spike_summary`` summary."""
    keys = {"median_rate_hz": "rate_hz", "median_isi_cv": "isi_cv", "median_fano": "fano",
            "mean_noise_correlation": "noise_correlation"}
    rows = []
    for mine, ref in keys.items():
        lo, hi, what, src = V1_SPIKE_STATISTICS[ref]
        rows.append((mine, summary.get(mine), f"V1 {lo:g}-{hi:g} ({what}; {src})"))
    return rows
