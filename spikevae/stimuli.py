"""Stimulus sets in model-input space: held-out natural patches, white noise, gratings, user images.

Every function returns float32 arrays (n, P, P) on the scale of the model's
training data (whitened, contrast-normalised patches have unit variance per
pixel, so white noise and gratings are scaled to unit variance too) together
with a small table of per-stimulus parameters.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from .data import DataError, Preprocessing, extract_patches, natural_val_patches, preprocess_images, read_image_folder
from .errors import ArgumentError

__all__ = ["StimulusSet", "natural", "white_noise", "gratings", "grating_grid", "aperture_gratings", "from_folder",
           "make_stimuli", "DEFAULT_FREQUENCIES"]

#: spatial frequencies (cycles/pixel) of the V1 property battery: 12 steps of 0.38 octave below Nyquist
DEFAULT_FREQUENCIES = tuple(float(f) for f in np.geomspace(0.025, 0.45, 12))


class StimulusSet(NamedTuple):
    """Stimuli in model-input space and their parameters."""

    images: np.ndarray  # (n, P, P) float32
    kind: str  # natural | white-noise | gratings | images
    params: dict  # per-stimulus parameter arrays (e.g. orientation, spatial_frequency, phase)
    description: str


def natural(n: int, prep: Preprocessing, seed: int = 0) -> StimulusSet:
    """Held-out natural patches (from the validation photographs only)."""
    return StimulusSet(natural_val_patches(n, prep, seed), "natural", {},
                       "held-out whitened natural-image patches (validation photographs)")


def white_noise(n: int, size: int, rng: np.random.Generator) -> StimulusSet:
    """Gaussian white noise, unit variance per pixel."""
    return StimulusSet(rng.standard_normal((n, size, size)).astype(np.float32), "white-noise", {},
                       "Gaussian white noise, unit variance per pixel")


def gratings(n: int, size: int, n_orientations: int = 8, frequencies=(0.0625, 0.125, 0.25, 0.375)) -> StimulusSet:
    """Full-field sinusoidal gratings, unit variance per pixel: every orientation × frequency, at ``n / (orientations ×
    frequencies)`` evenly spaced phases.

    Orientation θ in [0, π) is the direction of the wave vector; frequency in cycles/pixel. ``n`` must be a
    multiple of the grid (8 × 4 = 32 by default): a set that does not span every orientation and frequency is
    refused (:class:`~spikevae.errors.ArgumentError` naming the nearest valid ``n``), never shrunk silently.
    """
    grid_size = n_orientations * len(frequencies)
    if n < grid_size or n % grid_size:
        lo = max(grid_size, n // grid_size * grid_size)
        near = min((lo, lo + grid_size), key=lambda m: (abs(m - n), m))
        raise ArgumentError(f"{n} gratings cannot span the grid of {n_orientations} orientations x {len(frequencies)} "
                            f"spatial frequencies: use a multiple of {grid_size} (nearest: {near}; each multiple adds "
                            "one phase)")
    n_phases = n // grid_size
    th = np.arange(n_orientations) * np.pi / n_orientations
    grid = np.array([(t, f, ph) for f in frequencies for t in th
                     for ph in np.arange(n_phases) * 2 * np.pi / n_phases])
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    arg = 2 * np.pi * grid[:, 1, None, None] * (np.cos(grid[:, 0, None, None]) * xx + np.sin(grid[:, 0, None, None]) * yy)
    img = np.sqrt(2) * np.cos(arg + grid[:, 2, None, None])  # amplitude √2: unit variance
    return StimulusSet(img.astype(np.float32), "gratings",
                       {"orientation": grid[:, 0], "spatial_frequency": grid[:, 1], "phase": grid[:, 2]},
                       "sinusoidal gratings (orientation rad, spatial frequency cycles/pixel, phase rad)")


def _grating(size: int, theta, freq, phase, centre=None) -> np.ndarray:
    """Sinusoids (n, size, size) of amplitude √2 (unit variance over a full field); phase 0 peaks at ``centre``
    (default: the patch centre) so a grating's phase is relative to the receptive field's centre."""
    theta, freq, phase = (np.asarray(v, dtype=np.float64)[:, None, None] for v in (theta, freq, phase))
    c = np.full((theta.shape[0], 2), (size - 1) / 2) if centre is None else np.asarray(centre, dtype=np.float64)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    xr = (xx[None] - c[:, 0, None, None]) * np.cos(theta) + (yy[None] - c[:, 1, None, None]) * np.sin(theta)
    return np.sqrt(2) * np.cos(2 * np.pi * freq * xr + phase)


def grating_grid(size: int, n_orientations: int = 16, frequencies=DEFAULT_FREQUENCIES, n_phases: int = 8) -> StimulusSet:
    """Every orientation × spatial frequency, each as one cycle of a drifting grating: ``n_phases`` consecutive
    frames with the phase advancing by 2π/n_phases (so responses frame by frame give F1/F0).

    Order: orientation (slowest), frequency, phase (fastest). Orientation θ ∈ [0, π) is the wave-vector direction;
    frequency in cycles/pixel; amplitude √2 (unit variance per pixel, the scale of the training data).
    """
    th = np.arange(n_orientations) * np.pi / n_orientations
    ph = np.arange(n_phases) * 2 * np.pi / n_phases
    t, f, p = (a.ravel() for a in np.meshgrid(th, np.asarray(frequencies, dtype=np.float64), ph, indexing="ij"))
    return StimulusSet(_grating(size, t, f, p).astype(np.float32), "grating-grid",
                       {"orientation": t, "spatial_frequency": f, "phase": p},
                       f"drifting gratings, {n_orientations} orientations x {len(f) // n_orientations // n_phases} "
                       f"spatial frequencies x {n_phases} phases per cycle (orientation rad, spatial frequency "
                       "cycles/pixel, phase rad)")


def aperture_gratings(size: int, theta, freq, centre, diameters, n_phases: int = 4) -> StimulusSet:
    """Gratings in circular apertures of increasing diameter (pixels) on a blank (zero) field, one set per unit.

    ``theta``, ``freq`` (n_units,) and ``centre`` (n_units, 2: column x, row y in pixels) give each unit's grating
    and aperture centre; order: unit (slowest), diameter, phase. The aperture edge is anti-aliased over one pixel
    (a pixel's weight is the fraction of it inside, to first order), so responses change smoothly with diameter.
    """
    theta, freq = np.atleast_1d(theta).astype(np.float64), np.atleast_1d(freq).astype(np.float64)
    centre = np.atleast_2d(np.asarray(centre, dtype=np.float64))
    d = np.asarray(diameters, dtype=np.float64)
    ph = np.arange(n_phases) * 2 * np.pi / n_phases
    u, di, p = (a.ravel() for a in np.meshgrid(np.arange(len(theta)), np.arange(len(d)), np.arange(n_phases),
                                                 indexing="ij"))
    img = _grating(size, theta[u], freq[u], ph[p], centre[u])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.hypot(xx[None] - centre[u, 0, None, None], yy[None] - centre[u, 1, None, None])
    img *= np.clip(d[di, None, None] / 2 - r + 0.5, 0.0, 1.0)
    return StimulusSet(img.astype(np.float32), "aperture-gratings",
                       {"unit": u, "orientation": theta[u], "spatial_frequency": freq[u], "phase": ph[p],
                        "diameter": d[di], "centre_x": centre[u, 0], "centre_y": centre[u, 1]},
                       "gratings in circular apertures on a blank field (orientation rad, spatial frequency "
                       "cycles/pixel, phase rad, diameter and centre in pixels)")


def from_folder(folder: str | os.PathLike, n: int, prep: Preprocessing, rng: np.random.Generator) -> StimulusSet:
    """Random patches from the user's images, preprocessed with the checkpoint's stored preprocessing."""
    imgs = read_image_folder(folder)
    proc = preprocess_images(imgs, prep)
    names = list(proc)
    which = rng.integers(0, len(names), n)
    out = np.empty((n, prep.patch_size, prep.patch_size), np.float32)
    for j, name in enumerate(names):
        idx = np.nonzero(which == j)[0]
        if len(idx):
            out[idx] = extract_patches(proc[name], prep.patch_size, len(idx), rng)
    return StimulusSet(out, "images", {"image": np.array(names)[which]}, f"patches of the images in {folder}")


def make_stimuli(kind: str, n: int, prep: Preprocessing, seed: int = 0) -> StimulusSet:
    """``natural | white-noise | gratings | <folder>`` → StimulusSet."""
    if n <= 0:
        raise DataError(f"number of stimuli must be > 0, got {n}")
    rng = np.random.default_rng(seed)
    if kind == "natural":
        if prep.kind != "natural":
            raise DataError("natural stimuli need a model trained on natural-image patches")
        return natural(n, prep, seed)
    if kind == "white-noise":
        return white_noise(n, prep.patch_size, rng)
    if kind == "gratings":
        return gratings(n, prep.patch_size)
    if os.path.isdir(kind):
        return from_folder(kind, n, prep, rng)
    raise DataError(f"--stimuli must be natural, white-noise, gratings or an image folder; {kind!r} is none of these")
