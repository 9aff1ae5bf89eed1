"""The standard V1 property battery: tuning properties of units from their responses to gratings and sparse noise.

Each function takes mean responses (spike counts or rates, or a rectified analog code: anything ≥ 0) with the
stimulus parameter on the last axis, and returns one value per unit (NaN where the property is undefined; each
function says when). The definitions are those of the physiology papers whose data
:mod:`spikevae.analysis.v1_reference` ships, so a model's numbers sit beside V1's:

- orientation: circular variance and orientation bandwidth (half-width at 1/√2 of the peak) of Ringach et al.
  2002 (J Neurosci 22:5639), the orthogonal / preferred response ratio, OSI = 1 − circular variance;
- spatial frequency: peak SF and bandwidth (full width at 1/√2 of the peak, octaves, and Schiller et al. 1976's
  100·f_low/f_high) from a spline through the curve on log₂ f;
- size: grating summation field (smallest diameter reaching 95 % of the peak response) and surround-suppression
  index (peak − response at the largest size) / peak, Cavanaugh et al. 2002 (J Neurophysiol 88:2530);
- phase: F1/F0 of the response over one cycle of a drifting grating (Skottun et al. 1991: > 1 is simple);
- subregions: the ON/OFF overlap index of Schiller et al. 1976 from sparse-noise maps.

Orientation is the direction of the grating's wave vector, θ ∈ [0, π) rad (tables print degrees).
"""
from __future__ import annotations

import numpy as np

from ..errors import ArgumentError

__all__ = ["circular_variance", "orientation_bandwidth", "orthogonal_preferred_ratio", "sf_tuning", "size_tuning",
           "fit_orientation", "fit_sf",
           "modulation_ratio", "on_off_overlap", "SQRT_HALF"]

#: the response level that bounds a tuning bandwidth, relative to the peak (Ringach 2002, Schiller 1976)
SQRT_HALF = 1.0 / np.sqrt(2.0)


def _rows(curve) -> np.ndarray:
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim == 1:
        c = c[None]
    if not np.all(np.isfinite(c)):
        raise ArgumentError("tuning curves must be finite")
    return np.clip(c, 0.0, None)


def circular_variance(curve, theta) -> tuple[np.ndarray, np.ndarray]:
    """``1 − |Σ r(θ) e^{2iθ}| / Σ r(θ)`` per unit (rows of ``curve``, responses at orientations ``theta`` rad,
    equally spaced over [0, π)), and the preferred orientation ``arg(Σ r e^{2iθ}) / 2`` in [0, π).

    0 for a unit that responds at one orientation only, 1 for a flat curve; NaN for a unit with no response.
    """
    r = _rows(curve)
    vec = (r * np.exp(2j * np.asarray(theta, dtype=np.float64))).sum(-1)
    tot = r.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = np.where(tot > 0, 1.0 - np.abs(vec) / tot, np.nan)
    return cv, np.mod(np.angle(vec) / 2, np.pi)


def _periodic_fine(r: np.ndarray, theta: np.ndarray, n: int = 720) -> tuple[np.ndarray, np.ndarray]:
    """The orientation curves on a fine grid of [0, π) (periodic cubic spline through the samples)."""
    from scipy.interpolate import CubicSpline

    th = np.asarray(theta, dtype=np.float64)
    order = np.argsort(th)
    th, r = th[order], r[:, order]
    x = np.concatenate([th, [th[0] + np.pi]])
    y = np.concatenate([r, r[:, :1]], axis=1)
    fine = np.arange(n) * np.pi / n
    return fine, CubicSpline(x, y, axis=1, bc_type="periodic")(fine)


def orientation_bandwidth(curve, theta) -> np.ndarray:
    """Half-width (degrees) of the orientation curve at 1/√2 of its peak, on a periodic cubic spline through the
    samples (Ringach et al. 2002 interpolate with a Hanning window; at ≥ 12 noise-averaged samples the spline
    is closer to the curve). NaN when the curve never falls to 1/√2 of its peak (untuned: bandwidth ≥ 90°)."""
    r = _rows(curve)
    fine, y = _periodic_fine(r, theta)
    n = len(fine)
    out = np.full(len(r), np.nan)
    for k in range(len(r)):
        yk = np.roll(y[k], -int(y[k].argmax()))  # the peak at index 0, periodic
        lvl = yk[0] * SQRT_HALF
        if yk[0] <= 0 or not np.any(yk <= lvl):
            continue
        half = 0.0
        for side in (yk, np.concatenate([yk[:1], yk[:0:-1]])):  # up in angle, then down
            i = int(np.argmax(side <= lvl))  # first sample at or below the level; side[i - 1] is above it
            half += (i - 1) + (side[i - 1] - lvl) / (side[i - 1] - side[i])
        out[k] = np.degrees(half * np.pi / n) / 2
    return out


def orthogonal_preferred_ratio(curve, theta) -> np.ndarray:
    """Response 90° from the peak over the peak response (spline through the samples); NaN without a response."""
    r = _rows(curve)
    fine, y = _periodic_fine(r, theta)
    n = len(fine)
    p = y.argmax(1)
    peak = y[np.arange(len(r)), p]
    orth = np.clip(y[np.arange(len(r)), (p + n // 2) % n], 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(peak > 0, orth / peak, np.nan)


def sf_tuning(curve, frequencies, n: int = 400) -> dict:
    """Spatial-frequency tuning per unit from responses at ``frequencies`` (any unit, e.g. cycles/pixel).

    A cubic spline through the curve on log₂ f gives the peak SF and the frequencies ``f_low < f_peak < f_high``
    where it falls to 1/√2 of the peak. Returns arrays: ``peak`` (same unit as ``frequencies``),
    ``bandwidth_octaves`` = log₂(f_high/f_low), ``bandwidth_schiller`` = 100·f_low/f_high (Schiller et al. 1976:
    larger is narrower), and ``selective`` (band-pass: the curve falls below 1/√2 of its peak on both sides within
    the tested range; the bandwidths are NaN otherwise).
    """
    from scipy.interpolate import CubicSpline

    r = _rows(curve)
    f = np.asarray(frequencies, dtype=np.float64)
    if f.ndim != 1 or len(f) < 3 or np.any(np.diff(f) <= 0) or f[0] <= 0:
        raise ArgumentError("sf_tuning needs >= 3 increasing positive frequencies")
    lf = np.log2(f)
    fine = np.linspace(lf[0], lf[-1], n)
    y = CubicSpline(lf, r, axis=1)(fine)
    K = len(r)
    peak, lo, hi = np.full(K, np.nan), np.full(K, np.nan), np.full(K, np.nan)
    for k in range(K):
        p = int(y[k].argmax())
        if y[k, p] <= 0:
            continue
        peak[k] = 2 ** fine[p]
        lvl = y[k, p] * SQRT_HALF
        below = np.flatnonzero(y[k] <= lvl)
        left, right = below[below < p], below[below > p]
        if len(left):
            i = left[-1]  # y[i] <= lvl < y[i + 1]
            lo[k] = 2 ** (fine[i] + (fine[i + 1] - fine[i]) * (lvl - y[k, i]) / (y[k, i + 1] - y[k, i]))
        if len(right):
            i = right[0]  # y[i - 1] > lvl >= y[i]
            hi[k] = 2 ** (fine[i - 1] + (fine[i] - fine[i - 1]) * (y[k, i - 1] - lvl) / (y[k, i - 1] - y[k, i]))
    selective = np.isfinite(lo) & np.isfinite(hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"peak": peak, "bandwidth_octaves": np.log2(hi / lo), "bandwidth_schiller": 100.0 * lo / hi,
                "selective": selective}


def size_tuning(curve, diameters) -> dict:
    """Size tuning per unit from responses to gratings in apertures of increasing ``diameters``.

    ``gsf``: the grating summation field, the smallest diameter whose response reaches 95 % of the peak (linear
    interpolation between the tested diameters; Cavanaugh et al. 2002); ``ssi``: the surround-suppression index
    (peak − response at the largest diameter) / peak, 0 for a unit without suppression. NaN without a response.
    """
    r = _rows(curve)
    d = np.asarray(diameters, dtype=np.float64)
    if d.ndim != 1 or len(d) < 2 or np.any(np.diff(d) <= 0):
        raise ArgumentError("size_tuning needs >= 2 increasing diameters")
    peak = r.max(1)
    K = len(r)
    gsf = np.full(K, np.nan)
    for k in range(K):
        if peak[k] <= 0:
            continue
        lvl = 0.95 * peak[k]
        i = int(np.argmax(r[k] >= lvl))
        if i == 0:
            gsf[k] = d[0]
        else:
            gsf[k] = d[i - 1] + (d[i] - d[i - 1]) * (lvl - r[k, i - 1]) / (r[k, i] - r[k, i - 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        ssi = np.where(peak > 0, (peak - r[:, -1]) / peak, np.nan)
    return {"gsf": gsf, "ssi": ssi}


def modulation_ratio(responses) -> np.ndarray:
    """F1/F0 per unit of the responses (…, n) over one cycle of a drifting grating sampled at n equally spaced
    phases: F0 the mean, F1 the amplitude of the first harmonic, 2·|mean(r e^{−iφ})|. A half-wave rectified
    sinusoid gives π/2, a phase-invariant (energy) response 0; > 1 classes a cell as simple (Skottun et al. 1991).
    NaN without a response."""
    r = np.asarray(responses, dtype=np.float64)
    n = r.shape[-1]
    if n < 3:
        raise ArgumentError("modulation_ratio needs >= 3 phases per cycle")
    f0 = r.mean(-1)
    f1 = 2 * np.abs((r * np.exp(-2j * np.pi * np.arange(n) / n)).mean(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(f0 > 0, f1 / f0, np.nan)


def on_off_overlap(on, off) -> np.ndarray:
    """Schiller et al. (1976)'s overlap index of the ON and OFF subregions per unit, from sparse-noise maps
    (K, P, P) of the mean response to a bright and to a dark pixel:

        OI = (w_on + w_off − d) / (w_on + w_off + d)

    d the distance between the subregions' centres, w the s.d. of each subregion along the line joining them.
    A subregion is the map's excess over its median (the response to the blank surround) beyond two robust
    standard deviations of the map (1.4826·MAD: sparse-noise maps are noisy, and noise spread over the whole patch
    would pull both centres to the middle), so its centre and width are response-weighted. 1: the subregions
    coincide (a complex cell); below 0: they are separated by more than their widths (a simple cell with distinct
    subfields). NaN where a map has no excess.
    """
    on, off = np.asarray(on, dtype=np.float64), np.asarray(off, dtype=np.float64)
    if on.shape != off.shape or on.ndim != 3:
        raise ArgumentError("on_off_overlap needs ON and OFF maps of one shape (K, P, P)")
    K, h, w = on.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    pos = np.stack([xx.ravel(), yy.ravel()], 1)  # (P², 2)

    def weights(m):
        m = m.reshape(K, -1)
        med = np.median(m, axis=1, keepdims=True)
        mad = 1.4826 * np.median(np.abs(m - med), axis=1, keepdims=True)
        wgt = np.clip(m - med - 2 * mad, 0, None)
        tot = wgt.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = (wgt @ pos) / tot[:, None]
        return wgt, tot, c

    w_on, t_on, c_on = weights(on)
    w_off, t_off, c_off = weights(off)
    out = np.full(K, np.nan)
    for k in range(K):
        if t_on[k] <= 0 or t_off[k] <= 0:
            continue
        axis = c_on[k] - c_off[k]
        d = float(np.hypot(*axis))
        if d == 0:
            out[k] = 1.0
            continue
        u = axis / d
        s_on = np.sqrt(w_on[k] @ ((pos - c_on[k]) @ u) ** 2 / t_on[k])
        s_off = np.sqrt(w_off[k] @ ((pos - c_off[k]) @ u) ** 2 / t_off[k])
        out[k] = (s_on + s_off - d) / (s_on + s_off + d)
    return out


# --- parametric tuning fits ---------------------------------------------------------------------------------------
# Picking the peak of noisy samples biases it upward and the bandwidth narrow; a fitted curve pools every sample.
# Both forms are b + a·g(x; width, centre), linear in (b, a): for every (width, centre) on a grid the best b, a ≥ 0
# are solved exactly, and the grid is refined twice around the best point (no starting values, no iterations
# that can fail to converge).

def _fit_grid(y: np.ndarray, shape_fn, grids: list, log: list, rounds: int = 3, block: int = 64):
    """Least-squares fit of b + a·shape_fn(*params) (b, a ≥ 0) to each row of ``y`` (K, n) over the product of the
    1-D parameter ``grids`` (equally spaced, on a log axis where ``log``), refined ``rounds`` times on grids 4×
    finer around each row's best point (±1 step of the last grid, 9 points a parameter). ``shape_fn`` takes the
    parameters broadcast against a last axis of n samples. Returns (b, a, [params], residual sum of squares)."""
    K, n = y.shape
    sy, syy = y.sum(1), (y * y).sum(1)
    mesh = [m.ravel() for m in np.meshgrid(*grids, indexing="ij")]
    g = shape_fn(*[m[:, None] for m in mesh])  # (P, n): one grid for every row
    sg, sgg = g.sum(-1), (g * g).sum(-1)
    pick = np.empty(K, np.int64)
    for i in range(0, K, block):  # blocks of rows bound the (rows, P) work arrays
        sl = slice(i, i + block)
        sse = _linear_ls(sy[sl, None], syy[sl, None], sg[None], sgg[None], y[sl] @ g.T, n)[2]
        pick[sl] = sse.argmin(1)
    best = [m[pick] for m in mesh]
    steps = [np.log(gr[1] / gr[0]) if lg else gr[1] - gr[0] for gr, lg in zip(grids, log)]
    offs = np.arange(-4, 5)
    k = np.arange(K)
    for r in range(rounds + 1):
        if r:
            steps = [st / 4 for st in steps]
            axes = [bp[:, None] * np.exp(st * offs)[None] if lg else bp[:, None] + st * offs[None]
                    for bp, st, lg in zip(best, steps, log)]  # (K, 9) each
            D = len(axes)
            cand = [ax.reshape(K, *[9 if j == d else 1 for j in range(D)]) for d, ax in enumerate(axes)]
            cand = [np.broadcast_to(c, (K,) + (9,) * D).reshape(K, -1) for c in cand]  # (K, 9^D)
            g = shape_fn(*[c[..., None] for c in cand])  # (K, 9^D, n)
            b, a, sse = _linear_ls(sy[:, None], syy[:, None], g.sum(-1), (g * g).sum(-1),
                                   np.einsum("kpn,kn->kp", g, y), n)
            j = sse.argmin(1)
            best = [c[k, j] for c in cand]
            out = (b[k, j], a[k, j], best, np.clip(sse[k, j], 0, None))
    return out


def _linear_ls(sy, syy, sg, sgg, sgy, n):
    """Best b, a ≥ 0 of y ≈ b + a·g from the sums of y, y², g, g², g·y over n samples, and the residual sum."""
    den = n * sgg - sg * sg
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(den > 1e-12, (n * sgy - sg * sy) / den, 0.0)
        b = (sy - a * sg) / n
        a0 = np.where(sgg > 0, sgy / sgg, 0.0)  # b clipped at 0
    neg_b = b < 0
    a, b = np.where(neg_b, a0, a), np.where(neg_b, 0.0, b)
    neg_a = a < 0
    a, b = np.where(neg_a, 0.0, a), np.where(neg_a, sy / n, b)
    sse = syy - 2 * a * sgy - 2 * b * sy + a * a * sgg + 2 * a * b * sg + n * b * b
    return b, a, sse


def fit_orientation(curve, theta) -> dict:
    """Von Mises fit of orientation tuning, ``r(θ) = b + a·exp(κ(cos 2(θ − θ₀) − 1))`` per unit (rows of ``curve`` at
    orientations ``theta`` rad over [0, π)), the standard form for V1 orientation tuning (Swindale 1998).

    Returns ``preferred`` (θ₀, rad in [0, π)), ``bandwidth`` (half-width in degrees at 1/√2 of the fitted peak
    b + a, as Ringach et al. 2002 define it on the curve; NaN where the fitted curve never falls to that level,
    or where the fit does not beat a flat line (F test, p < 0.01): untuned), ``kappa``, ``baseline`` b,
    ``amplitude`` a, ``r2`` of the fit and ``tuned``."""
    r = _rows(curve)
    th = np.asarray(theta, dtype=np.float64)
    kappas = np.geomspace(0.05, 200.0, 40)
    centres = np.arange(60) * np.pi / 60

    def vm(k, c):
        return np.exp(k * (np.cos(2 * (th - c)) - 1))

    b, a, (kappa, c), sse = _fit_grid(r, vm, [kappas, centres], [True, False])
    tuned = _beats_flat(r, sse, 4)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = ((b + a) * SQRT_HALF - b) / a  # exp(κ(cos 2Δ − 1)) at the level
        cos2 = 1 + np.log(u) / kappa
        bw = np.where(tuned & (a > 0) & (u > 0) & (cos2 >= -1), np.degrees(np.arccos(np.clip(cos2, -1, 1)) / 2),
                      np.nan)
    fit = b[:, None] + a[:, None] * vm(kappa[:, None], c[:, None])
    return {"preferred": np.mod(c, np.pi), "bandwidth": bw, "kappa": kappa, "baseline": b, "amplitude": a,
            "r2": _r2(r, fit), "tuned": tuned}


def fit_sf(curve, frequencies) -> dict:
    """Log-Gaussian fit of spatial-frequency tuning with a width on each side of the peak (V1 curves fall off
    faster above the peak than below it on a log axis; Hawken & Parker 1987), ``r(f) = b + a·exp(−(log₂ f − μ)² /
    (2σ²))`` with σ = σ_low below μ and σ_high above, per unit (rows of ``curve`` at ``frequencies``, any unit).

    Returns ``peak`` (2^μ, clipped into the tested range), the cut-offs ``f_low < f_high`` where the fitted curve
    falls to 1/√2 of its peak b + a, ``bandwidth_octaves`` = log₂(f_high/f_low), ``bandwidth_schiller`` =
    100·f_low/f_high, ``selective`` (band-pass: the fit beats a flat line, F test p < 0.01, and both cut-offs
    lie inside the tested range; the bandwidths are NaN otherwise) and ``r2`` of the fit."""
    r = _rows(curve)
    f = np.asarray(frequencies, dtype=np.float64)
    if f.ndim != 1 or len(f) < 3 or np.any(np.diff(f) <= 0) or f[0] <= 0:
        raise ArgumentError("sf_tuning needs >= 3 increasing positive frequencies")
    x = np.log2(f)
    sigmas = np.geomspace(0.15, 6.0, 20)
    centres = np.linspace(x[0] - 1.0, x[-1] + 1.0, 40)

    def lg(s_lo, s_hi, m):
        return np.exp(-((x - m) ** 2) / (2 * np.where(x < m, s_lo, s_hi) ** 2))

    b, a, (s_lo, s_hi, mu), sse = _fit_grid(r, lg, [sigmas, sigmas, centres], [True, True, False])
    tuned = _beats_flat(r, sse, 5)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = ((b + a) * SQRT_HALF - b) / a
        d = np.sqrt(-2 * np.log(np.where((a > 0) & (u > 0) & (u < 1), u, np.nan)))
    lo, hi = mu - s_lo * d, mu + s_hi * d
    selective = tuned & np.isfinite(d) & (lo >= x[0]) & (hi <= x[-1])
    nan = np.full(len(r), np.nan)
    fit = b[:, None] + a[:, None] * lg(s_lo[:, None], s_hi[:, None], mu[:, None])
    return {"peak": np.where(a > 0, 2 ** np.clip(mu, x[0], x[-1]), np.nan),
            "f_low": np.where(selective, 2**lo, nan), "f_high": np.where(selective, 2**hi, nan),
            "bandwidth_octaves": np.where(selective, hi - lo, nan),
            "bandwidth_schiller": np.where(selective, 100.0 * 2 ** (lo - hi), nan), "selective": selective,
            "r2": _r2(r, fit)}


def _beats_flat(y: np.ndarray, sse: np.ndarray, n_params: int, alpha: float = 0.01) -> np.ndarray:
    """Whether a fit with ``n_params`` parameters explains each row of ``y`` better than its mean (F test at
    ``alpha``): a noisy flat curve must not be read as a narrow tuning curve."""
    from scipy import stats

    n = y.shape[1]
    ss0 = ((y - y.mean(1, keepdims=True)) ** 2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        F = ((ss0 - sse) / (n_params - 1)) / (sse / (n - n_params))
        p = np.where(sse > 0, stats.f.sf(F, n_params - 1, n - n_params), np.where(ss0 > 0, 0.0, 1.0))
    return p < alpha


def _r2(y: np.ndarray, fit: np.ndarray) -> np.ndarray:
    ss = ((y - y.mean(1, keepdims=True)) ** 2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss > 0, 1 - ((y - fit) ** 2).sum(1) / ss, np.nan)
