"""Safe checkpoints: a plain dict of tensors and plain values, never code.

A checkpoint holds ``format``/``version``, the family, the model config, the
state dict, the training config, the preprocessing that turns a raw image into
model input, final metrics, the per-epoch history, provenance (package
versions, seed, date) and, while a run is unfinished, the optimizer and RNG
state needed to resume it. Files are written to a temporary name and renamed,
and read with ``torch.load(..., weights_only=True)``: a file that would run
code when unpickled is refused, not executed. Every field of a loaded file is
checked (:func:`validate_checkpoint`) before a model is built from it.
"""
from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import torch

from ..data import Preprocessing
from ..errors import CheckpointError, DataError
from ..io.files import atomic_write, regular_input, regular_output
from ..io.torchfile import check_archive, check_kind
from .container import (  # noqa: F401 - the container's names, re-exported
    FORMAT,
    IPVAE_FAMILY,
    MAX_BYTES,
    REQUIRED,
    VERSION,
    check_tags,
    check_vae_fields,
    default_checkpoint_path,
    default_ipvae_path,
    validate_container,
)
from .vae import VAE, VAEConfig

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "validate_checkpoint",
    "model_from_checkpoint",
    "default_checkpoint_path",
    "default_ipvae_path",
]

def check_output(path: str | os.PathLike) -> Path:
    """Refuse (one line) to write a checkpoint over anything but a spikevae checkpoint: a device, FIFO, folder or
    symlink, or a user's file of another kind (``train --out notes.txt``)."""
    path = Path(path)
    try:
        regular_output(path)
    except DataError as exc:
        raise CheckpointError(str(exc)) from None
    if path.exists():
        try:
            load_checkpoint(path)
        except CheckpointError:
            raise CheckpointError(f"{path} exists and is not a spikevae checkpoint: refusing to replace it "
                                  "(choose another --out)") from None
    return path


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write a checkpoint dict atomically (``format`` and ``version`` are added)."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint payload lacks {', '.join(missing)}")
    return atomic_write(path, lambda tmp: torch.save(data, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read and check a checkpoint without running any code from it.

    Raises
    ------
    CheckpointError
        With one line naming the file and the problem.
    """
    try:
        path = regular_input(path, "checkpoint", MAX_BYTES)
    except DataError as exc:
        raise CheckpointError(str(exc)) from None
    check_kind(path)
    check_archive(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise CheckpointError(
                f"{path} is not a spikevae checkpoint: it holds objects that would run code when "
                "unpickled, and was refused without running them"
            ) from None
        raise CheckpointError(f"{path} is truncated or not a torch file (unpickling failed)") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint {path} is a directory, not a file") from None
    except PermissionError:
        raise CheckpointError(f"checkpoint {path} is not readable (permission denied)") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} is truncated or not a torch file ({msg})") from None
    return check_tags(data, path)


def check_weights(sd, path) -> None:
    """A state dict as a model can use it: names to dense floating-point tensors, finite in float32 (the dtype the
    models compute in: a float64 weight of 1e300 is finite as stored and infinite once cast)."""
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{path}: state_dict must map parameter names to tensors")
    for k, v in sd.items():
        if v.layout != torch.strided:
            raise CheckpointError(f"{path}: weight {k!r} is a {v.layout} tensor; weights are dense")
        if not v.is_floating_point():
            raise CheckpointError(f"{path}: weight {k!r} is {str(v.dtype).removeprefix('torch.')}; weights are "
                                  "floating-point")
        if not bool(torch.isfinite(v.to(torch.float32)).all()):
            raise CheckpointError(f"{path}: weight {k!r} holds NaN or infinite values (in float32)")


def validate_checkpoint(data: dict, path: str | os.PathLike = "checkpoint") -> tuple[VAEConfig, Preprocessing]:
    """Check every field of a loaded checkpoint dict; return its (model config, preprocessing).

    Types, ranges and finiteness of the configs and the preprocessing, the preprocessing's patch size
    against the model's, finite weights, and the kinds of the bookkeeping fields. Weight shapes are
    checked against the config when the model is built (:func:`model_from_checkpoint`).

    Raises
    ------
    CheckpointError
        One line naming the file and the field.
    """
    from .config import TrainConfig

    if data.get("family") == IPVAE_FAMILY:
        raise CheckpointError(f"{path} holds an iP-VAE (inference by iterated spiking dynamics, no encoder); this "
                              "command needs an amortized VAE checkpoint (P-VAE or a comparison family)")
    mc, prep = validate_container(data, path, VAEConfig, TrainConfig, check_weights)
    check_vae_fields(data, mc, path)
    if data.get("train_state") is not None:
        check_train_state(data["train_state"], [tuple(q.shape) for q in VAE(mc).parameters()], data["train_config"],
                          path)
    return mc, prep


def check_train_state(ts, shapes: list, train_config: dict, path) -> None:
    """The resume state of an unfinished run, as ``fit`` will use it: an epoch within the run, the batch generator's
    state (a CPU generator's byte state), and an Adamax state whose parameter groups and moment estimates match the
    model's parameters (``shapes``, in order), shape for shape."""
    if not isinstance(ts, dict) or not {"optimizer", "rng", "epoch"} <= set(ts):
        raise CheckpointError(f"{path}: train_state must hold optimizer, rng and epoch")
    epoch, epochs = ts["epoch"], train_config.get("epochs")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < int(epochs):
        raise CheckpointError(f"{path}: train_state epoch must be an integer in [0, {epochs}), got {epoch!r}")
    rng = ts["rng"]
    expected = torch.Generator().get_state()
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.shape != expected.shape:
        raise CheckpointError(f"{path}: train_state rng must be a generator state ({expected.numel()} bytes, uint8)")
    opt = ts["optimizer"]
    try:
        groups = opt["param_groups"]
        ids = [i for g in groups for i in g["params"]]
        state = opt["state"]
        ok = isinstance(state, dict) and sorted(ids) == list(range(len(shapes)))
        for i, st in state.items() if ok else ():
            for name in ("exp_avg", "exp_inf"):
                v = st[name]
                ok = ok and isinstance(v, torch.Tensor) and v.is_floating_point() and tuple(v.shape) == shapes[i] \
                    and bool(torch.isfinite(v.float()).all())
            ok = ok and all(isinstance(g.get("lr"), (int, float)) and math.isfinite(g["lr"]) for g in groups)
    except (KeyError, TypeError, IndexError, AttributeError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: train_state optimizer does not match the model ({len(shapes)} parameters "
                              "with Adamax moments of their shapes)")


def model_from_checkpoint(data: dict, path: str | os.PathLike = "checkpoint") -> VAE:
    """Validate a checkpoint dict, rebuild the model it describes and load its weights (strict shapes)."""
    cfg, _ = validate_checkpoint(data, path)
    try:
        model = VAE(cfg)
        model.load_state_dict(data["state_dict"], strict=True)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: model config is invalid ({exc})") from None
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the model config ({first})") from None
    return model.eval()
