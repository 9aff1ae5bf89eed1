"""The checkpoint container, without torch: its format tag and version, its fields, where the shipped models lie,
and the checks of its fields that need no model (configs, preprocessing, weights as numpy arrays).

:mod:`spikevae.models.checkpoint` (torch) and the torch-free reader (:mod:`spikevae.models.linear`) share them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import Preprocessing
from ..errors import ArgumentError, CheckpointError, DataError
from ..io.files import file_sha256
from .config import typed_config

__all__ = ["FORMAT", "VERSION", "IPVAE_FAMILY", "MAX_BYTES", "REQUIRED", "OPTIONAL", "check_tags", "check_array_weights",
           "check_vae_fields", "validate_container", "default_checkpoint_path", "default_ipvae_path", "LoadedModel"]

FORMAT = "spikevae.checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "model_config", "state_dict", "preprocessing", "train_config")
#: the family tag of iP-VAE checkpoints (same container, own configs: :mod:`spikevae.models.ipvae`)
IPVAE_FAMILY = "ipvae"
OPTIONAL = ("family", "data", "metrics", "history", "epoch", "provenance", "train_state")


def default_checkpoint_path() -> Path:
    """The pretrained lin|lin P-VAE shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "assets" / "pvae_default.pt"


def default_ipvae_path() -> Path:
    """The iP-VAE shipped inside the package (docs/ipvae.md: 8 epochs of 50,000 patches, 23 min on 2 cores)."""
    return Path(__file__).resolve().parent.parent / "assets" / "ipvae_default.pt"


#: the largest checkpoint read (a K = 512, 16 x 16 P-VAE is about 1 MB)
MAX_BYTES = 2 * 2**30


def check_tags(data, path):
    """The container: a dict with the format tag, a readable version and every required field; returns it."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a spikevae checkpoint (no '{FORMAT}' format tag)")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')!r} is not supported "
                              f"(this spikevae reads version {VERSION})")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return data


def check_array_weights(sd, path) -> None:
    """Weights read without torch: names to floating-point arrays, finite in float32 (what the models compute in)."""
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise CheckpointError(f"{path}: state_dict must map parameter names to tensors")
    for k, v in sd.items():
        if getattr(v, "layout", None):  # a tensor the torch-free reader does not build (:mod:`spikevae.io.torchfile`)
            raise CheckpointError(f"{path}: weight {k!r} is a {v.layout} tensor; weights are dense")
        if not isinstance(v, np.ndarray):
            raise CheckpointError(f"{path}: state_dict must map parameter names to tensors")
        if v.dtype.kind != "f":
            raise CheckpointError(f"{path}: weight {k!r} is {v.dtype}; weights are floating-point")
        with np.errstate(over="ignore"):
            if not np.isfinite(v.astype(np.float32)).all():
                raise CheckpointError(f"{path}: weight {k!r} holds NaN or infinite values (in float32)")


def check_vae_fields(data: dict, mc, path) -> None:
    """The P-VAE family's own fields: the family tag matches the config, prior log-rates a neuron can carry, a
    non-negative epoch (weights as torch tensors or numpy arrays)."""
    if "family" in data and data["family"] != mc.family:
        raise CheckpointError(f"{path}: family {data['family']!r} differs from model_config family {mc.family!r}")
    lr = data["state_dict"].get("log_r")
    if lr is not None and not bool(((lr >= -30) & (lr <= 30)).all()):
        raise CheckpointError(f"{path}: prior log-rates 'log_r' range over [{float(lr.min()):.3g}, {float(lr.max()):.3g}], "
                              "outside [-30, 30]: expected counts no neuron carries")
    if "epoch" in data and data["epoch"] < 0:
        raise CheckpointError(f"{path}: epoch must be >= 0, got {data['epoch']}")


def validate_container(data: dict, path, model_cls, train_cls, check_weights=check_array_weights):
    """The checks every checkpoint family shares: known fields only, the model and training configs as the
    family's dataclasses, the preprocessing and its patch size, and the kinds of the bookkeeping fields.
    ``check_weights(state_dict, path)``: the weights' check (default: numpy arrays, :func:`check_array_weights`).
    Returns (model config, preprocessing)."""
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise CheckpointError(f"{path}: unknown checkpoint fields {unknown}")
    mc = typed_config(model_cls, data["model_config"], f"{path}: model_config")
    typed_config(train_cls, data["train_config"], f"{path}: train_config")
    try:
        prep = Preprocessing.from_dict(data["preprocessing"], where=f"{path}: preprocessing")
    except DataError as exc:
        raise CheckpointError(str(exc)) from None
    if prep.patch_size != mc.patch_size:
        raise CheckpointError(f"{path}: preprocessing patch_size {prep.patch_size} does not match the model's "
                              f"patch_size {mc.patch_size}")
    check_weights(data["state_dict"], path)
    kinds = {"data": dict, "metrics": dict, "history": list, "provenance": dict, "train_state": dict, "epoch": int}
    for k, kind in kinds.items():
        if k in data and (not isinstance(data[k], kind) or isinstance(data[k], bool)):
            raise CheckpointError(f"{path}: field {k!r} must be a {kind.__name__}, got {type(data[k]).__name__}")
    return mc, prep


class LoadedModel:
    """What a VAE loaded from a checkpoint says of itself, with or without torch (``config`` and ``path`` come from
    the subclass): its name, its file's SHA-256, and its inputs as checked patches."""

    config: object  # VAEConfig
    path: Path
    _sha: str | None = None

    @property
    def name(self) -> str:
        """Short description, e.g. ``pvae-lin-lin-K512``."""
        c = self.config
        prefix = "pvae" if c.family == "poisson" else f"{c.family}-vae"
        return f"{prefix}-{c.encoder}-{c.decoder}-K{c.n_latents}"

    @property
    def sha256(self) -> str:
        """SHA-256 of the checkpoint file."""
        if self._sha is None:
            self._sha = file_sha256(self.path)
        return self._sha

    def _inputs(self, patches) -> np.ndarray:
        """Model inputs (n, P, P) float32 from one patch, (n, P, P) or (n, P·P); finite."""
        x = np.asarray(patches, dtype=np.float32)
        P = self.config.patch_size
        if x.ndim == 2 and x.shape == (P, P):
            x = x[None]
        if x.ndim == 2 and x.shape[1] == P * P:
            x = x.reshape(-1, P, P)
        if x.ndim != 3 or x.shape[1:] != (P, P):
            raise ArgumentError(f"patches must be (n, {P}, {P}) model inputs (see TrainedModel.preprocess), "
                                f"got shape {np.shape(patches)}")
        if not np.all(np.isfinite(x)):
            raise DataError("patches hold NaN or infinite values")
        return x
