"""A trained model as a notebook user meets it: weights, preprocessing and the path from images to rates.

>>> import spikevae
>>> model = spikevae.load_model()                       # the shipped P-VAE
>>> patches = model.preprocess(spikevae.data.natural_images(("camera",))["camera"])[:40]
>>> lam = model.rates(patches)                          # (40, 512) expected counts per window
>>> lam.shape
(40, 512)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..data import Preprocessing, patches_by_area, preprocess_image, read_image, read_image_folder
from ..errors import ArgumentError, DataError
from .checkpoint import default_checkpoint_path, load_checkpoint, model_from_checkpoint
from .container import LoadedModel
from .vae import VAE, VAEConfig, posterior_array

__all__ = ["TrainedModel", "load_model", "resolve_device"]


def resolve_device(name: str | torch.device = "cpu") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an :class:`ArgumentError`."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if isinstance(name, str) and name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ArgumentError("device cuda was requested but no CUDA device is available (use auto or cpu)")
        return torch.device(name)
    raise ArgumentError(f"device must be auto, cpu or cuda, got {name!r}")


class TrainedModel(LoadedModel):
    """A VAE loaded from a checkpoint, with the preprocessing its training data had.

    Attributes
    ----------
    vae : VAE
        The torch module (evaluation mode) on ``device``.
    checkpoint : dict
        The validated checkpoint dict (configs, metrics, history, provenance).
    path : Path
        Where it was loaded from.
    preprocessing : Preprocessing
        How a raw grey image becomes model input.
    device : torch.device
    """

    def __init__(self, vae: VAE, checkpoint: dict, path: Path, device: torch.device):
        self.vae = vae
        self.checkpoint = checkpoint
        self.path = Path(path)
        self.preprocessing = Preprocessing.from_dict(checkpoint["preprocessing"])
        self.device = device

    def __repr__(self) -> str:
        c = self.config
        return (f"TrainedModel({c.family} VAE {c.encoder}|{c.decoder}, K={c.n_latents}, "
                f"{c.patch_size}x{c.patch_size} patches, from {self.path.name}, on {self.device})")

    # ------------------------------------------------------------------ facts
    @property
    def config(self) -> VAEConfig:
        """The model configuration."""
        return self.vae.config

    @property
    def family(self) -> str:
        """Latent family (``poisson`` emits spike counts)."""
        return self.config.family

    @property
    def train_config(self) -> dict:
        """The training configuration, as stored."""
        return dict(self.checkpoint["train_config"])

    @property
    def prior_rates(self) -> np.ndarray:
        """Prior rates r (K,), expected counts per window (P-VAE only)."""
        self._need_poisson("prior rates")
        return torch.exp(self.vae.log_r.detach()).double().cpu().numpy()

    @property
    def dictionary(self) -> np.ndarray:
        """Decoder atoms Φ (D, K) as columns (linear decoder only)."""
        if self.config.decoder != "lin":
            raise ArgumentError(f"{self.path}: the dictionary is defined only for a linear decoder "
                                f"(this one is {self.config.decoder})")
        return self.vae.dictionary.detach().double().cpu().numpy()

    @property
    def encoder_filters(self) -> np.ndarray | None:
        """Linear encoder filters (K, P, P), or None for a non-linear encoder."""
        if self.config.encoder != "lin":
            return None
        p = self.config.patch_size
        return self.vae.encoder[-1].weight.detach().double().cpu().numpy()[: self.config.n_latents].reshape(-1, p, p)

    def _need_poisson(self, what: str) -> None:
        if self.family != "poisson":
            raise ArgumentError(f"{self.path} holds a {self.family} VAE; only the Poisson family emits spike counts "
                                f"({what} need a P-VAE)")

    # ------------------------------------------------------------------ images → patches → rates
    def preprocess(self, images, n_patches: int | None = None, seed: int = 0) -> np.ndarray:
        """Raw grey images → model-input patches (n, P, P) float32, with the model's own preprocessing.

        Parameters
        ----------
        images : 2-D array, sequence of 2-D arrays, (n, H, W) array, or a folder / image file path
            Raw images (any scale; RGB files are converted to grey).
        n_patches : int, optional
            None: every non-overlapping P×P tile of each preprocessed image, in raster order.
            An integer: that many patches at random positions (spread over the images by area).
        seed : int
            Seed of the random positions.
        """
        if isinstance(images, (str, os.PathLike)):
            p = Path(images)
            imgs = list(read_image_folder(p).values()) if p.is_dir() else [read_image(p)]
        elif isinstance(images, np.ndarray) and images.ndim == 2:
            imgs = [images]
        else:
            imgs = list(images)
        if not imgs:
            raise DataError("no images to preprocess")
        prep = self.preprocessing
        proc = [preprocess_image(im, prep) for im in imgs]
        P = prep.patch_size
        if n_patches is None:
            tiles = [im[: im.shape[0] // P * P, : im.shape[1] // P * P].reshape(im.shape[0] // P, P, -1, P)
                     .swapaxes(1, 2).reshape(-1, P, P) for im in proc]
            return np.ascontiguousarray(np.concatenate(tiles), dtype=np.float32)
        if n_patches < 1:
            raise ArgumentError(f"n_patches must be >= 1, got {n_patches}")
        return patches_by_area(proc, P, n_patches, np.random.default_rng(seed))

    def rates(self, patches, batch_size: int = 4096) -> np.ndarray:
        """Posterior rates λ (n, K) float64: expected spike counts per presentation window (P-VAE only)."""
        self._need_poisson("rates")
        c = self.config
        if c.encoder == "lin":  # one matrix product, the computation the torch-free reader uses (same λ, same spikes)
            from .linear import linear_rates

            enc = self.vae.encoder[-1]
            bias = None if enc.bias is None else enc.bias.detach().double().cpu().numpy()
            x = self._inputs(patches).reshape(-1, c.n_pixels)
            return linear_rates(x, enc.weight.detach().double().cpu().numpy()[: c.n_latents], bias,
                                self.vae.log_r.detach().double().cpu().numpy(), c.logdr_clamp, c.lograte_clamp,
                                batch_size)
        return posterior_array(self.vae, self._inputs(patches), "mean", batch_size)

    def features(self, patches, batch_size: int = 4096) -> np.ndarray:
        """The reference's decoding features (n, K): P log δr, G/L location, C logits."""
        return posterior_array(self.vae, self._inputs(patches), "features", batch_size)

    @torch.no_grad()
    def decode(self, z, batch_size: int = 4096) -> np.ndarray:
        """Reconstructions (n, P, P) float64 from latents z (n, K) (counts or rates for the P-VAE)."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float32))
        if z.shape[1] != self.config.n_latents:
            raise ArgumentError(f"latents must be (n, {self.config.n_latents}), got shape {z.shape}")
        out = [self.vae.decode(torch.as_tensor(z[i:i + batch_size], device=self.device)).double().cpu().numpy()
               for i in range(0, len(z), batch_size)]
        P = self.config.patch_size
        return np.concatenate(out).reshape(-1, P, P) if out else np.zeros((0, P, P))

    def to(self, device) -> TrainedModel:
        """Move to ``device`` (``auto``, ``cpu``, ``cuda``); returns self."""
        self.device = resolve_device(device)
        self.vae.to(self.device)
        return self


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> TrainedModel:
    """Load and validate a checkpoint (default: the shipped P-VAE) → :class:`TrainedModel` on ``device``.

    Opening a checkpoint never runs code from it, and every field is checked; a bad file raises
    :class:`~spikevae.errors.CheckpointError` naming the file and the field.
    """
    path = default_checkpoint_path() if path is None else Path(path)
    dev = resolve_device(device)
    data = load_checkpoint(path)
    vae = model_from_checkpoint(data, path).to(dev)
    return TrainedModel(vae, data, path, dev)
