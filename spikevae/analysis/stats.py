"""Spike statistics of a :class:`~spikevae.records.SpikeTrains` record, through Elephant on Neo objects.

Each function has a plain-numpy twin in the tests. Note on Fano factors:
``elephant.statistics.fanofactor(list_of_trains)`` computes var/mean of the counts *across the
list*, so it is a per-neuron Fano factor only when the list holds repeated trials of one neuron;
:func:`fano_factors` builds exactly those lists (one unit, one stimulus, all repeats).
"""
from __future__ import annotations

import numpy as np

from ..errors import ArgumentError
from ..records import SpikeTrains

__all__ = ["unit_rates", "isi_cv", "trial_trains", "fano_factors", "count_correlations", "noise_correlations", "psth",
           "spike_summary"]


def _neo_trains(st: SpikeTrains):
    import neo
    import quantities as pq

    return [neo.SpikeTrain(t * pq.s, t_start=0 * pq.s, t_stop=st.t_stop * pq.s) for t in st.trains()]


def unit_rates(st: SpikeTrains) -> np.ndarray:
    """Mean firing rate of each unit over the whole recording [0, t_stop], Hz (K,)."""
    from elephant.statistics import mean_firing_rate

    return np.array([float(mean_firing_rate(tr).rescale("Hz").magnitude) for tr in _neo_trains(st)])


def isi_cv(st: SpikeTrains) -> np.ndarray:
    """Coefficient of variation of the inter-spike intervals of each unit (K,); NaN below 3 spikes."""
    from elephant.statistics import cv, isi

    out = np.full(st.n_units, np.nan)
    for k, tr in enumerate(_neo_trains(st)):
        if len(tr) >= 3:
            out[k] = float(cv(isi(tr).magnitude))
    return out


def trial_trains(st: SpikeTrains, unit: int, stimulus: int):
    """Neo trains of one unit, one per presentation of one stimulus, cut to its window and aligned to onset.

    The trials Elephant's trial statistics take (``fanofactor``, PSTHs).
    """
    import neo
    import quantities as pq

    p = st.presentations
    times = st.trains()[unit]
    rows = np.nonzero(p.stimulus == stimulus)[0]
    w = float(np.min(p.offset[rows] - p.onset[rows]))  # one duration for all trials (Elephant checks it)
    delay = float(st.meta.get("response_latency_s", 0.0))  # the counting rule's window (SpikeTrains.counts)
    out = []
    for n in rows:
        on, off = p.onset[n] + delay, p.offset[n] + delay
        sel = times[(times >= on - 0.5 * st.dt) & (times < off - 0.5 * st.dt)] - on
        out.append(neo.SpikeTrain(np.clip(sel, 0, w) * pq.s, t_start=0 * pq.s, t_stop=w * pq.s))
    return out


def fano_factors(st: SpikeTrains) -> tuple[np.ndarray, np.ndarray]:
    """Per-(stimulus, unit) Fano factor of the window counts across repeats.

    Returns
    -------
    stimuli : ndarray (S,)
        The stimulus indices, in order.
    fano : ndarray (S, K)
        var/mean across the repeats with the *sample* variance (ddof = 1), so a Poisson count gives 1
        whatever the number of repeats R; NaN where the unit never fired for that stimulus or it was
        shown once. Elephant's ``fanofactor`` (called here on the unit's trials) divides by R (ddof = 0,
        (R − 1)/R for Poisson); its value is multiplied by R/(R − 1). Every command uses this convention.
    """
    from elephant.statistics import fanofactor

    p = st.presentations
    stims = np.unique(p.stimulus)
    out = np.full((len(stims), st.n_units), np.nan)
    counts = st.counts()
    # each (presentation, unit)'s spike times relative to onset, inside the counting window of
    # SpikeTrains.counts (what trial_trains cuts), as plain arrays: Elephant takes them without the cost of
    # building thousands of Neo objects
    delay = float(st.meta.get("response_latency_s", 0.0))
    k = st.window_of(delay)
    ok = k >= 0
    key = k[ok] * st.n_units + st.unit[ok]
    order = np.argsort(key, kind="stable")
    rel = (st.time[ok] - p.onset[k[ok]] - delay)[order]
    bounds = np.searchsorted(key[order], np.arange(len(p) * st.n_units + 1))
    for s_i, s in enumerate(stims):
        rows = np.nonzero(p.stimulus == s)[0]
        n = len(rows)
        if n < 2:
            continue
        for u in np.nonzero(counts[rows].sum(0) > 0)[0]:
            trials = [rel[bounds[r * st.n_units + u]:bounds[r * st.n_units + u + 1]] for r in rows]
            out[s_i, u] = float(fanofactor(trials)) * n / (n - 1)
    return stims, out


def count_correlations(st: SpikeTrains) -> np.ndarray:
    """Pearson correlation of the window spike counts of every pair of units, across presentations (K, K).

    Computed by Elephant (``correlation_coefficient`` on a ``BinnedSpikeTrain`` whose bins are the
    presentation windows), which requires back-to-back windows of equal length; with gaps, the
    counts come from :meth:`SpikeTrains.counts` and ``np.corrcoef``. Silent units give NaN.
    """
    p = st.presentations
    w = p.offset - p.onset
    contiguous = len(p) > 1 and np.allclose(w, w[0]) and np.allclose(p.onset[1:], p.offset[:-1]) and p.onset[0] == 0
    if contiguous:
        import warnings

        import quantities as pq
        from elephant.conversion import BinnedSpikeTrain
        from elephant.spike_train_correlation import correlation_coefficient

        binned = BinnedSpikeTrain(_neo_trains_window(st, p.offset[-1]), bin_size=w[0] * pq.s, t_start=0 * pq.s,
                                  t_stop=p.offset[-1] * pq.s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # silent units: Elephant warns and returns NaN
            warnings.simplefilter("ignore", RuntimeWarning)  # (0/0 for a silent unit's variance)
            warnings.simplefilter("ignore", PendingDeprecationWarning)  # elephant 1.2 uses np.matrix internally
            return np.asarray(correlation_coefficient(binned))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(st.counts().T)


def noise_correlations(st: SpikeTrains) -> np.ndarray:
    """Noise correlations (K, K): Pearson correlation of the count residuals after removing each
    stimulus's mean count (trial-to-trial co-variability at fixed stimulus). Silent units give NaN."""
    c = st.counts().astype(np.float64)
    stim = st.presentations.stimulus
    resid = c.copy()
    for s in np.unique(stim):
        rows = stim == s
        resid[rows] -= c[rows].mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(resid.T)


def _neo_trains_window(st: SpikeTrains, t_stop: float):
    import neo
    import quantities as pq

    return [neo.SpikeTrain(t[t < t_stop] * pq.s, t_start=0 * pq.s, t_stop=t_stop * pq.s) for t in st.trains()]


def psth(st: SpikeTrains, bin_size: float, units: np.ndarray | None = None,
         span: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Peri-stimulus time histogram aligned to presentation onsets, averaged over presentations.

    ``span`` (s): how long after each onset to histogram (default: the window; up to the next onset
    to see a latency, the response's tail and the gap). Returns bin left edges (s, relative to onset)
    and the rate per bin (Hz), (n_bins, n_units_selected).
    """
    p = st.presentations
    w = float(np.min(p.offset - p.onset)) if span is None else float(span)
    if not (np.isfinite(bin_size) and st.dt <= bin_size <= w):
        raise ArgumentError(f"PSTH bin must lie between the time step ({st.dt * 1e3:g} ms) and the span "
                            f"({w * 1e3:g} ms), got {bin_size * 1e3:g} ms")
    n_bins = int(np.floor(w / bin_size + 1e-9))
    units = np.arange(st.n_units) if units is None else np.asarray(units)
    k = np.searchsorted(p.onset, st.time + 0.5 * st.dt, side="right") - 1
    ok = k >= 0
    rel = np.where(ok, st.time - p.onset[np.maximum(k, 0)], -1.0)
    b = np.floor((rel + 0.5 * st.dt) / bin_size).astype(int)
    keep = ok & (b >= 0) & (b < n_bins) & np.isin(st.unit, units)
    col = np.searchsorted(units, st.unit[keep]) if np.all(np.diff(units) > 0) else \
        np.array([np.nonzero(units == u)[0][0] for u in st.unit[keep]])
    hist = np.zeros((n_bins, len(units)))
    np.add.at(hist, (b[keep], col), 1)
    return np.arange(n_bins) * bin_size, hist / (len(p) * bin_size)


def spike_summary(st: SpikeTrains) -> tuple[dict, dict]:
    """Per-unit statistics and a summary of one record, as the analysis scripts report them.

    Returns ``(per_unit, summary)``: ``per_unit`` holds arrays ``rate_hz``, ``isi_cv``, ``fano``
    (mean over stimuli of the per-stimulus Fano factor; needs repeats), ``spikes``, and the
    off-diagonal pairwise ``count_correlations`` and ``noise_correlations`` (needs more than one
    presentation; noise correlations need repeats); ``summary`` their medians / means (None when
    undefined).
    """
    rates, cv = unit_rates(st), isi_cv(st)
    fano_unit = np.full(st.n_units, np.nan)
    corr_off = noise_off = np.array([])
    off = ~np.eye(st.n_units, dtype=bool)
    if len(st.presentations) > 1:
        corr_off = count_correlations(st)[off]
        if np.any(st.presentations.repeat > 0):
            _, fano = fano_factors(st)
            n_ok = np.isfinite(fano).sum(0)
            fano_unit = np.where(n_ok > 0, np.nansum(fano, axis=0) / np.maximum(n_ok, 1), np.nan)
            noise_off = noise_correlations(st)[off]

    def stat(f, v):
        return float(f(v)) if np.isfinite(v).any() else None

    per_unit = {"rate_hz": rates, "isi_cv": cv, "fano": fano_unit, "spikes": np.bincount(st.unit, minlength=st.n_units),
                "count_correlations": corr_off, "noise_correlations": noise_off}
    summary = {"n_units": st.n_units, "n_spikes": st.n_spikes, "duration_s": st.t_stop,
               "n_presentations": len(st.presentations), "mean_rate_hz": float(np.mean(rates)),
               "median_rate_hz": float(np.median(rates)), "fraction_units_spiking": float(np.mean(rates > 0)),
               "median_isi_cv": stat(np.nanmedian, cv), "median_fano": stat(np.nanmedian, fano_unit),
               "mean_count_correlation": stat(np.nanmean, corr_off),
               "mean_noise_correlation": stat(np.nanmean, noise_off)}
    return per_unit, summary
