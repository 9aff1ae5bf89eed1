"""The V1 property battery of a receptive-field mapping: per-channel properties with the standard definitions
(:mod:`spikevae.analysis.v1`), their summaries beside published V1 data (:mod:`spikevae.analysis.v1_reference`),
and the tuning grid of a drifting-grating protocol read back from per-trial responses."""
from __future__ import annotations

import numpy as np

from ..errors import ArgumentError
from .geometry import R2_GOOD

__all__ = ["PROPERTIES", "MIN_RATE_HZ", "rf_summary", "v1_properties", "v1_summary", "grid_properties", "repeat_intervals",
           "repeat_draws",
           "grid_from_trials"]


def rf_summary(m) -> dict:
    """Medians over the fitted units (``units_fitted``: Gabor-fit quality, OSI, STA agreement) and, for the shape
    (nx, ny, frequency), over the good fits among them (R² ≥ 0.5, ``n_good_fits``)."""
    col = lambda k: np.array([float(r[k]) for r in m.fits])  # noqa: E731
    r2 = col("r2")
    good = r2 >= R2_GOOD
    med = lambda v: float(np.nanmedian(v)) if np.isfinite(v).any() else None  # noqa: E731
    return {"units_fitted": len(m.fits), "n_good_fits": int(good.sum()), "gabor_fraction": float(good.mean()),
            "median_r2": med(r2),
            "median_osi": med(col("osi")), "median_nx": med(col("nx")[good]) if good.any() else None,
            "median_ny": med(col("ny")[good]) if good.any() else None,
            "median_frequency": med(col("frequency")[good]) if good.any() else None,
            "median_corr_sta_encoder": med(col("corr_sta_encoder")),
            "median_corr_sta_decoder": med(col("corr_sta_decoder"))}


#: the V1 battery's per-channel properties: key → (label, unit, key of the shipped V1 distribution or None).
#: ``*_cpd`` and ``*_deg`` columns exist only with a pixels-per-degree mapping.
PROPERTIES = {
    "preferred_orientation_deg": ("preferred orientation (157.5° and above as negative)", "deg",
                                  "preferred_orientation_deg"),
    "circular_variance": ("circular variance (orientation)", "", None),
    "orientation_bandwidth_deg": ("orientation bandwidth (half-width at 1/√2)", "deg", None),
    "orth_pref_ratio": ("orthogonal / preferred response", "", None),
    "osi": ("OSI = 1 − circular variance", "", None),
    "orientation_selective": ("orientation selective (orthogonal / preferred < 0.5)", "fraction", None),
    "peak_sf_cpp": ("peak spatial frequency", "cycles/pixel", None),
    "peak_sf_cpd": ("peak spatial frequency", "cycles/deg", "peak_sf_cpd"),
    "sf_bandwidth_octaves": ("SF bandwidth (full width at 1/√2)", "octaves", None),
    "sf_bandwidth_schiller": ("SF bandwidth (Schiller: 100·f_low/f_high)", "%", "sf_bandwidth_schiller"),
    "sf_selective": ("SF selective (band-pass)", "fraction", "sf_selective"),
    "gsf_px": ("grating summation field", "pixels", None),
    "gsf_deg": ("grating summation field", "deg", "gsf_deg"),
    "ssi": ("surround-suppression index", "", "ssi"),
    "strongly_suppressed": ("surround suppressed (SSI ≥ 0.1)", "fraction", "strongly_suppressed"),
    "f1_f0": ("modulation ratio F1/F0", "", None),
    "simple": ("simple cells (F1/F0 > 1)", "fraction", None),
    "on_off_overlap": ("ON/OFF overlap index", "", None),
    "nx": ("Gabor nx = σx·f", "", "nx"),
    "ny": ("Gabor ny = σy·f", "", "ny"),
    "aspect_ratio": ("Gabor aspect ratio σy/σx", "", None),
}


#: a spiking channel whose best grating drives it below this rate is flagged weak (Cavanaugh et al. 2002's
#: inclusion criterion, > 5 spikes/s)
MIN_RATE_HZ = 5.0


def v1_properties(m, pixels_per_degree: float | None = None, n_boot: int = 100, draws: dict | None = None) -> list[dict]:
    """One row per channel of a mapping with the V1 battery: every :data:`PROPERTIES` value (NaN where undefined),
    the response level, the Gabor fit's R², and flags: ``weak`` (best grating below :data:`MIN_RATE_HZ` spikes/s;
    an LCA channel: no response at all), ``poor_fit`` (no Gabor fit with R² ≥ 0.5), ``size_measured``.
    Flagged channels stay in the table; summaries use the channels that are not ``weak``. Each property with
    repeats to resample gets ``<key>_lo`` and ``<key>_hi``, its 95 % interval over ``n_boot`` resamples of the
    protocol's repeats (:func:`repeat_intervals`; 0: none; ``draws``: those of :func:`repeat_draws`, drawn once
    for this and :func:`v1_summary`)."""
    from . import v1

    b = m.battery
    if b is None:
        raise ArgumentError("this mapping ran without the V1 battery (battery=False)")
    if pixels_per_degree is not None and not (np.isfinite(pixels_per_degree) and pixels_per_degree > 0):
        raise ArgumentError(f"pixels per degree must be a finite number > 0, got {pixels_per_degree}")
    C = b.grid.shape[0]
    gp = grid_properties(b.grid, b.orientations, b.frequencies)
    ci = repeat_intervals(b, n_boot, draws=draws) if n_boot or draws is not None else {}
    peak, pref, cv, bw, opr, f1f0 = (gp[k] for k in ("peak", "pref", "cv", "bw", "opr", "f1f0"))
    sf = gp["sf"]
    measured = np.all(np.isfinite(b.size), axis=1)
    size = {"gsf": np.full(C, np.nan), "ssi": np.full(C, np.nan)}
    if measured.any():
        st = v1.size_tuning(b.size[measured], b.diameters)
        for k in size:
            size[k][measured] = st[k]
    oi_idx = v1.on_off_overlap(m.on, m.off)
    fits = {r["unit"]: r for r in m.fits}
    rate = peak / b.window if b.window else peak
    weak = rate < MIN_RATE_HZ if b.window else ~(peak > 0)
    rows = []
    nan = float("nan")
    for c in range(C):
        g = fits.get(c)
        good = g is not None and g["r2"] >= R2_GOOD
        row = {"unit": c, "latent": int(m.latent[c]), "sign": int(m.sign[c]),
               "peak_response": float(rate[c]), "response_unit": "spikes/s" if b.window else "code",
               "weak": bool(weak[c]), "gabor_r2": float(g["r2"]) if g else nan, "poor_fit": not good,
               "size_measured": bool(measured[c]),
               "preferred_orientation_deg": float(_wrapped_orientation(np.degrees(pref[c]))),
               "circular_variance": float(cv[c]),
               "orientation_bandwidth_deg": float(bw[c]), "orth_pref_ratio": float(opr[c]), "osi": float(1 - cv[c]),
               "orientation_selective": float(opr[c] < 0.5) if np.isfinite(opr[c]) else nan,
               "peak_sf_cpp": float(sf["peak"][c]), "sf_bandwidth_octaves": float(sf["bandwidth_octaves"][c]),
               "sf_bandwidth_schiller": float(sf["bandwidth_schiller"][c]),
               "sf_selective": float(sf["selective"][c]) if np.isfinite(sf["peak"][c]) else nan,
               "gsf_px": float(size["gsf"][c]), "ssi": float(size["ssi"][c]),
               "strongly_suppressed": float(size["ssi"][c] >= 0.1) if np.isfinite(size["ssi"][c]) else nan,
               "f1_f0": float(f1f0[c]),
               "simple": float(f1f0[c] > 1) if np.isfinite(f1f0[c]) else nan, "on_off_overlap": float(oi_idx[c]),
               "nx": float(g["nx"]) if good else nan, "ny": float(g["ny"]) if good else nan,
               "aspect_ratio": float(g["sigma_y"] / g["sigma_x"]) if good else nan,
               "rf_x": float(b.centre[c, 0]), "rf_y": float(b.centre[c, 1])}
        row["orientation_fit_r2"], row["sf_fit_r2"] = float(gp["orientation_fit_r2"][c]), float(gp["sf_fit_r2"][c])
        for k, (lo, hi) in ci.items():
            row[f"{k}_lo"], row[f"{k}_hi"] = float(lo[c]), float(hi[c])
        if pixels_per_degree is not None:
            row["peak_sf_cpd"] = row["peak_sf_cpp"] * pixels_per_degree
            row["gsf_deg"] = row["gsf_px"] / pixels_per_degree
            if "peak_sf_cpp" in ci:
                row["peak_sf_cpd_lo"], row["peak_sf_cpd_hi"] = (row["peak_sf_cpp_lo"] * pixels_per_degree,
                                                                row["peak_sf_cpp_hi"] * pixels_per_degree)
        rows.append(row)
    return rows


def _wrapped_orientation(deg):
    """Preferred orientation in [−22.5°, 157.5°), the range De Valois et al. 1982 bin it on (scalars or arrays)."""
    return np.where(np.asarray(deg) >= 157.5, np.asarray(deg) - 180.0, deg)


def grid_properties(grid: np.ndarray, orientations: np.ndarray, frequencies: np.ndarray) -> dict:
    """Orientation, SF and F1/F0 properties of responses ``grid`` (C, O, F, n_phases) to a drifting grating grid:
    the preferred grating is the grid's nearest to the peaks of curves fitted to the cycle-mean response averaged
    over frequencies (orientation) and over orientations (frequency); orientation tuning is taken at the
    preferred frequency, SF tuning at the preferred orientation, F1/F0 over the cycle at the preferred grating. Circular
    variance and the orthogonal/preferred ratio are read off the samples (their definitions); the preferred
    orientation, orientation bandwidth and the SF peak and bandwidths come from fitted curves (von Mises,
    log-Gaussian: :func:`spikevae.analysis.v1.fit_orientation`, :func:`~spikevae.analysis.v1.fit_sf`), which
    pool every sample instead of taking the peak of noisy ones."""
    from . import v1

    C = grid.shape[0]
    f0 = grid.mean(-1)  # (C, O, F): mean over the drifting cycle
    flat = f0.reshape(C, -1)
    best = flat.argmax(1)
    # the preferred grating from fits of the marginal curves, not the largest noisy sample (whose noise would
    # sharpen both slices through it): the orientation and the frequency of the grid nearest the fitted peaks
    th0 = v1.fit_orientation(f0.mean(2), orientations)["preferred"]
    oi = np.argmin(np.abs(np.angle(np.exp(2j * (orientations[None] - th0[:, None])))), axis=1)
    pk = np.log2(v1.fit_sf(f0.mean(1), frequencies)["peak"])
    fi = np.argmin(np.abs(np.log2(frequencies)[None] - np.nan_to_num(pk)[:, None]), axis=1)
    fi = np.where(np.isfinite(pk), fi, np.unravel_index(best, f0.shape[1:])[1])  # no response: the largest sample
    ori = f0[np.arange(C), :, fi]  # (C, O) at the preferred frequency
    cv, _ = v1.circular_variance(ori, orientations)
    fo = v1.fit_orientation(ori, orientations)
    fs = v1.fit_sf(f0[np.arange(C), oi, :], frequencies)
    return {"peak": flat[np.arange(C), best], "pref": fo["preferred"], "cv": cv, "bw": fo["bandwidth"],
            "opr": v1.orthogonal_preferred_ratio(ori, orientations), "sf": fs,
            "f1f0": v1.modulation_ratio(grid[np.arange(C), oi, fi, :]),
            "orientation_fit_r2": fo["r2"], "sf_fit_r2": fs["r2"]}


#: properties of :func:`grid_properties` with an interval over repeats: row key → how to read it off the result
_GRID_KEYS = {"preferred_orientation_deg": lambda g: _wrapped_orientation(np.degrees(g["pref"])),
              "circular_variance": lambda g: g["cv"], "orientation_bandwidth_deg": lambda g: g["bw"],
              "orth_pref_ratio": lambda g: g["opr"], "peak_sf_cpp": lambda g: g["sf"]["peak"],
              "sf_bandwidth_octaves": lambda g: g["sf"]["bandwidth_octaves"],
              "sf_bandwidth_schiller": lambda g: g["sf"]["bandwidth_schiller"], "f1_f0": lambda g: g["f1f0"]}


def repeat_draws(b, n_boot: int = 100, seed: int = 0) -> dict:
    """Each grating-grid property (and the SSI, and the fraction-style flags derived from them) recomputed on
    ``n_boot`` resamples of the protocol's repeats (with replacement, the same repeats for every channel):
    ``{key: (n_boot, C) array}``. Empty for a protocol that ran once (a deterministic code needs no interval).
    Preferred orientation is unwrapped around the full-data value (within ±90° of it)."""
    import warnings

    from . import v1

    out: dict = {}
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if b.grid_repeats is not None and len(b.grid_repeats) >= 2:
            R = len(b.grid_repeats)
            draws = {k: [] for k in _GRID_KEYS}
            sel = []
            for _ in range(n_boot):
                g = grid_properties(b.grid_repeats[rng.integers(0, R, R)].mean(0), b.orientations, b.frequencies)
                for k, f in _GRID_KEYS.items():
                    draws[k].append(f(g))
                sel.append(np.where(np.isfinite(g["sf"]["peak"]), g["sf"]["selective"].astype(float), np.nan))
            full = _GRID_KEYS["preferred_orientation_deg"](grid_properties(b.grid, b.orientations, b.frequencies))
            for k, d in draws.items():
                d = np.array(d)
                out[k] = full + (np.mod(d - full + 90.0, 180.0) - 90.0) if k == "preferred_orientation_deg" else d
            out["sf_selective"] = np.array(sel)
        if b.size_repeats is not None and len(b.size_repeats) >= 2:
            R, measured = len(b.size_repeats), np.all(np.isfinite(b.size), axis=1)
            d = np.full((n_boot, len(b.size)), np.nan)
            for i in range(n_boot):
                resample = b.size_repeats[rng.integers(0, R, R)].mean(0)[measured]
                d[i, measured] = v1.size_tuning(resample, b.diameters)["ssi"]
            out["ssi"] = d
            out["strongly_suppressed"] = np.where(np.isfinite(d), (d >= 0.1).astype(float), np.nan)
    return out


def repeat_intervals(b=None, n_boot: int = 100, seed: int = 0, draws: dict | None = None) -> dict:
    """2.5 and 97.5 percentiles per channel of each property of :func:`repeat_draws` (``draws``, or drawn here
    from the battery ``b``): ``{key: (lo, hi)}``, NaN for a channel without the property."""
    import warnings

    draws = repeat_draws(b, n_boot, seed) if draws is None else draws
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a channel without the property: a NaN interval
        return {k: (np.nanpercentile(d, 2.5, axis=0), np.nanpercentile(d, 97.5, axis=0)) for k, d in draws.items()
                if k not in ("sf_selective", "strongly_suppressed")}


def grid_from_trials(responses: np.ndarray, orientation, frequency, phase) -> tuple:
    """Mean responses (C, O, F, n_phases) per grating of a grid from per-presentation ``responses`` (n, C) and each
    presentation's parameters (repeats are averaged; as read from an NWB trials table) → (grid, orientations,
    frequencies)."""
    r = np.asarray(responses, dtype=np.float64)
    keys = [np.unique(np.round(np.asarray(v, dtype=np.float64), 12), return_inverse=True)
            for v in (orientation, frequency, phase)]
    shape = tuple(len(k[0]) for k in keys)
    cell = np.ravel_multi_index(tuple(k[1] for k in keys), shape)
    n = np.bincount(cell, minlength=int(np.prod(shape)))
    if np.any(n == 0):
        raise ArgumentError("the trials do not hold a full orientation x frequency x phase grid")
    tot = np.zeros((int(np.prod(shape)), r.shape[1]))
    np.add.at(tot, cell, r)
    grid = (tot / n[:, None]).T.reshape(r.shape[1], *shape)
    return grid, keys[0][0], keys[1][0]


def _measured(key: str, row: dict) -> bool:
    """Whether a channel's protocol measured the property: the size protocol for surround properties, a good
    Gabor fit for the fit's shape."""
    if key in ("ssi", "strongly_suppressed") or key.startswith("gsf"):
        return bool(row["size_measured"])
    if key in ("nx", "ny", "aspect_ratio"):
        return not row["poor_fit"]
    return True


def v1_summary(rows: list[dict], seed: int = 0, n_boot: int | None = None, draws: dict | None = None) -> list[dict]:
    """Per property of :data:`PROPERTIES` present in ``rows``: the model's median and quartiles over the channels
    that are not weak (fractions: the mean), the shipped V1 median and, where V1's distribution is shipped, the KS
    distance at its bin edges (:func:`spikevae.analysis.v1_reference.ks_binned`) and the score of Marques et al.
    2021 (:func:`spikevae.analysis.v1_reference.score`: binned similarity over its ceiling, with its 95 % interval
    over units), each over the channels whose protocol measured it. The grating summation field is summarised
    over channels with SSI > 0.1, the population Cavanaugh et al. report it for, and scored with the others as
    undefined, as the benchmark does. With ``draws`` (:func:`repeat_draws`), each score also gets an interval over
    the protocol's repeats, ``score_rep_lo``/``_hi``: the score of the same channels' values recomputed on each
    resample of the repeats. A last row, ``overall``, is the mean score over the scored properties, its
    intervals from the same resamples."""
    from .v1_reference import N_BOOTSTRAP, V1_DATA, ks_binned, score, similarity

    use = [r for r in rows if not r["weak"]]
    out, unit_draws, rep_draws = [], [], []
    nan = float("nan")
    for key, (label, unit, ref) in PROPERTIES.items():
        if not rows or key not in rows[0]:
            continue
        measured = [r for r in use if _measured(key, r)]
        pop = [r for r in measured if r["ssi"] > 0.1] if key.startswith("gsf") else measured
        v = np.array([r[key] for r in pop], dtype=np.float64)
        fin = v[np.isfinite(v)]
        frac = unit == "fraction"
        d = V1_DATA.get(ref) if ref else None
        s = {"property": key, "label": label, "unit": unit, "n": int(len(fin)), "of": len(pop),
             "median": float(fin.mean() if frac else np.median(fin)) if len(fin) else nan,
             "q1": float(np.percentile(fin, 25)) if len(fin) and not frac else nan,
             "q3": float(np.percentile(fin, 75)) if len(fin) and not frac else nan,
             "v1_median": nan, "ks": nan, "score": nan, "score_lo": nan, "score_hi": nan, "score_rep_lo": nan,
             "score_rep_hi": nan, "ceiling": nan, "v1_source": ""}
        if d is not None:
            s["v1_median"] = d.counts[1] / d.n if frac else d.median()
            s["ks"] = nan if frac else ks_binned(fin, d)
            all_v = np.array([r[key] if (r["ssi"] > 0.1 or not key.startswith("gsf")) else nan for r in measured])
            if len(measured):
                sc = score(all_v, d, seed=seed, n_boot=n_boot or N_BOOTSTRAP, samples=True)
                s.update(score=sc["score"], score_lo=sc["lo"], score_hi=sc["hi"], ceiling=sc["ceiling"])
                unit_draws.append(sc["samples"])
                shift = np.zeros(1)
                if draws and key in draws:  # the score's shift when the repeats are resampled
                    idx = np.array([r["unit"] for r in measured])
                    full = similarity(all_v, d)
                    shift = np.array([similarity(v, d) - full for v in draws[key][:, idx]]) / sc["ceiling"]
                    s.update(score_rep_lo=sc["score"] + float(np.nanpercentile(shift, 2.5)),
                             score_rep_hi=sc["score"] + float(np.nanpercentile(shift, 97.5)))
                rep_draws.append(sc["score"] + shift)
            s["v1_source"] = f"{d.source}; {d.population}; n = {d.n}"
        out.append(s)
    if unit_draws:
        m = np.mean(unit_draws, axis=0)  # per resample, the mean over properties
        n_rep = max(len(r) for r in rep_draws)
        rep = np.nanmean([np.broadcast_to(r, (n_rep,)) for r in rep_draws], axis=0)
        has_rep = n_rep > 1
        out.append({"property": "overall", "label": f"mean score over {len(unit_draws)} properties", "unit": "",
                    "n": len(use), "of": len(use), "median": nan, "q1": nan, "q3": nan, "v1_median": nan, "ks": nan,
                    "score": float(m.mean()), "score_lo": float(np.percentile(m, 2.5)),
                    "score_hi": float(np.percentile(m, 97.5)),
                    "score_rep_lo": float(np.nanpercentile(rep, 2.5)) if has_rep else nan,
                    "score_rep_hi": float(np.nanpercentile(rep, 97.5)) if has_rep else nan, "ceiling": nan,
                    "v1_source": "Marques, Schrimpf & DiCarlo 2021's binned similarity over its ceiling"})
    return out
