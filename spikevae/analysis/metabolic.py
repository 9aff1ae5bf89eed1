"""Metabolic cost of a spiking code: expected and emitted spikes, information (KL) and ATP.

Energy model (Attwell & Laughlin 2001; Lennie 2003): ``E = N_spikes · c_spike + N_units · T · c_rest``.
Presets (from the papers named with each; check the sources before quoting):

- ``lennie2003``: 2.4e9 ATP per spike, human cortex, synaptic costs included (Lennie 2003,
  Curr. Biol. 13:493); no resting cost given there (0 here: add your own);
- ``attwell-laughlin2001``: 7.0e8 ATP per additional spike and 4.3e8 ATP/s resting per neuron,
  derived from Attwell & Laughlin 2001 (JCBFM 21:1133): 3.29e9 ATP/s/neuron at a 4 Hz mean rate
  in rodent grey matter, of which 13 % is resting cost; (3.29e9 − 0.13·3.29e9)/4 Hz ≈ 7.2e8,
  rounded. These are our derivations, not numbers printed in the paper.

The P-VAE's KL per unit, ``r·f(λ/r)`` with ``f(y) = 1 − y + y ln y``, is its information cost in
nats; bits per spike = KL / (ln 2 · Σλ).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..records import SpikeTrains

__all__ = ["EnergyModel", "PRESETS", "poisson_kl_np", "metabolic_table"]


@dataclass(frozen=True)
class EnergyModel:
    """ATP cost of spiking."""

    atp_per_spike: float = 2.4e9  # ATP molecules per spike
    resting_atp_per_s: float = 0.0  # ATP molecules per second per unit, independent of spiking
    source: str = "custom"


PRESETS = {
    "lennie2003": EnergyModel(2.4e9, 0.0, "Lennie 2003, Curr. Biol. 13:493 (human cortex; resting cost not given)"),
    "attwell-laughlin2001": EnergyModel(7.0e8, 4.3e8, "derived from Attwell & Laughlin 2001, JCBFM 21:1133 "
                                                       "(rodent grey matter, 3.29e9 ATP/s/neuron at 4 Hz, 13 % resting)"),
}


def poisson_kl_np(expected: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """``KL(Pois(λ) || Pois(r)) = r f(λ/r)`` elementwise, nats (λ = 0 gives r)."""
    lam = np.asarray(expected, dtype=np.float64)
    r = np.asarray(prior, dtype=np.float64)
    y = lam / r
    with np.errstate(divide="ignore", invalid="ignore"):
        ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
    return r * (1.0 - y + ylogy)


def metabolic_table(st: SpikeTrains, prior: np.ndarray | None = None, energy: EnergyModel = PRESETS["lennie2003"]) -> dict:
    """Per-presentation metabolic numbers (arrays of length n_presentations) and their means.

    ``mean`` holds the mean over presentations of each column, except ``bits_per_spike``: there it is the
    ratio of totals Σ KL bits / Σ expected spikes (the information the code carries per spike), which the
    mean of per-presentation ratios overweights on presentations with few spikes.

    Parameters
    ----------
    st : SpikeTrains
        Spikes and the expected counts λ that drove them.
    prior : ndarray (K,), optional
        Prior expected counts per window (the P-VAE's ``r``); enables the KL columns.
    energy : EnergyModel
    """
    p = st.presentations
    counts = st.counts()
    window = p.offset - p.onset
    emitted = counts.sum(1).astype(float)
    out = {
        "expected_spikes": np.nansum(p.expected, axis=1),
        "emitted_spikes": emitted,
        "fraction_active": (counts > 0).mean(1),
        "atp": emitted * energy.atp_per_spike + st.n_units * window * energy.resting_atp_per_s,
    }
    if prior is not None:
        kl = poisson_kl_np(p.expected, np.broadcast_to(prior, p.expected.shape)).sum(1)
        out["kl_nats"] = kl
        out["kl_bits"] = kl / math.log(2)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["bits_per_spike"] = np.where(out["expected_spikes"] > 0, out["kl_bits"] / out["expected_spikes"], np.nan)
    out["mean"] = {k: float(np.nanmean(v)) for k, v in out.items() if isinstance(v, np.ndarray)}
    if "bits_per_spike" in out:  # a ratio of totals (bits of the whole run per expected spike), not a mean of ratios
        total = float(out["expected_spikes"].sum())
        out["mean"]["bits_per_spike"] = float(out["kl_bits"].sum()) / total if total > 0 else float("nan")
    out["energy_model"] = energy.source
    return out
