"""Reading images: the shipped photographs, a user's folder (PNG, JPEG, TIFF, van Hateren ``.iml``/``.imc``), bounded in size."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["NATURAL_TRAIN", "NATURAL_VAL", "IMAGE_SUFFIXES", "natural_images", "natural_image_shapes", "MAX_PIXELS",
           "read_image", "read_image_folder"]


log = logging.getLogger(__name__)


#: shipped photographs used for training (scikit-image's sample data; scikit-learn's china and flower).
#: Left out: the textures (brick is a
#: near-periodic pattern whose spectral peak is 16,000x the median, gravel and grass are isotropic
#: blob textures, moon a crater field) and hubble_deep_field (a star field on flat sky): they are
#: not natural scenes, and in trials they filled the dictionary with texture atoms.
NATURAL_TRAIN = ("astronaut", "chelsea", "rocket", "stereo_motorcycle", "china", "flower", "grace_hopper")


#: held-out photographs (no patch of these is in training)
NATURAL_VAL = ("camera", "coffee")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".iml", ".imc")


_VANHATEREN_SHAPE = (1024, 1536)  # rows, columns of van Hateren .iml/.imc files


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


#: the largest image file read (a raw van Hateren frame is 3 MB; a large TIFF some hundred MB)
MAX_FILE_BYTES = 2 * 2**30


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
    from ..io.files import regular_input

    path = regular_input(path, "image", MAX_FILE_BYTES)
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

