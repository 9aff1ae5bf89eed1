"""Receptive fields of model units: spike-triggered averages, grating tuning and 2-D Gabor fits.

Conventions: images are (P, P) arrays indexed [row y, column x], pixel centres at integer
coordinates. A Gabor is

    G(x, y) = A · exp(−x'²/(2σx²) − y'²/(2σy²)) · cos(2π f x' + φ)
    x' =  (x − x0) cos θ + (y − y0) sin θ,   y' = −(x − x0) sin θ + (y − y0) cos θ

with θ ∈ [0, π) the direction of the wave vector (radians), f in cycles/pixel and σx across the
stripes. (nx, ny) = (σx·f, σy·f) are the dimensionless envelope sizes of Ringach (2002).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ..errors import ArgumentError

__all__ = ["sta", "sta_snr", "frames_for_snr", "STA_SNR_MIN", "grating_tuning", "GratingTuning", "gabor", "fit_gabor", "GaborFit"]


def sta(stimuli: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Spike-triggered average of every unit: ``Σ_n c_nk x_n / Σ_n c_nk`` (vectorised).

    Parameters
    ----------
    stimuli : ndarray (n, P, P)
        The frame shown in each presentation (zero-mean white noise for an unbiased RF).
    counts : ndarray (n, K)
        Spikes of each unit in each presentation window.

    Returns
    -------
    ndarray (K, P, P); NaN for units that never fired.
    """
    x = np.asarray(stimuli, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if len(x) != len(c):
        raise ArgumentError(f"{len(x)} stimuli but {len(c)} rows of counts")
    total = c.sum(0)  # (K,)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (c.T @ x.reshape(len(x), -1)) / total[:, None]
    return out.reshape(c.shape[1], *x.shape[1:])


class GratingTuning(NamedTuple):
    """Orientation and spatial-frequency tuning of K units."""

    orientations: np.ndarray  # (O,) rad, in [0, π)
    frequencies: np.ndarray  # (F,) cycles/pixel
    response: np.ndarray  # (K, O, F) mean response, averaged over phases
    osi: np.ndarray  # (K,) 1 − circular variance of the orientation curve at the preferred frequency
    preferred_orientation: np.ndarray  # (K,) rad, from the vector sum
    preferred_frequency: np.ndarray  # (K,) cycles/pixel
    sem: np.ndarray | None = None  # (K, O, F) standard error of ``response`` over repeats (None: one repeat)
    n_repeats: int = 1  # repeats behind ``sem``


#: an STA whose peak stands this many noise s.d. out fits a Gabor reliably (measured on the shipped P-VAE: median
#: 11 for the units that fit at R² ≥ 0.5, 7 for those that do not; pure noise gives about 3 on 16×16)
STA_SNR_MIN = 8.0


def _noise_peak(n_pixels: int) -> float:
    """Median of the largest |N(0, 1)| over ``n_pixels`` independent pixels: a pure-noise STA's peak, in noise s.d."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 * (1.0 + 0.5 ** (1.0 / n_pixels))))


def sta_snr(stimuli: np.ndarray, responses: np.ndarray, maps: np.ndarray | None = None) -> np.ndarray:
    """Peak of each unit's STA in units of the STA's own noise s.d. (K,).

    For white-noise frames of s.d. σ, the response-weighted average ``Σ c x / Σ c`` of frames unrelated to the
    response has s.d. σ/√n_eff per pixel, with ``n_eff = (Σ c)² / Σ c²`` (the number of spikes for 0/1 counts).
    The peak |STA| over that s.d. is about 3 for pure noise on 16×16 (:func:`_noise_peak`) and grows as √frames
    once a receptive field stands out.
    """
    x = np.asarray(stimuli, dtype=np.float64)
    c = np.asarray(responses, dtype=np.float64)
    m = sta(x, c) if maps is None else np.asarray(maps, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = c.sum(0) ** 2 / (c**2).sum(0)
        return np.abs(m.reshape(len(m), -1)).max(1) / (x.std() / np.sqrt(n_eff))


def frames_for_snr(frames: int, snr: float, n_pixels: int, target: float = STA_SNR_MIN) -> int | None:
    """White-noise frames for an STA of peak SNR ``snr`` at ``frames`` to reach ``target``: the signal part
    √(snr² − noise peak²) grows as √frames. None when ``snr`` is within 5 % of the noise peak: no signal is
    measurable yet, so no number of frames can be extrapolated from it."""
    floor = _noise_peak(n_pixels)
    if snr < 1.05 * floor:
        return None
    signal = np.sqrt(snr**2 - floor**2)
    need = np.sqrt(max(target**2 - floor**2, 0.0))
    return int(np.ceil(frames * (need / signal) ** 2))


def grating_tuning(responses: np.ndarray, orientation: np.ndarray, frequency: np.ndarray,
                   repeats: np.ndarray | None = None) -> GratingTuning:
    """Tuning from responses (n, K) to gratings with per-presentation ``orientation`` and ``frequency``.

    OSI = |Σ_θ r(θ) e^{2iθ}| / Σ_θ r(θ) (1 − circular variance) at each unit's preferred frequency;
    1 for a unit that responds to one orientation only, 0 for an untuned one.

    ``repeats`` (R, n, K), optional: the responses of each of R ≥ 2 repeats (``responses`` is their mean).
    Each repeat's response per (orientation, frequency) is averaged over phases, and ``sem`` is the
    standard error of that average over repeats (sample s.d. with ddof = 1, divided by √R).
    """
    r = np.asarray(responses, dtype=np.float64)
    sem, n_rep = None, 1
    if repeats is not None and len(repeats) >= 2:
        per = np.stack([grating_tuning(rr, orientation, frequency).response for rr in np.asarray(repeats, float)])
        n_rep = len(per)
        sem = per.std(0, ddof=1) / np.sqrt(n_rep)
    oris = np.unique(np.round(np.mod(orientation, np.pi), 12))
    freqs = np.unique(frequency)
    oi = np.searchsorted(oris, np.round(np.mod(orientation, np.pi), 12))
    fi = np.searchsorted(freqs, frequency)
    K = r.shape[1]
    tot = np.zeros((K, len(oris), len(freqs)))
    n = np.zeros((len(oris), len(freqs)))
    np.add.at(n, (oi, fi), 1)
    for k in range(K):
        np.add.at(tot[k], (oi, fi), r[:, k])
    mean = tot / np.maximum(n, 1)
    pf = mean.max(1).argmax(1)  # (K,) preferred frequency index (peak over orientations)
    curve = mean[np.arange(K), :, pf]  # (K, O)
    vec = (curve * np.exp(2j * oris)[None, :]).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        osi = np.abs(vec) / curve.sum(1)
    return GratingTuning(oris, freqs, mean, osi, np.mod(np.angle(vec) / 2, np.pi), freqs[pf], sem, n_rep)


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> np.ndarray:
    g = np.mgrid[0:h, 0:w].astype(np.float64)
    g.setflags(write=False)
    return g


def gabor(shape: tuple[int, int], x0: float, y0: float, theta: float, f: float, phase: float, sx: float, sy: float,
          amplitude: float = 1.0) -> np.ndarray:
    """The Gabor of the module docstring sampled on a ``shape`` pixel grid."""
    yy, xx = _grid(int(shape[0]), int(shape[1]))
    xr = (xx - x0) * np.cos(theta) + (yy - y0) * np.sin(theta)
    yr = -(xx - x0) * np.sin(theta) + (yy - y0) * np.cos(theta)
    return amplitude * np.exp(-xr**2 / (2 * sx**2) - yr**2 / (2 * sy**2)) * np.cos(2 * np.pi * f * xr + phase)


def _gabor_jacobian(p, shape: tuple[int, int]) -> np.ndarray:
    """∂G/∂(x0, y0, θ, f, φ, σx, σy, A) at every pixel, (h·w, 8): the analytic Jacobian of :func:`gabor` (half the
    cost of least squares' finite differences, same fits to 1e-9 in R²; checked against central differences)."""
    x0, y0, th, f, ph, sx, sy, amp = p
    yy, xx = _grid(int(shape[0]), int(shape[1]))
    dx, dy = xx - x0, yy - y0
    c, s = np.cos(th), np.sin(th)
    xr, yr = dx * c + dy * s, -dx * s + dy * c
    gauss = np.exp(-xr**2 / (2 * sx**2) - yr**2 / (2 * sy**2))
    env = amp * gauss
    arg = 2 * np.pi * f * xr + ph
    cos, sin = np.cos(arg), np.sin(arg)
    d_xr = env * (-xr / sx**2 * cos - 2 * np.pi * f * sin)  # ∂G/∂x'
    d_yr = env * (-yr / sy**2) * cos  # ∂G/∂y'
    jac = np.stack([-c * d_xr + s * d_yr, -s * d_xr - c * d_yr, yr * d_xr - xr * d_yr, -env * sin * 2 * np.pi * xr,
                    -env * sin, env * cos * xr**2 / sx**3, env * cos * yr**2 / sy**3, gauss * cos], -1)
    return jac.reshape(-1, 8)


class GaborFit(NamedTuple):
    """Least-squares Gabor fit of one image."""

    x0: float  # envelope centre, column, px
    y0: float  # envelope centre, row, px
    theta: float  # wave-vector direction, rad in [0, π)
    frequency: float  # cycles/pixel
    phase: float  # rad
    sigma_x: float  # envelope s.d. across the stripes, px
    sigma_y: float  # envelope s.d. along the stripes, px
    amplitude: float
    r2: float  # goodness of fit, 1 − SSE/SST
    nx: float  # σx·f (Ringach 2002)
    ny: float  # σy·f


def fit_gabor(img: np.ndarray) -> GaborFit:
    """Fit a 2-D Gabor by least squares (scipy), started from the spectral peak and the energy centroid."""
    from scipy.optimize import least_squares

    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2 or not np.all(np.isfinite(img)):
        raise ArgumentError("fit_gabor needs a finite 2-D image")
    h, w = img.shape
    pad = 64
    spec = np.abs(np.fft.fft2(img - img.mean(), s=(pad, pad)))
    spec[0, 0] = 0
    iy, ix = np.unravel_index(spec.argmax(), spec.shape)
    fy, fx = np.fft.fftfreq(pad)[iy], np.fft.fftfreq(pad)[ix]
    f0 = max(float(np.hypot(fx, fy)), 1.0 / max(h, w))
    th0 = float(np.mod(np.arctan2(fy, fx), np.pi))
    e = img**2
    yy, xx = np.mgrid[0:h, 0:w]
    x0, y0 = float((e * xx).sum() / e.sum()), float((e * yy).sum() / e.sum())
    amp0 = float(np.abs(img).max())
    sst = float(((img - img.mean()) ** 2).sum())

    def resid(p):
        return (gabor(img.shape, *p) - img).ravel()

    lo = [-0.5, -0.5, -np.pi, 0.01, -2 * np.pi, 0.3, 0.3, -np.inf]
    hi = [w - 0.5, h - 0.5, 2 * np.pi, 0.5, 4 * np.pi, 2.0 * max(h, w), 2.0 * max(h, w), np.inf]
    best = None
    for ph in (0.0, np.pi / 2, np.pi, 3 * np.pi / 2):
        p0 = [min(max(x0, lo[0]), hi[0]), min(max(y0, lo[1]), hi[1]), th0, min(max(f0, 0.011), 0.49), ph,
              2.0, 2.0, amp0]
        r = least_squares(resid, p0, jac=lambda q: _gabor_jacobian(q, img.shape), bounds=(lo, hi), method="trf",
                          x_scale="jac", max_nfev=400)
        if best is None or r.cost < best.cost:
            best = r
    x0, y0, th, f, ph, sx, sy, amp = best.x
    if amp < 0:  # A cos(u) = −A cos(u + π)
        amp, ph = -amp, ph + np.pi
    if np.mod(th, 2 * np.pi) >= np.pi:  # (θ + π, −φ) is the same Gabor
        ph = -ph
    th = float(np.mod(th, np.pi))
    ph = float(np.mod(ph, 2 * np.pi))
    r2 = 1.0 - 2 * best.cost / sst if sst > 0 else np.nan
    return GaborFit(float(x0), float(y0), th, float(f), ph, float(sx), float(sy), float(amp), float(r2),
                    float(sx * f), float(sy * f))
