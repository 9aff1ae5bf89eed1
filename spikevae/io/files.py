"""Atomic file writers and provenance, free of torch (reading or writing a run never imports the model).

Every writer writes to a temporary name in the target folder and renames it when complete, so a
failed or interrupted write never leaves a half-written file under the final name.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["atomic_write", "write_json", "write_text", "write_npz", "write_csv", "file_sha256", "provenance"]


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
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seed": seed,
    }


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file to ``path``.

    Nothing is left at ``path`` (or as a temporary file) if ``write`` fails or is interrupted.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise DataError(f"output folder {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=directory)  # keeps the extension
    except OSError as exc:
        raise DataError(f"cannot write to {directory}: {exc.strerror or exc}") from None
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
