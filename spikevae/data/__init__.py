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
4. cut ``patch_size`` x ``patch_size`` patches at random positions, uniformly among the positions whose
   patch has energy (sum of squares) at least ``min_energy`` (default 10, 4 % of the mean patch energy
   256): near-blank patches (sky, walls: 13 % of the training photographs' patches, 4 % of the validation
   ones') are redrawn, in training and validation alike; the participation ratio stays ~122.

The split is by image: validation patches come only from the validation
photographs. All parameters travel in :class:`Preprocessing` (and so in the
checkpoint), so :func:`preprocess_image` turns any raw image into model input.
"""
from ..errors import DataError  # noqa: F401 - the error every reader here raises
from .datasets import *  # noqa: F401,F403
from .datasets import __all__ as _datasets
from .images import *  # noqa: F401,F403
from .images import __all__ as _images
from .preprocessing import *  # noqa: F401,F403
from .preprocessing import __all__ as _preprocessing

__all__ = [*_images, *_preprocessing, *_datasets]
