"""Torch checkpoint files read without torch: what a file is, whether its archive is sound, and its contents as
numpy arrays and plain values.

``torch.save`` writes a zip archive: ``<name>/data.pkl``, a pickle of the saved object in which every tensor is a
call to ``torch._utils._rebuild_tensor_v2`` on a storage that the pickle names by key, and ``<name>/data/<key>``,
each storage's raw little-endian bytes. :func:`read_torch_file` unpickles ``data.pkl`` with an unpickler that knows
only those names (plus ``collections.OrderedDict``) and builds each tensor as a read-only numpy array from its
storage's bytes, so reading a checkpoint never runs code from it: any other name is refused, as
``torch.load(weights_only=True)`` refuses it. The checks of the file (:func:`check_kind`, :func:`check_archive`)
are the ones :func:`spikevae.models.checkpoint.load_checkpoint` runs before torch reads a file.
"""
from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

__all__ = ["check_kind", "check_archive", "read_torch_file"]

#: the first bytes of files that are often mistaken for (or renamed to) a checkpoint
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"\x93NUMPY", "a NumPy .npy array"),
          (b"\x89HDF\r\n\x1a\n", "an HDF5 file (NWB, NIX, ...)"), (b"%PDF", "a PDF document"),
          (b"\x1f\x8b", "a gzip archive"))

#: torch's typed storages and the numpy type of their elements (little-endian, as torch writes them)
_STORAGES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
             "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}


def check_kind(path: Path) -> None:
    """Say what a file is when it is not a torch file at all, from its first bytes (before anything reads it):
    empty, another known format, text, or a zip archive whose end is missing (a torch file cut short)."""
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


def check_archive(path: Path) -> None:
    """Refuse, before anything is decompressed, an archive that would take more memory than its own size.

    ``torch.save`` writes a zip whose entries are stored, not compressed: a compressed entry, or entries
    declaring more bytes than the file holds, is not a torch-written checkpoint (a zip bomb is both).
    """
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


class _Storage:
    """A storage named in the pickle: its key in the archive and the numpy type of its elements."""

    def __init__(self, dtype: str, key: str, numel: int):
        self.dtype, self.key, self.numel = np.dtype(dtype), key, int(numel)


def _rebuild_tensor(storage: _Storage, offset, size, stride, *rest):
    """``torch._utils._rebuild_tensor_v2`` as numpy: the strided view of the storage's elements, copied (C order)."""
    data = storage.array
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if any(s < 0 for s in size) or any(s < 0 for s in stride) or not 0 <= int(offset) <= len(data):
        raise CheckpointError("a tensor's shape or strides are negative or out of its storage")
    if size and any(s == 0 for s in size):
        return np.zeros(size, dtype=data.dtype)
    last = int(offset) + sum((n - 1) * st for n, st in zip(size, stride))
    if last >= len(data):
        raise CheckpointError("a tensor reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(data[int(offset):], shape=size,
                                           strides=tuple(st * data.itemsize for st in stride))
    return np.array(view)


class _Layout:
    """A tensor of another layout than dense (sparse, ...): named, not built; the checks refuse it by its layout."""

    def __init__(self, layout):
        self.layout = str(layout)


def _rebuild_sparse(layout, *args):
    return _Layout(layout)


class _Unpickler(pickle.Unpickler):
    """Knows only what a state dict of tensors and plain values needs; every other name is refused unrun."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGES:
            return _STORAGES[name]
        if (module, name) == ("torch.serialization", "_get_layout"):
            return str  # the layout's name, e.g. 'torch.sparse_coo'
        if (module, name) == ("torch", "Size"):
            return tuple
        if (module, name) in (("torch._utils", "_rebuild_sparse_tensor"), ("torch._utils", "_rebuild_sparse_csr_tensor")):
            return _rebuild_sparse
        raise pickle.UnpicklingError(f"weights only: {module}.{name} is not allowed")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] in _STORAGES.values()):
            raise pickle.UnpicklingError(f"weights only: unknown persistent id {pid!r:.80}")
        storage = _Storage(pid[1], str(pid[2]), pid[4])
        raw = self.archive.read(f"{self.prefix}/data/{storage.key}")
        if len(raw) < storage.numel * storage.dtype.itemsize:
            raise CheckpointError(f"storage {storage.key} holds {len(raw)} bytes, fewer than its {storage.numel} elements")
        storage.array = np.frombuffer(raw, dtype=storage.dtype, count=storage.numel)
        return storage


def read_torch_file(path: Path):
    """The object a ``torch.save`` zip archive holds, with tensors as numpy arrays; nothing in it is run.

    Raises :class:`~spikevae.errors.CheckpointError` (one line) for a file that is not such an archive (after
    :func:`check_kind` and :func:`check_archive`) or that names anything but tensors and plain values.
    """
    path = Path(path)
    check_kind(path)
    check_archive(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is a pickle in torch's legacy format, not the zip archive torch.save writes "
                              "(spikevae's checkpoints are such archives)")
    try:
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkl) != 1:
                raise CheckpointError(f"{path} is a zip archive but not a torch file (no data.pkl)")
            with z.open(pkl[0]) as f:
                return _Unpickler(f, z, pkl[0].split("/")[0]).load()
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc):
            raise CheckpointError(f"{path} is not a spikevae checkpoint: it holds objects that would run code when "
                                  "unpickled, and was refused without running them") from None
        raise CheckpointError(f"{path} is truncated or not a torch file (unpickling failed)") from None
    except (zipfile.BadZipFile, KeyError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path} is truncated or not a torch file ({type(exc).__name__})") from None
