"""One run per output folder, and a run deletes or replaces only what it created.

``with RunFolder(out, command, overwrite): ...write files into out...``

- **Ownership first.** Before anything is touched, the folder must be new or empty, or hold an earlier run of
  the same ``command`` (its manifest, :data:`MANIFEST`, lists what that run wrote), which ``overwrite`` replaces
  as a whole; any file no run wrote, another command's run, a run folder above or below ``out``, the current
  directory, or a symlink as ``out`` is refused with one line.
- **A lock.** :data:`LOCK` is created exclusively (``O_EXCL``, as git's ``index.lock``) and holds this process's
  id: a second run into the same folder at the same time is refused in one line. A lock whose process is gone
  is a killed run's: the next run recovers the folder (below) and takes the lock.
- **Tracked by name.** Files are written through :func:`spikevae.io.atomic_write`, which makes each temporary file
  in this run's work folder (``.spikevae-work-<id>``) and logs the final name there before renaming it into place.
  On failure, interruption or kill, exactly the logged files, the work folder and the folders the run made are
  removed, and an earlier run moved aside (:data:`BACKUP`) comes back unchanged; nothing is removed by pattern.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from ..errors import STOP_REQUESTED, DataError
from .files import ACTIVE_RUNS, provenance, write_json

__all__ = ["RunFolder", "MANIFEST", "LOCK", "BACKUP"]

MANIFEST = ".spikevae-run.json"  # what a finished run wrote
LOCK = ".spikevae-lock"  # the run writing into the folder now: {"pid", "command", "token"}
BACKUP = ".spikevae-replaced"  # the earlier run while --overwrite replaces it
_WORK = ".spikevae-work-"  # + token: a run's temporary files and its log of created names
_LOG = "created.txt"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunFolder:
    """The output folder of one run of ``command`` (see the module's description)."""

    def __init__(self, out: str | os.PathLike, command: str, overwrite: bool = False):
        self.path, self.command, self.overwrite = Path(out), command, overwrite
        self.token = uuid.uuid4().hex[:12]
        self._created = self._locked = False
        self._dirs: list[Path] = []  # folders this run made inside the run folder

    # ------------------------------------------------------------------ what atomic_write asks
    @property
    def work(self) -> Path:
        return self.path / f"{_WORK}{self.token}"

    def holds(self, path: Path) -> bool:
        """Whether ``path`` is a file of this run's folder (not of its work folder or the moved-aside run)."""
        try:
            rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(self.path))
        except ValueError:
            return False
        return bool(rel.parts) and not rel.parts[0].startswith((_WORK, BACKUP, LOCK))

    def log_created(self, path: Path) -> None:
        """Record ``path`` as this run's, before it is renamed into place (a forked figure process logs here too)."""
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(self.path))
        with open(self.work / _LOG, "a") as f:
            f.write(rel + "\n")

    def mkdir(self, rel: str) -> Path:
        """A sub-folder of the run (removed again if the run fails and it is empty)."""
        d = self.path / rel
        if not d.exists():
            d.mkdir(parents=True)
            self._dirs.append(d)
        return d

    # ------------------------------------------------------------------ entering
    def __enter__(self) -> RunFolder:
        out = self.path
        self._refuse_where()
        self._created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
        if not os.access(out, os.W_OK | os.X_OK):
            raise DataError(f"output folder {out} is not writable")
        try:
            self._lock()
            _recover_work_folders(out)  # what killed runs left: their logged files, work folders, moved-aside run
            if self._check():
                try:
                    _move(out, out / BACKUP, skip=(LOCK,))
                except OSError as exc:
                    _restore(out)
                    raise DataError(f"cannot replace the earlier run in {out}: {exc.strerror or exc}") from None
            self.work.mkdir()
            self.mkdir("figures")
        except BaseException:
            self._unlock()
            if self._created:
                shutil.rmtree(out, ignore_errors=True)  # it is new: everything in it is this run's
            raise
        ACTIVE_RUNS.append(self)
        return self

    def _refuse_where(self) -> None:
        out = self.path
        if str(self.path) in ("", ".") or Path(os.path.abspath(out)) == Path.cwd():
            raise DataError("the output folder must be a folder of its own, not the current directory "
                            "(give --out a new folder's name)")
        if out.is_symlink():
            raise DataError(f"output folder {out} is a symbolic link: give the folder itself")
        if out.exists() and not out.is_dir():
            raise DataError(f"output folder {out} is a file")
        real = Path(os.path.realpath(out))
        own = {Path(os.path.realpath(r.path)) for r in ACTIVE_RUNS}  # a run of this process may hold a run of its own
        for parent in real.parents:
            if parent not in own and ((parent / MANIFEST).is_file() or (parent / LOCK).exists()):
                raise DataError(f"output folder {out} lies inside the run folder {parent}: choose a folder outside it")
        if out.is_dir():
            listed = _listed(out)
            for p in out.rglob("*"):
                rel = p.relative_to(out)
                if (p.name in (MANIFEST, LOCK) and p.parent != out and rel.parts[0] != BACKUP
                        and str(rel) not in listed):  # a run folder below out that is not part of out's run
                    raise DataError(f"output folder {out} holds another run's folder ({p.parent.relative_to(out)}): "
                                    "choose another folder")

    def _lock(self) -> None:
        """Take :data:`LOCK` exclusively; a lock whose process is gone is a killed run's and is taken over."""
        lock = self.path / LOCK
        info = json.dumps({"pid": os.getpid(), "command": self.command, "token": self.token})
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    held = json.loads(lock.read_text())
                    pid = int(held["pid"])
                except (OSError, ValueError, KeyError, TypeError):
                    pid = -1
                if pid > 0 and _alive(pid) and pid != os.getpid():
                    raise DataError(f"another run (`{held.get('command')}`, process {pid}) is writing into {self.path} "
                                    "now: wait for it or choose another folder") from None
                if pid == os.getpid():
                    raise DataError(f"this process already writes a run into {self.path}") from None
                lock.unlink(missing_ok=True)  # a killed run's: its files are recovered next
                continue
            with os.fdopen(fd, "w") as f:
                f.write(info)
            self._locked = True
            return
        raise DataError(f"cannot take the lock of {self.path}")

    def _unlock(self) -> None:
        if self._locked:
            (self.path / LOCK).unlink(missing_ok=True)
            self._locked = False

    def _files(self) -> list[Path]:
        """The files now in the folder, but the manifest, the lock, work folders and the moved-aside run."""
        out = self.path
        return sorted(p for p in out.rglob("*") if (p.is_file() or p.is_symlink())
                      and p.relative_to(out).parts[0] not in (MANIFEST, LOCK, BACKUP)
                      and not p.relative_to(out).parts[0].startswith(_WORK))

    def _check(self) -> bool:
        """Refuse (one line) a folder that is neither empty nor an earlier run of this command; True when it holds
        an earlier run to replace."""
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

    # ------------------------------------------------------------------ leaving
    def _created_files(self) -> list[Path]:
        try:
            names = (self.work / _LOG).read_text().splitlines()
        except OSError:
            return []
        return sorted({self.path / n for n in names if n})

    def __exit__(self, kind, exc, tb):
        if self in ACTIVE_RUNS:
            ACTIVE_RUNS.remove(self)
        if kind is None and STOP_REQUESTED.is_set():
            # a stop (Ctrl-C, SIGTERM) whose exception a library swallowed: the run is not complete
            self._fail()
            raise KeyboardInterrupt
        if kind is None:
            _remove_empty(self._dirs)  # a complete run leaves no empty folder it made (no figures/ without figures)
            try:
                rel = sorted(str(p.relative_to(self.path)) for p in self._created_files() if p.is_file())
                write_json(self.path / MANIFEST, {"command": self.command, "files": rel, "token": self.token,
                                                  "date": provenance()["date"]})
            except BaseException:
                self._fail()
                raise
            # the manifest is the commit point: from here on a recovery keeps this run (see _recover_work_folders)
            outer = next((r for r in reversed(ACTIVE_RUNS) if r.holds(self.path / MANIFEST)), None)
            if outer is not None:  # a run inside a run of this process: its files are the enclosing run's too
                for f in [*rel, MANIFEST]:
                    outer.log_created(self.path / f)
            shutil.rmtree(self.path / BACKUP, ignore_errors=True)
            _remove_work(self.work)
            self._unlock()
            return False
        self._fail()
        return False

    def _fail(self) -> None:
        """Remove what this run created; bring the earlier run back (or the folder, if this run made it, away)."""
        created = self._created_files()
        for p in created:
            p.unlink(missing_ok=True)
        _remove_work(self.work)
        parents = {q for p in created for q in p.parents if self.path in q.parents}  # sub-folders the files were in
        _remove_empty([*self._dirs, *parents])
        _restore(self.path)
        self._unlock()
        if self._created:
            try:
                self.path.rmdir()
            except OSError:
                pass


def _remove_empty(dirs) -> None:
    """Remove those of ``dirs`` that are empty, deepest first (a folder emptied by its sub-folder's removal too)."""
    for d in sorted(dirs, key=lambda q: len(q.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:
            pass


def _recover_work_folders(out: Path) -> None:
    """Undo what killed runs left in ``out`` (called holding the lock): the files each logged as its own (unless its
    manifest was written: it completed), its work folder, and an earlier run it had moved aside, which comes back
    unless the replacement completed."""
    done = _manifest(out).get("token")
    for work in sorted(out.glob(f"{_WORK}*")):
        if not work.is_dir() or work.is_symlink():
            continue
        if work.name != f"{_WORK}{done}":
            try:
                names = (work / _LOG).read_text().splitlines()
            except OSError:
                names = []
            for n in names:
                p = out / n
                if n and (p.is_file() or p.is_symlink()) and Path(os.path.abspath(p)).is_relative_to(os.path.abspath(out)):
                    p.unlink()
        _remove_work(work)
    _restore(out)


def _remove_work(work: Path) -> None:
    """Remove a run's work folder: its log and its temporary files, by their names; anything else stays."""
    if not work.is_dir() or work.is_symlink():
        return
    for p in work.iterdir():
        if p.name == _LOG or (p.name.startswith(".") and ".tmp-" in p.name) or p.name.startswith(".spikes-spill-"):
            p.unlink(missing_ok=True)
    try:
        work.rmdir()
    except OSError:
        pass


def _manifest(folder: Path) -> dict:
    try:
        m = json.loads((folder / MANIFEST).read_text())
        return m if isinstance(m, dict) else {}
    except (OSError, ValueError):
        return {}


def _listed(folder: Path) -> set:
    """The files a folder's finished run lists (relative paths)."""
    files = _manifest(folder).get("files")
    return {str(f) for f in files} if isinstance(files, list) else set()


def _move(src: Path, dst: Path, skip: tuple = ()) -> None:
    """Move every file below ``src`` (but ``dst`` itself and the names in ``skip``) to the same place below ``dst``."""
    for p in sorted(q for q in src.rglob("*") if q.is_file() or q.is_symlink()):
        rel = p.relative_to(src)
        if rel.parts[0] in skip or rel.parts[0] == dst.name:
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, target)


def _restore(out: Path) -> None:
    """Put a moved-aside run back after a failed, interrupted or killed replacement; a replacement that completed
    (its manifest is in ``out``) no longer needs it."""
    backup = out / BACKUP
    if not backup.is_dir() or backup.is_symlink():
        return
    if not (out / MANIFEST).is_file():
        _move(backup, out)
    shutil.rmtree(backup, ignore_errors=True)
