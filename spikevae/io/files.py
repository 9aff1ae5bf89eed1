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
_BACKUP = ".spikevae-replaced"  # the earlier run while --overwrite replaces it


class RunFolder:
    """One run per output folder: ``with RunFolder(out, command, overwrite): ...write files into out...``.

    The folder must be new or empty, or hold an earlier run of the same ``command`` (its manifest,
    ``.spikevae-run.json``, lists what that run wrote), which ``overwrite`` replaces as a whole; anything
    else is refused with one line before any work. The earlier run is moved aside (a rename in the
    same folder) and comes back unchanged if the new run fails, is interrupted or is killed (the next
    run into the folder restores it first); temporary files of killed runs are removed. Since the
    folder is empty when the block starts, everything in it at the end is this run's: on success the
    manifest lists it, on failure it is removed.
    """

    def __init__(self, out: str | os.PathLike, command: str, overwrite: bool = False):
        self.path, self.command, self.overwrite = Path(out), command, overwrite
        self._created = False

    @property
    def _backup(self) -> Path:
        return self.path / _BACKUP

    def _files(self) -> list[Path]:
        """The run's files now in the folder (not the manifest, temporary files or the moved-aside run)."""
        return sorted(p for p in self.path.rglob("*") if (p.is_file() or p.is_symlink()) and p.name != MANIFEST
                      and _BACKUP not in p.relative_to(self.path).parts
                      and not any(p.match(pattern) for pattern in _OURS))

    def _clear(self):
        """Remove every file and (now empty) sub-folder, except the moved-aside run."""
        for p in sorted(self.path.rglob("*"), key=lambda q: len(q.parts), reverse=True):
            if p == self._backup or self._backup in p.parents:
                continue
            if p.is_dir() and not p.is_symlink():
                try:
                    p.rmdir()
                except OSError:
                    pass
            else:
                p.unlink(missing_ok=True)

    def _move(self, src: Path, dst: Path):
        for p in sorted(q for q in src.rglob("*") if q.is_file() or q.is_symlink()):
            target = dst / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)

    def _restore(self):
        """Put a moved-aside run back (after a failed, interrupted or killed replacement)."""
        if self._backup.is_dir():
            self._clear()
            self._move(self._backup, self.path)
            shutil.rmtree(self._backup, ignore_errors=True)

    def _check(self):
        """Refuse (one line) a folder that is neither empty nor an earlier run of this command."""
        import json

        out = self.path
        entries = self._files()
        manifest = out / MANIFEST
        if not entries and not manifest.exists():
            return False
        try:
            old = json.loads(manifest.read_text())
            command, listed = old["command"], {out / f for f in old["files"]}
        except (OSError, ValueError, KeyError, TypeError):
            raise DataError(f"output folder {out} is not empty and holds no spikevae run: choose a new or empty "
                            "folder") from None
        if command != self.command:
            raise DataError(f"output folder {out} holds a `{command}` run, not a `{self.command}` one: choose "
                            "another folder")
        if not self.overwrite:
            raise DataError(f"output folder {out} holds an earlier `{command}` run: pass --overwrite to replace it "
                            "or choose another folder")
        stray = [str(p.relative_to(out)) for p in entries if p not in listed]
        if stray:
            raise DataError(f"output folder {out} holds files the earlier run did not write ({', '.join(stray[:3])}"
                            f"{', ...' if len(stray) > 3 else ''}): move them or choose another folder")
        return True

    def __enter__(self) -> RunFolder:
        out = self.path
        if out.exists() and not out.is_dir():
            raise DataError(f"output folder {out} is a file")
        self._created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
        if not os.access(out, os.W_OK | os.X_OK):
            raise DataError(f"output folder {out} is not writable")
        for pattern in _OURS:  # leftovers of a killed run
            for p in out.rglob(pattern):
                p.unlink(missing_ok=True)
        self._restore()  # a replacement that was killed: the earlier run is still the folder's run
        if self._check():
            try:
                self._move(out, self._backup)
            except OSError as exc:
                self._restore()
                raise DataError(f"cannot replace the earlier run in {out}: {exc.strerror or exc}") from None
        self._clear()  # empty sub-folders of the earlier run
        (out / "figures").mkdir(exist_ok=True)
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            try:
                rel = [str(p.relative_to(self.path)) for p in self._files()]
                write_json(self.path / MANIFEST, {"command": self.command, "files": rel, "date": provenance()["date"]})
            except BaseException:
                self._fail()
                raise
            shutil.rmtree(self._backup, ignore_errors=True)
            return False
        self._fail()
        return False

    def _fail(self):
        """Remove what this run wrote; bring the earlier run back (or the folder, if this run made it, away)."""
        self._clear()
        self._restore()
        if self._created:
            try:
                self.path.rmdir()
            except OSError:
                pass


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
