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

from ..errors import DataError

__all__ = ["atomic_write", "check_free_space", "RunFolder", "MANIFEST", "write_json", "write_text", "write_npz", "write_csv",
           "file_sha256", "provenance"]


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
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        reason = _os_error(exc)
        if reason:  # a write fault (full disk, quota, I/O error) deep inside a library: one line
            raise DataError(f"cannot write {path}: {reason}") from None
        raise
    return path


def _os_error(exc: BaseException) -> str | None:
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


MANIFEST = ".spikevae-run.json"
_OURS = (".*.tmp-*", ".spikes-spill-*.h5", ".write-test-*")  # temporary names our writers use


class RunFolder:
    """One run per output folder: ``with RunFolder(out, command, overwrite) as files: files.add(path)``.

    The folder must be new or empty, or hold an earlier run of the same ``command`` (its manifest,
    ``.spikevae-run.json``, lists what it wrote), which ``overwrite`` removes first, as a whole;
    anything else is refused with one line. Temporary files of killed runs are removed. If the
    block fails, every file it added is removed (no half run); on success the manifest is written.
    """

    def __init__(self, out: str | os.PathLike, command: str, overwrite: bool = False):
        self.path, self.command, self.overwrite = Path(out), command, overwrite
        self.files: list[Path] = []

    def _previous(self) -> list[Path]:
        import json

        out = self.path
        if not out.exists():
            return []
        if not out.is_dir():
            raise DataError(f"output folder {out} is a file")
        for pattern in _OURS:  # leftovers of a killed run
            for p in out.rglob(pattern):
                p.unlink(missing_ok=True)
        entries = [p for p in out.rglob("*") if p.is_file()]
        if not entries:
            return []
        manifest = out / MANIFEST
        try:
            old = json.loads(manifest.read_text())
            command, listed = old["command"], [out / f for f in old["files"]]
        except (OSError, ValueError, KeyError, TypeError):
            raise DataError(f"output folder {out} is not empty and holds no spikevae run: choose a new or empty "
                            "folder") from None
        if command != self.command:
            raise DataError(f"output folder {out} holds a `{command}` run, not a `{self.command}` one: choose "
                            "another folder")
        if not self.overwrite:
            raise DataError(f"output folder {out} holds an earlier `{command}` run: pass --overwrite to replace it "
                            "or choose another folder")
        stray = sorted(str(p.relative_to(out)) for p in entries if p not in listed and p != manifest)
        if stray:
            raise DataError(f"output folder {out} holds files the earlier run did not write ({', '.join(stray[:3])}"
                            f"{', ...' if len(stray) > 3 else ''}): move them or choose another folder")
        return listed + [manifest]

    def __enter__(self) -> RunFolder:
        old = self._previous()
        for p in old:
            p.unlink(missing_ok=True)
        try:
            (self.path / "figures").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create output folder {self.path}: {exc.strerror or exc}") from None
        if not os.access(self.path, os.W_OK):
            raise DataError(f"output folder {self.path} is not writable")
        return self

    def add(self, path: str | os.PathLike) -> Path:
        """Record a file the run wrote (returned unchanged)."""
        self.files.append(Path(path))
        return Path(path)

    def __exit__(self, kind, exc, tb):
        if kind is not None:
            for p in self.files:
                p.unlink(missing_ok=True)
            return False
        rel = [str(p.relative_to(self.path)) for p in self.files]
        write_json(self.path / MANIFEST, {"command": self.command, "files": rel, "date": provenance()["date"]})
        return False


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
