"""Data sets: natural-image patches (train and validation split by photograph), folders, digits, MNIST, patch statistics."""
from __future__ import annotations

import gzip
import logging
import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from .images import NATURAL_TRAIN, NATURAL_VAL, natural_image_shapes, natural_images, read_image_folder
from .preprocessing import Preprocessing, extract_patches, preprocess_images, preprocessed_shape

__all__ = ["PatchSet", "image_patches", "patches_by_area", "natural_patches", "natural_val_patches",
           "folder_patches", "digits", "read_idx", "mnist", "DATASETS", "load_dataset", "NEAR_BLANK_ENERGY",
           "patch_statistics"]


log = logging.getLogger(__name__)


class PatchSet(NamedTuple):
    """Train/validation arrays of model inputs, float32 (n, P, P), plus optional labels."""

    train: np.ndarray
    val: np.ndarray
    preprocessing: Preprocessing
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    source: str = ""


def image_patches(
    train_images: dict[str, np.ndarray],
    val_images: dict[str, np.ndarray],
    prep: Preprocessing,
    n_train: int,
    n_val: int,
    rng: np.random.Generator,
    source: str = "",
) -> PatchSet:
    """Preprocess images and cut patches; counts per image in proportion to its area."""
    if n_train <= 0 or n_val <= 0:
        raise DataError(f"n_train and n_val must be > 0, got {n_train} and {n_val}")

    def cut(images, n):
        return patches_by_area(list(preprocess_images(images, prep).values()), prep.patch_size, n, rng,
                               prep.min_energy if prep.kind == "natural" else 0.0)

    return PatchSet(cut(train_images, n_train), cut(val_images, n_val), prep, source=source)


def patches_by_area(images: list, size: int, n: int, rng: np.random.Generator, min_energy: float = 0.0) -> np.ndarray:
    """``n`` random patches (n, size, size) from preprocessed images, each image's share in proportion to its area;
    patches with energy below ``min_energy`` are redrawn (:func:`~spikevae.data.extract_patches`)."""
    area = np.array([im.size for im in images], dtype=float)
    counts = np.floor(n * area / area.sum()).astype(int)
    counts[: n - counts.sum()] += 1
    return np.concatenate([extract_patches(im, size, c, rng, min_energy) for im, c in zip(images, counts)])


def natural_patches(n_train: int = 100_000, n_val: int = 10_000, prep: Preprocessing | None = None,
                    seed: int = 0) -> PatchSet:
    """Whitened, contrast-normalised patches from the shipped photographs, split by image."""
    prep = prep or Preprocessing()
    imgs = natural_images()
    rng = np.random.default_rng(seed)
    return image_patches({k: imgs[k] for k in NATURAL_TRAIN}, {k: imgs[k] for k in NATURAL_VAL},
                         prep, n_train, n_val, rng, source="natural (scikit-image/scikit-learn/matplotlib photographs)")


def natural_val_patches(n: int, prep: Preprocessing | None = None, seed: int = 0) -> np.ndarray:
    """``natural_patches(1, n, prep, seed).val`` without preprocessing the training photographs: their one
    patch is drawn from blank images of the same shapes (read from the files' headers), which takes the same
    random numbers."""
    prep = prep or Preprocessing()
    shapes = natural_image_shapes(NATURAL_TRAIN)
    rng = np.random.default_rng(seed)
    if prep.min_energy > 0:
        rng.random(1)  # the one training patch: one uniform, whatever the image
    else:
        patches_by_area([np.zeros(preprocessed_shape(shapes[k], prep), np.float32) for k in NATURAL_TRAIN],
                        prep.patch_size, 1, rng)
    if n <= 0:
        raise DataError(f"n_train and n_val must be > 0, got 1 and {n}")
    return patches_by_area(list(preprocess_images(natural_images(NATURAL_VAL), prep).values()),
                           prep.patch_size, n, rng, prep.min_energy)


def folder_patches(folder: str | os.PathLike, n_train: int, n_val: int, prep: Preprocessing | None = None,
                   seed: int = 0, val_fraction: float = 0.2) -> PatchSet:
    """Patches from a user's image folder; the last ``val_fraction`` of the files (by name) validate."""
    prep = prep or Preprocessing()
    imgs = read_image_folder(folder)
    names = list(imgs)
    if len(names) < 2:
        raise DataError(f"{folder}: need at least 2 images for a train/validation split by image")
    n_v = max(1, int(round(val_fraction * len(names))))
    tr, va = names[:-n_v], names[-n_v:]
    return image_patches({k: imgs[k] for k in tr}, {k: imgs[k] for k in va}, prep, n_train, n_val,
                         np.random.default_rng(seed), source=f"images from {folder}")


# ------------------------------------------------------------------ digits
def digits(seed: int = 0, val_fraction: float = 0.2) -> PatchSet:
    """scikit-learn's 8 x 8 digits scaled to [0, 1], random split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    prep = Preprocessing(kind="scale", patch_size=8, scale=16.0, crop=0)
    x = (d.images / 16.0).astype(np.float32)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(val_fraction * len(x)))
    va, tr = perm[:n_val], perm[n_val:]
    return PatchSet(x[tr], x[va], prep, d.target[tr], d.target[va], source="scikit-learn digits")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (MNIST format; ``.gz`` accepted) into an array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] not in dtypes:
                raise DataError(f"{path} is not an IDX file (bad magic number)")
            ndim = head[3]
            dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
            data = np.frombuffer(f.read(), dtype=dtypes[head[2]])
    except (OSError, struct.error, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {data.size} values (truncated?)")
    return data.reshape(dims)


def mnist(folder: str | os.PathLike) -> PatchSet:
    """MNIST from the four IDX files in ``folder`` (train = 60k, validation = the test set)."""
    folder = Path(folder)

    def find(stem):
        for name in (stem, stem + ".gz"):
            if (folder / name).exists():
                return folder / name
        raise DataError(f"{folder}: missing MNIST file {stem}[.gz]")

    xtr = read_idx(find("train-images-idx3-ubyte"))
    ytr = read_idx(find("train-labels-idx1-ubyte"))
    xva = read_idx(find("t10k-images-idx3-ubyte"))
    yva = read_idx(find("t10k-labels-idx1-ubyte"))
    if xtr.ndim != 3 or len(xtr) != len(ytr) or len(xva) != len(yva):
        raise DataError(f"{folder}: MNIST images and labels do not match")
    side = xtr.shape[1]
    prep = Preprocessing(kind="scale", patch_size=side, scale=255.0, crop=0)
    f = lambda a: (a / 255.0).astype(np.float32)  # noqa: E731
    return PatchSet(f(xtr), f(xva), prep, ytr.astype(np.int64), yva.astype(np.int64), source=f"MNIST from {folder}")


DATASETS = ("natural", "digits", "mnist", "images")


def load_dataset(name: str, *, n_train: int = 100_000, n_val: int = 10_000, patch_size: int = 16,
                 images: str | None = None, mnist_dir: str | None = None, seed: int = 0,
                 prep: Preprocessing | None = None) -> PatchSet:
    """One entry point for the command line: ``natural | digits | mnist | images``.

    ``prep`` (natural and images): the preprocessing; default ``Preprocessing(patch_size=patch_size)``.
    """
    prep = prep or Preprocessing(patch_size=patch_size)
    if name == "natural":
        return natural_patches(n_train, n_val, prep, seed)
    if name == "images":
        if not images:
            raise DataError("dataset 'images' needs an image folder (--images DIR)")
        return folder_patches(images, n_train, n_val, prep, seed)
    if name == "digits":
        return digits(seed)
    if name == "mnist":
        if not mnist_dir:
            raise DataError("dataset 'mnist' needs the folder of IDX files (--mnist DIR)")
        return mnist(mnist_dir)
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


# ------------------------------------------------------------- statistics
#: a patch whose energy (sum of squares over its pixels) is below this is "near-blank"; after the z-score a
#: 16 x 16 patch has energy 256 on average
NEAR_BLANK_ENERGY = 10.0


def patch_statistics(patches: np.ndarray, blank_energy: float = NEAR_BLANK_ENERGY) -> dict:
    """How rich a set of patches is: dimensionality, near-blank share and power spectrum.

    Parameters
    ----------
    patches : ndarray (n, P, P)
    blank_energy : float
        Energy (sum of squares) below which a patch counts as near-blank.

    Returns
    -------
    dict
        ``pcs_for_90``: principal components needed for 90 % of the variance; ``participation_ratio``
        (Σλ)² / Σλ² of the covariance eigenvalues; ``near_blank_fraction``; ``spectrum_f`` and
        ``spectrum`` (radially averaged power of the patches' 2-D DFT in bins of 1/P cycles/pixel, DC
        left out, normalised to mean 1); ``eigenvalues`` (descending); ``axis_excess``: power on the
        frequency axes over the power at the same |f| off the axes, at 1/8 and 1/4 cycles/pixel
        (JPEG's 8-pixel blocks add power on the axes there; 1 when there is none).

    Examples
    --------
    >>> s = patch_statistics(np.random.default_rng(0).normal(size=(20_000, 8, 8)))
    >>> round(s["participation_ratio"]), s["near_blank_fraction"]
    (64, 0.0)
    """
    x = np.asarray(patches, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] != x.shape[2] or len(x) < 2:
        raise DataError(f"patches must be (n >= 2, P, P), got shape {x.shape}")
    from ..analysis.geometry import principal_components

    n, p, _ = x.shape
    flat = x.reshape(n, -1)
    ev = principal_components(x)[1]  # covariance eigenvalues, largest first
    power = (np.abs(np.fft.fft2(x)) ** 2).mean(0)  # (P, P)
    f = np.fft.fftfreq(p)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    radius = np.rint(np.hypot(fx, fy) * p).astype(int)  # |f| in bins of 1/P
    keep = (radius > 0) & (radius <= p // 2)
    ring = np.bincount(radius[keep], power[keep], p // 2 + 1)[1:] / np.bincount(radius[keep], minlength=p // 2 + 1)[1:]
    on_axis = (fx == 0) | (fy == 0)
    excess = {}
    for cyc in (1 / 8, 1 / 4):
        if (cyc * p) % 1:  # not on the DFT grid of this patch size
            continue
        sel = radius == int(cyc * p)
        excess[f"{cyc:g}"] = float(power[sel & on_axis].mean() / power[sel & ~on_axis].mean())
    return {"n_patches": n, "dims": p * p,
            "pcs_for_90": int(np.searchsorted(np.cumsum(ev) / ev.sum(), 0.9) + 1),
            "participation_ratio": float(ev.sum() ** 2 / (ev**2).sum()),
            "near_blank_fraction": float(((flat**2).sum(1) < blank_energy).mean()),
            "spectrum_f": (np.arange(1, p // 2 + 1) / p).tolist(), "spectrum": (ring / ring.mean()).tolist(),
            "eigenvalues": ev.tolist(), "axis_excess": excess}

