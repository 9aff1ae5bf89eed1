"""Safe checkpoints: a plain dict of tensors and plain values, never code.

A checkpoint holds ``format``/``version``, the family, the model config, the
state dict, the training config, the preprocessing that turns a raw image into
model input, final metrics, the per-epoch history, provenance (package
versions, seed, date) and, while a run is unfinished, the optimizer and RNG
state needed to resume it. Files are written to a temporary name and renamed,
and read with ``torch.load(..., weights_only=True)``: a file that would run
code when unpickled is refused, not executed.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import os
import pickle
import platform
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from .vae import VAE, VAEConfig

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "load_model",
    "provenance",
    "file_sha256",
    "default_checkpoint_path",
    "atomic_write",
    "write_json",
    "write_text",
    "write_npz",
    "write_csv",
]

FORMAT = "spikevae.checkpoint"
VERSION = 1
_REQUIRED = ("format", "version", "model_config", "state_dict", "preprocessing")


class CheckpointError(ValueError):
    """A file that is missing, unreadable, not a spikevae checkpoint, or inconsistent."""


def default_checkpoint_path() -> Path:
    """The pretrained lin|lin P-VAE shipped inside the package."""
    return Path(__file__).resolve().parent / "assets" / "pvae_default.pt"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def provenance(seed: int | None = None) -> dict:
    """Versions, platform, date and seed, as plain values."""
    pkgs = {}
    for name in ("spikevae", "torch", "numpy", "scipy", "scikit-image", "scikit-learn", "brian2", "neo", "pynwb"):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    return {
        "packages": pkgs,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
    }


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file to ``path``.

    Nothing is left at ``path`` (or as a temporary file) if ``write`` fails.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise CheckpointError(f"output folder {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=directory)  # keeps the extension
    except OSError as exc:
        raise CheckpointError(f"cannot write to {directory}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, obj) -> Path:
    """JSON (indented; unknown objects as strings), atomically."""
    import json

    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, default=str)

    return atomic_write(path, w)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """A text file, atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_npz(path: str | os.PathLike, **arrays) -> Path:
    """An uncompressed ``.npz`` of plain arrays (no pickles), atomically."""
    def w(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, w)


def write_csv(path: str | os.PathLike, header: list, rows) -> Path:
    """A CSV with one header line, atomically."""
    import csv

    def w(tmp):
        with open(tmp, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(header)
            out.writerows(rows)

    return atomic_write(path, w)


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write a checkpoint dict atomically (``format`` and ``version`` are added)."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    missing = [k for k in _REQUIRED if k not in data]
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
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
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
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a spikevae checkpoint (no '{FORMAT}' format tag)")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')!r} is not supported "
                              f"(this spikevae reads version {VERSION})")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return data


def model_from_checkpoint(data: dict, path: str | os.PathLike = "checkpoint") -> VAE:
    """Rebuild the model a checkpoint dict describes and load its weights (strict)."""
    fields = {f.name for f in dataclasses.fields(VAEConfig)}
    cfg_dict = data["model_config"]
    if not isinstance(cfg_dict, dict) or set(cfg_dict) - fields:
        raise CheckpointError(f"{path}: model config has unknown fields {sorted(set(cfg_dict) - fields)}")
    try:
        model = VAE(VAEConfig(**cfg_dict))
        model.load_state_dict(data["state_dict"], strict=True)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: model config is invalid ({exc})") from None
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the model config ({first})") from None
    return model.eval()


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> tuple[VAE, dict]:
    """Load a checkpoint (default: the shipped model) → (model on ``device``, checkpoint dict)."""
    path = default_checkpoint_path() if path is None else Path(path)
    data = load_checkpoint(path)
    return model_from_checkpoint(data, path).to(device), data
