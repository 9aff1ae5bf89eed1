"""A P-VAE with a linear encoder and decoder, without torch: its rates are one matrix product.

``python -m spikevae.simulate`` needs only a P-VAE's rates λ and its linear read-out; for a lin|lin checkpoint
(the shipped model) both are numpy products, and importing torch would be most of a short run's time.
:func:`load_linear` reads such a checkpoint with :func:`spikevae.io.torchfile.read_torch_file` (nothing in the file
is run), checks every field as :func:`spikevae.models.checkpoint.validate_checkpoint` does, and returns a
:class:`LinearPoissonModel` with the part of :class:`~spikevae.models.trained.TrainedModel`'s interface that the
spike layer uses; any other checkpoint gives None, and the caller loads it with torch.

The rates are the P-VAE's posterior (:meth:`spikevae.models.vae.VAE.posterior`), computed by
:func:`linear_rates` in float64: ``log δr = c₁ − softplus(c₁ − W x)``, ``log λ = c₂ − softplus(c₂ − (log r + log δr))``,
``λ = e^{log λ} + ε``. :meth:`spikevae.models.trained.TrainedModel.rates` calls the same function for a linear
encoder, so a checkpoint gives the same λ, and the same spikes, with or without torch.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data import Preprocessing
from ..errors import ArgumentError, DataError
from ..io.files import regular_input
from ..io.torchfile import read_torch_file
from .config import TrainConfig, VAEConfig
from .container import MAX_BYTES, LoadedModel, check_tags, check_vae_fields, default_checkpoint_path, validate_container

__all__ = ["LinearPoissonModel", "load_linear", "linear_rates"]

_EPS = float(np.finfo(np.float32).eps)  # the torch model's floor on λ


def _softclamp_upper(x: np.ndarray, upper: float) -> np.ndarray:
    """``upper − softplus(upper − x)``, softplus as torch's (linear above 20)."""
    y = upper - x
    return upper - np.where(y > 20, y, np.log1p(np.exp(np.minimum(y, 20))))


def linear_rates(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, log_r: np.ndarray, logdr_clamp: float,
                 lograte_clamp: float, batch_size: int = 4096) -> np.ndarray:
    """A linear-encoder P-VAE's posterior rates λ (n, K) float64 from inputs ``x`` (n, D) and its weights ``w``
    (K, D), ``bias`` (K,) or None and prior log-rates ``log_r`` (K,): the one computation of them."""
    w, log_r = np.asarray(w, dtype=np.float64), np.asarray(log_r, dtype=np.float64)
    out = np.empty((len(x), len(log_r)))
    for i in range(0, len(x), batch_size):
        h = np.asarray(x[i:i + batch_size], dtype=np.float64) @ w.T
        if bias is not None:
            h += bias
        out[i:i + batch_size] = np.exp(_softclamp_upper(log_r + _softclamp_upper(h, logdr_clamp), lograte_clamp)) + _EPS
    return out


class LinearPoissonModel(LoadedModel):
    """A lin|lin P-VAE checkpoint as numpy arrays: rates, decoding and the facts a run records.

    Attributes
    ----------
    config : VAEConfig
    checkpoint : dict
        The validated checkpoint (weights as numpy arrays).
    path : Path
    preprocessing : Preprocessing
    """

    family = "poisson"

    def __init__(self, checkpoint: dict, config: VAEConfig, preprocessing: Preprocessing, path: Path):
        self.checkpoint, self.config, self.preprocessing, self.path = checkpoint, config, preprocessing, Path(path)
        sd = checkpoint["state_dict"]
        self._w_enc = np.ascontiguousarray(sd["encoder.1.weight"], dtype=np.float64)  # (K, D)
        self._b_enc = None if "encoder.1.bias" not in sd else sd["encoder.1.bias"].astype(np.float64)
        self._w_dec = np.ascontiguousarray(sd["decoder.weight"], dtype=np.float32)  # (D, K)
        self._b_dec = None if "decoder.bias" not in sd else sd["decoder.bias"].astype(np.float32)
        self._log_r = sd["log_r"].astype(np.float64)

    def __repr__(self) -> str:
        c = self.config
        return (f"LinearPoissonModel(lin|lin P-VAE, K={c.n_latents}, {c.patch_size}x{c.patch_size} patches, "
                f"from {self.path.name}, numpy)")

    @property
    def prior_rates(self) -> np.ndarray:
        """Prior rates r (K,), expected counts per window."""
        return np.exp(self._log_r).astype(np.float64)

    @property
    def dictionary(self) -> np.ndarray:
        """Decoder atoms Φ (D, K) as columns."""
        return self._w_dec.astype(np.float64)

    @property
    def encoder_filters(self) -> np.ndarray:
        """Linear encoder filters (K, P, P)."""
        p = self.config.patch_size
        return self._w_enc.reshape(-1, p, p).copy()

    def _need_poisson(self, what: str) -> None:
        """A lin|lin model here is always a P-VAE (:func:`load_linear` returns no other)."""

    def rates(self, patches, batch_size: int = 4096) -> np.ndarray:
        """Posterior rates λ (n, K) float64: expected spike counts per presentation window."""
        c = self.config
        return linear_rates(self._inputs(patches).reshape(-1, c.n_pixels), self._w_enc, self._b_enc, self._log_r, c.logdr_clamp,
                            c.lograte_clamp, batch_size)

    def decode(self, z, batch_size: int = 4096) -> np.ndarray:
        """Reconstructions (n, P, P) float64 from latents z (n, K) (counts or rates)."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float32))
        if z.shape[1] != self.config.n_latents:
            raise ArgumentError(f"latents must be (n, {self.config.n_latents}), got shape {z.shape}")
        x = z @ self._w_dec.T
        if self._b_dec is not None:
            x += self._b_dec
        P = self.config.patch_size
        return x.astype(np.float64).reshape(-1, P, P)


def load_linear(path: str | os.PathLike | None = None) -> LinearPoissonModel | None:
    """A lin|lin P-VAE checkpoint (default: the shipped one) read and checked without torch, or None when the
    checkpoint holds another model (its caller loads that with torch). Raises
    :class:`~spikevae.errors.CheckpointError` (one line) for a file that is no usable checkpoint."""
    from ..errors import CheckpointError

    try:
        path = regular_input(default_checkpoint_path() if path is None else path, "checkpoint", MAX_BYTES)
    except DataError as exc:
        raise CheckpointError(str(exc)) from None
    data = check_tags(read_torch_file(path), path)
    if data.get("family", "poisson") != "poisson":
        return None
    mc = data.get("model_config")
    if not (isinstance(mc, dict) and mc.get("family") == "poisson" and mc.get("encoder") == "lin"
            and mc.get("decoder") == "lin"):
        return None
    config, prep = validate_container(data, path, VAEConfig, TrainConfig)
    check_vae_fields(data, config, path)
    K, D = config.n_latents, config.n_pixels
    shapes = {"log_r": (K,), "encoder.1.weight": (K, D), "decoder.weight": (D, K)}
    if config.bias:
        shapes.update({"encoder.1.bias": (K,), "decoder.bias": (D,)})
    sd = data["state_dict"]
    if set(sd) != set(shapes):
        raise CheckpointError(f"{path}: weights do not match the model config (a lin|lin P-VAE has {sorted(shapes)}, "
                              f"the file {sorted(sd)})")
    for k, shape in shapes.items():
        if sd[k].shape != shape:
            raise CheckpointError(f"{path}: weights do not match the model config ({k!r} has shape {sd[k].shape}, "
                                  f"the config needs {shape})")
    return LinearPoissonModel(data, config, prep, path)
