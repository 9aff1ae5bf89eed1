"""Atomic file writers and provenance, free of torch (reading or writing a run never imports the model).

Every writer writes to a temporary name in the target folder and renames it when complete, so a
failed or interrupted write never leaves a half-written file under the final name.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from ..errors import STOP_REQUESTED, DataError

__all__ = ["atomic_write", "check_free_space", "write_json", "write_text", "write_npz", "write_csv", "file_sha256", "file_record",
           "provenance", "regular_output", "regular_input", "os_error_of"]

#: the run folders open in this process (``spikevae.io.run_folder.RunFolder`` registers itself): a file written
#: inside one is made in its work folder and logged by name before it is renamed into place
ACTIVE_RUNS: list = []


def file_record(path: str | os.PathLike) -> dict:
    """What a run records of an input file: its name, size and SHA-256, never the folder it lies in (a file shared
    on DANDI must not reveal the layout of the machine that made it)."""
    path = Path(path)
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


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


def regular_output(path: Path) -> None:
    """Refuse (:class:`DataError`, one line) to replace anything at ``path`` but a regular file: a device, FIFO,
    socket, folder, or a symlink (never followed out of its folder)."""
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise DataError(f"{path} is a symbolic link: refusing to replace it (give the path of a regular file)")
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, FIFO or socket)"
        raise DataError(f"{path} is {kind}: refusing to replace it")


def regular_input(path: str | os.PathLike, what: str, max_bytes: float) -> Path:
    """``path`` if it is a regular file of at most ``max_bytes`` (symlinks followed), else :class:`DataError` in one
    line at once: a FIFO would block every read, a device or ``/dev/zero`` never ends, a folder is not a file."""
    import stat

    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{what} {path} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{what} {path} is not a regular file (a device, FIFO or socket)")
    if st.st_size > max_bytes:
        raise DataError(f"{what} {path} is {st.st_size / 2**30:.3g} GiB, more than the {max_bytes / 2**30:.3g} GiB "
                        "read here")
    return path


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file to ``path``.

    Nothing is left at ``path`` (or as a temporary file) if ``write`` fails or is interrupted. Only a regular file
    is ever replaced (:func:`regular_output`). Inside an open run folder the temporary file lies in the run's work
    folder and ``path`` is logged as the run's before the rename, so a killed run's files are known by name.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise DataError(f"output folder {directory} does not exist")
    regular_output(path)
    run = next((r for r in reversed(ACTIVE_RUNS) if r.holds(path)), None)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix,
                                   dir=run.work if run is not None else directory)  # keeps the extension
    except OSError as exc:
        raise DataError(f"cannot write to {directory}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        write(tmp)
        if STOP_REQUESTED.is_set():  # stopped while writing (a library may have swallowed the KeyboardInterrupt)
            raise KeyboardInterrupt
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        if run is not None:
            run.log_created(path)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        reason = os_error_of(exc)
        if reason:  # a write fault (full disk, quota, I/O error) deep inside a library: one line
            raise DataError(f"cannot write {path}: {reason}") from None
        raise
    return path


def os_error_of(exc: BaseException) -> str | None:
    """The OS error behind a failed write (also when h5py, torch or matplotlib re-raised it as their own type)."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno:
            return exc.strerror or os.strerror(exc.errno)
        text = str(exc)
        for code in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG):
            if os.strerror(code) in text or errno.errorcode[code] in text:
                return os.strerror(code)
        if "file write failed" in text or "enforce fail" in text and "write" in text:
            return "write failed (is the disk full?)"
        exc = exc.__cause__ or exc.__context__
    return None


def check_free_space(folder: str | os.PathLike, need: float, what: str):
    """Refuse (:class:`DataError`, one line) when ``folder``'s file system has less than ``need`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise DataError(f"not enough space for {what} in {folder}: {free / 2**20:.1f} MB free, "
                        f"about {need / 2**20:.1f} MB needed")


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
