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

import dataclasses
import math
import os
import pickle
from pathlib import Path

import torch

from ..data import Preprocessing
from ..errors import CheckpointError, DataError
from ..io.files import atomic_write, regular_input, regular_output
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

FORMAT = "spikevae.checkpoint"
VERSION = 1
_REQUIRED = ("format", "version", "model_config", "state_dict", "preprocessing", "train_config")
#: the family tag of iP-VAE checkpoints (same container, own configs: :mod:`spikevae.models.ipvae`)
IPVAE_FAMILY = "ipvae"
_OPTIONAL = ("family", "data", "metrics", "history", "epoch", "provenance", "train_state")


def default_checkpoint_path() -> Path:
    """The pretrained lin|lin P-VAE shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "assets" / "pvae_default.pt"


def default_ipvae_path() -> Path:
    """The iP-VAE shipped inside the package (docs/ipvae.md: 8 epochs of 50,000 patches, 23 min on 2 cores)."""
    return Path(__file__).resolve().parent.parent / "assets" / "ipvae_default.pt"


#: the largest checkpoint read (a K = 512, 16 x 16 P-VAE is about 1 MB)
MAX_BYTES = 2 * 2**30


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
    try:
        path = regular_input(path, "checkpoint", MAX_BYTES)
    except DataError as exc:
        raise CheckpointError(str(exc)) from None
    _check_kind(path)
    _check_archive(path)
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


#: the first bytes of files that are often mistaken for (or renamed to) a checkpoint
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"\x93NUMPY", "a NumPy .npy array"),
          (b"\x89HDF\r\n\x1a\n", "an HDF5 file (NWB, NIX, ...)"), (b"%PDF", "a PDF document"),
          (b"\x1f\x8b", "a gzip archive"))


def _check_kind(path: Path):
    """Say what a file is when it is not a torch file at all, from its first bytes (before torch reads it): empty,
    another known format, text, or a zip archive whose end is missing (a torch file cut short)."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        raise CheckpointError(f"{path} is empty, not a torch file")
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            raise CheckpointError(f"{path} is {kind}, not a torch file")
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is truncated: a torch file (zip archive) whose end is missing, as an "
                                  "interrupted copy or download leaves it")
        return
    if head.startswith(b"\x80"):
        return  # a pickle: torch's legacy format, which torch.load reads (or refuses) itself
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # not just a character cut at the end of the block read
                raise CheckpointError(f"{path} is not a torch file (unrecognised content)") from None
        raise CheckpointError(f"{path} is a text file, not a torch file")
    raise CheckpointError(f"{path} is not a torch file (unrecognised content)")


def _check_archive(path: Path):
    """Refuse, before anything is decompressed, an archive that would take more memory than its own size.

    ``torch.save`` writes a zip whose entries are stored, not compressed: a compressed entry, or entries
    declaring more bytes than the file holds, is not a torch-written checkpoint (a zip bomb is both).
    """
    import zipfile

    if not zipfile.is_zipfile(path):
        return  # torch.load reports what it is
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise CheckpointError(f"{path} is truncated or not a torch file (damaged zip archive)") from None
    size = path.stat().st_size
    packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
    declared = sum(i.file_size for i in infos)
    if packed:
        raise CheckpointError(f"{path} is not a spikevae checkpoint: {len(packed)} entries are compressed "
                              f"(torch.save stores them), declaring {declared / 2**20:.1f} MB in a "
                              f"{size / 2**20:.1f} MB file; refused before decompressing")
    if declared > size:
        raise CheckpointError(f"{path} is not a spikevae checkpoint: its entries declare {declared / 2**20:.1f} MB "
                              f"in a {size / 2**20:.1f} MB file; refused before reading")


def _typed_config(cls, d, where: str):
    """A frozen config dataclass from a stored dict: unknown fields, wrong types and non-finite numbers refused."""
    if not isinstance(d, dict):
        raise CheckpointError(f"{where} must be a dict of fields, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise CheckpointError(f"{where} has unknown fields {unknown}")
    for name, v in d.items():
        default = fields[name].default
        kind = type(default)
        if default is None:
            ok = v is None or isinstance(v, str)
        elif kind is bool:
            ok = isinstance(v, bool)
        elif kind is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif kind is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        else:
            ok = isinstance(v, kind)
        if not ok:
            want = {bool: "a boolean", int: "an integer", float: "a finite number", str: "a string"}.get(kind, "a string or None")
            raise CheckpointError(f"{where} field {name!r} must be {want}, got {v!r}")
    try:
        return cls(**d).validate()
    except ValueError as exc:
        raise CheckpointError(f"{where} is invalid: {exc}") from None


def check_weights(sd, path) -> None:
    """A state dict as a model can use it: names to dense floating-point tensors, finite in float32 (the dtype the
    models compute in: a float64 weight of 1e300 is finite as stored and infinite once cast)."""
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{path}: state_dict must map parameter names to tensors")
    for k, v in sd.items():
        if v.layout != torch.strided:
            raise CheckpointError(f"{path}: weight {k!r} is a {v.layout} tensor; weights are dense")
        if not v.is_floating_point():
            raise CheckpointError(f"{path}: weight {k!r} is {v.dtype}; weights are floating-point")
        if not bool(torch.isfinite(v.to(torch.float32)).all()):
            raise CheckpointError(f"{path}: weight {k!r} holds NaN or infinite values (in float32)")


def validate_container(data: dict, path, model_cls, train_cls):
    """The checks every checkpoint family shares: known fields only, the model and training configs as the
    family's dataclasses, the preprocessing and its patch size, and the kinds of the bookkeeping fields.
    Returns (model config, preprocessing)."""
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise CheckpointError(f"{path}: unknown checkpoint fields {unknown}")
    mc = _typed_config(model_cls, data["model_config"], f"{path}: model_config")
    _typed_config(train_cls, data["train_config"], f"{path}: train_config")
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
    mc, prep = validate_container(data, path, VAEConfig, TrainConfig)
    if "family" in data and data["family"] != mc.family:
        raise CheckpointError(f"{path}: family {data['family']!r} differs from model_config family {mc.family!r}")
    lr = data["state_dict"].get("log_r")
    if lr is not None and not bool(((lr >= -30) & (lr <= 30)).all()):
        raise CheckpointError(f"{path}: prior log-rates 'log_r' range over [{float(lr.min()):.3g}, {float(lr.max()):.3g}], "
                              "outside [-30, 30]: expected counts no neuron carries")
    if "epoch" in data and data["epoch"] < 0:
        raise CheckpointError(f"{path}: epoch must be >= 0, got {data['epoch']}")
    if data.get("train_state") is not None:
        check_train_state(data["train_state"], mc, data["train_config"], path)
    return mc, prep


def check_train_state(ts, mc: VAEConfig, train_config: dict, path) -> None:
    """The resume state of an unfinished run, as ``fit`` will use it: an epoch within the run, the batch generator's
    state (a CPU generator's byte state), and an Adamax state whose parameter groups and moment estimates match the
    model the config builds, shape for shape."""
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
    shapes = [tuple(q.shape) for q in VAE(mc).parameters()]
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
