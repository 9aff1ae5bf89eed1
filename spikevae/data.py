"""Offline data: whitened natural-image patches, user image folders, digits and MNIST.

Natural images
--------------
The photographs that scikit-image and scikit-learn ship (no download) are made
grey, then processed as Olshausen & Field (1996) and the P-VAE reference do:

0. downsampling: block-average ``downsample`` x ``downsample`` pixels (default 4,
   as van Hateren-based pipelines downsample their frames): the shipped photographs
   are 8-bit JPEGs whose top octave at native resolution is blur and compression
   noise, and their flat regions (sky, walls) would fill the data with near-blank
   patches; at 4x the validation patches have participation ratio ~140 and ~4 %
   near-blank, against 64 and 20 % at native resolution (``analysis/patch_statistics.py``);
1. whitening: multiply the spectrum by ``R(f) = f · exp(-(f/f0)^n)`` with ``f``
   in cycles/pixel of the downsampled image (``n = 4``; ``f0 = 0.5``, the
   reference's value);
2. local contrast normalisation (Jarrett et al. 2009, as the reference's
   ``LocContrastNorm``): subtract a Gaussian-weighted local mean (σ = 3 px,
   13-tap kernel), divide by the Gaussian-weighted local standard deviation
   floored at its image mean;
3. z-score each image, crop ``crop`` pixels from each border (filter edge effects);
4. cut ``patch_size`` x ``patch_size`` patches at random positions.

The split is by image: validation patches come only from the validation
photographs. All parameters travel in :class:`Preprocessing` (and so in the
checkpoint), so :func:`preprocess_image` turns any raw image into model input.
"""
from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "Preprocessing",
    "PatchSet",
    "NATURAL_TRAIN",
    "NATURAL_VAL",
    "DataError",
    "whitening_filter",
    "whiten",
    "local_contrast_normalise",
    "preprocess_image",
    "preprocess_images",
    "extract_patches",
    "patches_by_area",
    "natural_images",
    "natural_image_shapes",
    "read_image",
    "read_image_folder",
    "image_patches",
    "natural_patches",
    "natural_val_patches",
    "preprocessed_shape",
    "folder_patches",
    "DATASETS",
    "digits",
    "read_idx",
    "mnist",
    "load_dataset",
    "patch_statistics",
    "NEAR_BLANK_ENERGY",
]

#: shipped photographs used for training, research/stack.md §5. Left out: the textures (brick is a
#: near-periodic pattern whose spectral peak is 16,000x the median, gravel and grass are isotropic
#: blob textures, moon a crater field) and hubble_deep_field (a star field on flat sky): they are
#: not natural scenes, and in trials they filled the dictionary with texture atoms.
NATURAL_TRAIN = ("astronaut", "chelsea", "rocket", "stereo_motorcycle", "china", "flower", "grace_hopper")
#: held-out photographs (no patch of these is in training)
NATURAL_VAL = ("camera", "coffee")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".iml", ".imc")
_VANHATEREN_SHAPE = (1024, 1536)  # rows, columns of van Hateren .iml/.imc files


@dataclass(frozen=True)
class Preprocessing:
    """Everything needed to turn a raw grey image into model input."""

    kind: str = "natural"  # natural (whiten + LCN) | scale (divide by `scale`, for digits/MNIST)
    patch_size: int = 16  # patch side, pixels
    downsample: int = 4  # block-average the raw image by this factor first (1 = none)
    whiten_f0: float = 0.5  # whitening roll-off frequency, cycles/pixel (of the downsampled image)
    whiten_n: float = 4.0  # whitening roll-off exponent
    lcn_sigma: float = 3.0  # local contrast normalisation Gaussian sigma, pixels
    lcn_size: int = 13  # local contrast normalisation kernel size, pixels (odd)
    crop: int = 4  # pixels dropped from each border after filtering
    scale: float = 1.0  # kind='scale': divisor that maps raw values to model input

    def to_dict(self) -> dict:
        """Plain-value dict (stored in checkpoints)."""
        return dataclasses.asdict(self)

    def validate(self) -> Preprocessing:
        """Raise :class:`DataError` naming the bad field (type, range, finiteness); return self."""
        ints = ("patch_size", "downsample", "lcn_size", "crop")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "kind":
                if v not in ("natural", "scale"):
                    raise DataError(f"field 'kind' must be 'natural' or 'scale', got {v!r}")
            elif f.name in ints:
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise DataError(f"field {f.name!r} must be an integer, got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
                raise DataError(f"field {f.name!r} must be a finite number, got {v!r}")
        limits = {"patch_size": (2, 256), "downsample": (1, 64), "lcn_size": (1, 255), "crop": (0, 256)}
        for name, (lo, hi) in limits.items():
            if not lo <= getattr(self, name) <= hi:
                raise DataError(f"field {name!r} must be in [{lo}, {hi}], got {getattr(self, name)}")
        for name in ("whiten_f0", "whiten_n", "lcn_sigma", "scale"):
            if not getattr(self, name) > 0:
                raise DataError(f"field {name!r} must be > 0, got {getattr(self, name)}")
        return self

    @classmethod
    def from_dict(cls, d, where: str = "preprocessing") -> Preprocessing:
        """Build from a stored dict, refusing unknown or missing-typed fields (:class:`DataError`)."""
        if not isinstance(d, dict):
            raise DataError(f"{where} must be a dict of fields, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise DataError(f"{where} has unknown fields {unknown}")
        try:
            return cls(**d).validate()
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None


class PatchSet(NamedTuple):
    """Train/validation arrays of model inputs, float32 (n, P, P), plus optional labels."""

    train: np.ndarray
    val: np.ndarray
    preprocessing: Preprocessing
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    source: str = ""


# ---------------------------------------------------------------- filters
def whitening_filter(shape: tuple[int, int], f0: float = 0.3, n: float = 4.0) -> np.ndarray:
    """``R(f) = f·exp(-(f/f0)^n)`` on the ``rfft2`` grid of an image of ``shape`` (f in cycles/pixel)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.sqrt(fx**2 + fy**2)  # DC at [0, 0]
    return f * np.exp(-((f / f0) ** n))


def whiten(img: np.ndarray, f0: float = 0.3, n: float = 4.0) -> np.ndarray:
    """Olshausen–Field whitening: spectrum × ``f·exp(-(f/f0)^n)``, f in cycles/pixel.

    Parameters
    ----------
    img : ndarray (H, W)
        Grey image (any scale); its mean is removed first.
    f0, n : float
        Roll-off frequency (cycles/pixel) and exponent.
    """
    img = np.asarray(img, dtype=np.float64)
    spec = np.fft.rfft2(img - img.mean()) * whitening_filter(img.shape, f0, n)
    return np.fft.irfft2(spec, s=img.shape)


def local_contrast_normalise(img: np.ndarray, sigma: float = 3.0, size: int = 13) -> np.ndarray:
    """Subtractive then divisive normalisation with a Gaussian window (Jarrett et al. 2009).

    The divisor is the local standard deviation, floored at its mean over the image.
    """
    from scipy.ndimage import gaussian_filter

    truncate = ((size - 1) / 2) / sigma
    img = np.asarray(img, dtype=np.float64)
    sub = img - gaussian_filter(img, sigma, truncate=truncate, mode="reflect")
    sd = np.sqrt(gaussian_filter(sub**2, sigma, truncate=truncate, mode="reflect"))
    return sub / np.maximum(sd, sd.mean())


def preprocess_image(img: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Raw grey image (H, W) → model-input image (float32), using ``prep``."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2:
        raise DataError(f"expected a grey image (H, W), got shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise DataError("image contains non-finite values")
    if prep.kind == "scale":
        return (img / prep.scale).astype(np.float32)
    c = int(prep.crop)
    f = int(prep.downsample)
    need = (int(prep.patch_size) + 2 * c) * f
    if min(img.shape) < need:
        raise DataError(f"image of shape {img.shape} is smaller than a {prep.patch_size}-pixel patch "
                        f"plus a {c}-pixel border on each side ({need} pixels"
                        + (f" at {f}x downsampling)" if f > 1 else ")"))
    if img.size and float(img.max() - img.min()) <= 1e-9 * max(1.0, float(np.abs(img).max())):
        raise DataError(f"image of shape {img.shape} is constant (no contrast to whiten)")
    if f > 1:
        h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
        img = img[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    out = local_contrast_normalise(whiten(img, prep.whiten_f0, prep.whiten_n), prep.lcn_sigma, prep.lcn_size)
    out = (out - out.mean()) / max(out.std(), 1e-12)
    if c:
        out = out[c:-c, c:-c]
    return out.astype(np.float32)


def extract_patches(img: np.ndarray, size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` patches (n, size, size) at uniform random positions of ``img``."""
    h, w = img.shape
    if h < size or w < size:
        raise DataError(f"patch size {size} is larger than the image ({h} x {w})")
    rows = rng.integers(0, h - size + 1, n)
    cols = rng.integers(0, w - size + 1, n)
    win = np.lib.stride_tricks.sliding_window_view(img, (size, size))
    return np.ascontiguousarray(win[rows, cols])


# ------------------------------------------------------------------ images
def _grey(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3:
        from skimage.color import rgb2gray

        img = rgb2gray(img[..., :3])
    return np.asarray(img, dtype=np.float64)


def _package_folder(package: str, what: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{package} is not installed: its {what} are part of the natural data set")
    return Path(spec.submodule_search_locations[0])


#: scikit-image's sample photographs used here, by the file its ``skimage.data`` function reads
_SKIMAGE_FILES = {"astronaut": "astronaut.png", "chelsea": "chelsea.png", "rocket": "rocket.jpg",
                  "stereo_motorcycle": "motorcycle_left.png",  # the left view; the right is a near duplicate
                  "camera": "camera.png", "coffee": "coffee.png"}


def _photograph_path(name: str) -> Path:
    """The file of the shipped photograph ``name``: the one scikit-learn's ``load_sample_images``, scikit-image's
    ``skimage.data`` (for ``stereo_motorcycle`` its left view) or matplotlib's ``cbook.get_sample_data`` reads,
    found without importing those packages (scikit-learn alone costs seconds, ``skimage.io`` half a second)."""
    if name in ("china", "flower"):
        return _package_folder("sklearn", "sample photographs") / "datasets" / "images" / f"{name}.jpg"
    if name in _SKIMAGE_FILES:
        return _package_folder("skimage", "sample photographs") / "data" / _SKIMAGE_FILES[name]
    if name == "grace_hopper":  # matplotlib's sample photograph (a portrait, 600 x 512)
        return _package_folder("matplotlib", "sample photograph") / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    raise DataError(f"no shipped photograph named {name!r}")


def _sample_photograph(name: str) -> np.ndarray:
    """The shipped photograph ``name`` as its package's loader returns it (``load_sample_images``, ``skimage.data``)."""
    from PIL import Image

    with Image.open(_photograph_path(name)) as im:
        return np.asarray(im)


def natural_images(names: tuple[str, ...] = NATURAL_TRAIN + NATURAL_VAL) -> dict[str, np.ndarray]:
    """The photographs the pinned stack ships (scikit-image, scikit-learn, matplotlib) as grey float64 arrays
    (no download)."""
    out = {}
    for name in names:
        if name in ("china", "flower") or name in _SKIMAGE_FILES:
            out[name] = _grey(_sample_photograph(name))
        elif name == "grace_hopper":
            out[name] = read_image(_photograph_path(name))
        else:
            import skimage.data

            out[name] = _grey(getattr(skimage.data, name)())
    return out


def natural_image_shapes(names: tuple[str, ...] = NATURAL_TRAIN + NATURAL_VAL) -> dict[str, tuple[int, int]]:
    """(rows, columns) of each shipped photograph, as :func:`natural_images` reads it, from the files' headers
    (no pixel is decoded)."""
    from PIL import Image

    out = {}
    for name in names:
        with Image.open(_photograph_path(name)) as im:
            out[name] = im.size[::-1]
    return out


#: the largest image read, in pixels (a 48-megapixel photograph fits); ``SPIKEVAE_MAX_PIXELS`` changes it.
#: Preprocessing holds about 60 bytes per pixel, so the limit also bounds memory (about 3 GB).
MAX_PIXELS = int(float(os.environ.get("SPIKEVAE_MAX_PIXELS", 50e6)))


def _check_pixels(path, shape):
    h, w = int(shape[0]), int(shape[1])
    if h * w > MAX_PIXELS:
        raise DataError(f"{path}: {w} x {h} pixels ({h * w / 1e6:.0f} MP) exceeds the limit of {MAX_PIXELS / 1e6:.0f} MP "
                        "(set SPIKEVAE_MAX_PIXELS to raise it, or downsample the image)")


def read_image(path: str | os.PathLike, iml_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read one image file as a grey float64 array.

    PNG and JPEG through Pillow, TIFF through tifffile; van Hateren ``.iml`` and
    ``.imc`` as raw big-endian uint16 of ``iml_shape`` (default 1024 x 1536; a
    square shape is inferred for other sizes).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                _check_pixels(path, tif.pages[0].shape)
                return _grey(tif.pages[0].asarray())
        if suffix not in (".iml", ".imc"):
            from PIL import Image

            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our limit (with its message) instead
            try:
                im = Image.open(path)  # the header only: pixels are decoded below, after the size check
            finally:
                Image.MAX_IMAGE_PIXELS = limit
            with im:
                _check_pixels(path, im.size[::-1])
                if im.mode in ("P", "PA", "CMYK", "YCbCr", "LA"):
                    im = im.convert("RGB")
                return _grey(np.asarray(im))
        else:
            raw = np.fromfile(path, dtype=">u2")
            shape = iml_shape
            if shape is None:
                if raw.size == _VANHATEREN_SHAPE[0] * _VANHATEREN_SHAPE[1]:
                    shape = _VANHATEREN_SHAPE
                elif raw.size and int(np.sqrt(raw.size)) ** 2 == raw.size:
                    shape = (int(np.sqrt(raw.size)),) * 2
                else:
                    raise DataError(f"{path}: {raw.size} pixels is neither 1024 x 1536 nor square; "
                                    "pass the image shape")
            if raw.size != shape[0] * shape[1]:
                raise DataError(f"{path}: {raw.size} pixels do not fill a {shape[0]} x {shape[1]} image")
            _check_pixels(path, shape)
            return raw.reshape(shape).astype(np.float64)
    except DataError:
        raise
    except Exception as exc:  # any reader failure becomes one clear line
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None


def read_image_folder(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """All images (PNG, JPEG, TIFF, .iml/.imc) in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a directory")
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as exc:
        raise DataError(f"cannot list image folder {folder}: {exc}") from None
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return {p.name: read_image(p) for p in files}


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
        return patches_by_area(list(preprocess_images(images, prep).values()), prep.patch_size, n, rng)

    return PatchSet(cut(train_images, n_train), cut(val_images, n_val), prep, source=source)


def preprocess_images(images: dict[str, np.ndarray], prep: Preprocessing) -> dict[str, np.ndarray]:
    """:func:`preprocess_image` for each image; one that cannot give a patch (constant, too small) is skipped
    with a warning, and :class:`DataError` (one line) if none can."""
    out, skipped = {}, []
    for name, im in images.items():
        try:
            out[name] = preprocess_image(im, prep)
        except DataError as exc:
            skipped.append(f"{name}: {exc}")
            log.warning("skipping image %s: %s", name, exc)
    if not out:
        raise DataError(f"no usable image: {'; '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''}")
    return out


def patches_by_area(images: list, size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random patches (n, size, size) from preprocessed images, each image's share in proportion to its area."""
    area = np.array([im.size for im in images], dtype=float)
    counts = np.floor(n * area / area.sum()).astype(int)
    counts[: n - counts.sum()] += 1
    return np.concatenate([extract_patches(im, size, c, rng) for im, c in zip(images, counts)])


def natural_patches(n_train: int = 100_000, n_val: int = 10_000, prep: Preprocessing | None = None,
                    seed: int = 0) -> PatchSet:
    """Whitened, contrast-normalised patches from the shipped photographs, split by image."""
    prep = prep or Preprocessing()
    imgs = natural_images()
    rng = np.random.default_rng(seed)
    return image_patches({k: imgs[k] for k in NATURAL_TRAIN}, {k: imgs[k] for k in NATURAL_VAL},
                         prep, n_train, n_val, rng, source="natural (scikit-image/scikit-learn/matplotlib photographs)")


def preprocessed_shape(shape: tuple[int, int], prep: Preprocessing) -> tuple[int, int]:
    """The shape :func:`preprocess_image` gives an image of ``shape`` (without preprocessing it)."""
    h, w = int(shape[0]), int(shape[1])
    if prep.kind == "scale":
        return h, w
    f, c = int(prep.downsample), int(prep.crop)
    if f > 1:
        h, w = h // f, w // f
    return h - 2 * c, w - 2 * c


def natural_val_patches(n: int, prep: Preprocessing | None = None, seed: int = 0) -> np.ndarray:
    """``natural_patches(1, n, prep, seed).val`` without preprocessing the training photographs: their one
    patch is drawn from blank images of the same shapes (read from the files' headers), which takes the same
    random numbers."""
    prep = prep or Preprocessing()
    shapes = natural_image_shapes(NATURAL_TRAIN)
    rng = np.random.default_rng(seed)
    patches_by_area([np.zeros(preprocessed_shape(shapes[k], prep), np.float32) for k in NATURAL_TRAIN],
                    prep.patch_size, 1, rng)
    if n <= 0:
        raise DataError(f"n_train and n_val must be > 0, got 1 and {n}")
    return patches_by_area(list(preprocess_images(natural_images(NATURAL_VAL), prep).values()),
                           prep.patch_size, n, rng)


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
    from .analysis.geometry import principal_components

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
