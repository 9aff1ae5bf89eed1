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

__all__ = ["StimulusSet", "natural", "white_noise", "gratings", "from_folder", "make_stimuli"]


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


def gratings(n: int, size: int, n_orientations: int = 8, frequencies=(0.0625, 0.125, 0.25, 0.375),
             n_phases: int = 4) -> StimulusSet:
    """Full-field sinusoidal gratings, unit variance per pixel, cycling orientation × frequency × phase.

    Orientation θ in [0, π) is the direction of the wave vector; frequency in cycles/pixel.
    """
    th = np.arange(n_orientations) * np.pi / n_orientations
    grid = np.array([(t, f, ph) for f in frequencies for t in th
                     for ph in np.arange(n_phases) * 2 * np.pi / n_phases])
    grid = grid[np.arange(n) % len(grid)]
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    arg = 2 * np.pi * grid[:, 1, None, None] * (np.cos(grid[:, 0, None, None]) * xx + np.sin(grid[:, 0, None, None]) * yy)
    img = np.sqrt(2) * np.cos(arg + grid[:, 2, None, None])  # amplitude √2: unit variance
    return StimulusSet(img.astype(np.float32), "gratings",
                       {"orientation": grid[:, 0], "spatial_frequency": grid[:, 1], "phase": grid[:, 2]},
                       "sinusoidal gratings (orientation rad, spatial frequency cycles/pixel, phase rad)")


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
