"""The preprocessing that turns a raw image into model input: downsampling, whitening, local contrast normalisation, patches."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)

__all__ = ["Preprocessing", "whitening_filter", "whiten", "local_contrast_normalise", "preprocess_image",
           "extract_patches", "patch_energy", "preprocess_images", "preprocessed_shape"]


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
    # training and validation patches whose energy (sum of squares) is below this are redrawn (natural/images);
    # a stored record without the field was sampled without rejection (0)
    min_energy: float = 10.0

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
        if not 0 <= self.min_energy < self.patch_size**2:  # the z-scored image's patches have energy P² on average
            raise DataError(f"field 'min_energy' must be in [0, {self.patch_size**2}) for {self.patch_size}-px patches, "
                            f"got {self.min_energy}")
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
            return cls(**{"min_energy": 0.0, **d}).validate()
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None


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
    _check_fits(img.shape, prep)
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


def extract_patches(img: np.ndarray, size: int, n: int, rng: np.random.Generator,
                    min_energy: float = 0.0) -> np.ndarray:
    """``n`` patches (n, size, size) at uniform random positions of ``img``; with ``min_energy`` > 0, at uniform
    random positions among those whose patch has energy (sum of squares) ``>= min_energy`` (rejection and redraw,
    in law), drawn with ``n`` uniforms whatever the image holds."""
    h, w = img.shape
    if h < size or w < size:
        raise DataError(f"patch size {size} is larger than the image ({h} x {w})")
    win = np.lib.stride_tricks.sliding_window_view(img, (size, size))
    if min_energy <= 0:
        rows = rng.integers(0, h - size + 1, n)
        cols = rng.integers(0, w - size + 1, n)
        return np.ascontiguousarray(win[rows, cols])
    ok = np.flatnonzero(patch_energy(img, size) >= min_energy)
    u = rng.random(n)
    if n and not len(ok):
        raise DataError(f"no {size}-px patch of a {h} x {w} image has energy >= {min_energy:g} (min_energy)")
    pick = ok[np.minimum((u * len(ok)).astype(np.int64), len(ok) - 1)] if n else ok[:0]
    rows, cols = np.divmod(pick, w - size + 1)
    return np.ascontiguousarray(win[rows, cols])


def patch_energy(img: np.ndarray, size: int) -> np.ndarray:
    """The energy (sum of squares, float64) of the ``size``-px patch at every position of ``img``, (H − size + 1,
    W − size + 1), from an integral image."""
    sq = np.square(np.asarray(img, dtype=np.float64))
    c = np.zeros((sq.shape[0] + 1, sq.shape[1] + 1))
    c[1:, 1:] = sq.cumsum(0).cumsum(1)
    return c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]


def preprocess_images(images: dict[str, np.ndarray], prep: Preprocessing) -> dict[str, np.ndarray]:
    """:func:`preprocess_image` for each image; one that cannot give a patch (constant, too small) is skipped
    with a warning, and :class:`DataError` (one line) if none can."""
    out, skipped = {}, []
    for name, im in images.items():
        try:
            out[name] = preprocess_image(im, prep)
        except DataError as exc:
            skipped.append(f"{name}: {exc}")
    if not out:  # one error naming the reasons, not a warning per image before it
        raise DataError(f"no usable image: {'; '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''}")
    for reason in skipped:
        log.warning("skipping image %s", reason)
    return out


def preprocessed_shape(shape: tuple[int, int], prep: Preprocessing) -> tuple[int, int]:
    """The shape :func:`preprocess_image` gives an image of ``shape`` (without preprocessing it)."""
    h, w = int(shape[0]), int(shape[1])
    if prep.kind == "scale":
        return h, w
    _check_fits((h, w), prep)
    f, c = int(prep.downsample), int(prep.crop)
    if f > 1:
        h, w = h // f, w // f
    return h - 2 * c, w - 2 * c


def _check_fits(shape: tuple, prep: Preprocessing) -> None:
    """:class:`DataError` when an image of ``shape`` is too small for one patch after downsampling and cropping."""
    c, f = int(prep.crop), int(prep.downsample)
    need = (int(prep.patch_size) + 2 * c) * f
    if min(shape) < need:
        raise DataError(f"image of shape {tuple(shape)} is smaller than a {prep.patch_size}-pixel patch "
                        f"plus a {c}-pixel border on each side ({need} pixels"
                        + (f" at {f}x downsampling)" if f > 1 else ")"))

