"""Build once, run many: cached Brian2 ``cpp_standalone`` binaries fed their data at run time.

A Brian2 standalone project is generated and compiled once per *code shape* (what decides the generated
C++: the network's structure, its sizes, the run length, dt, the Brian2 version and the CPU) into
``$SPIKEVAE_CACHE`` (default ``~/.cache/spikevae``), beside the LCA kernel. Everything that varies between
runs of one shape (rate table, seed, chunk offset, the state carried across chunks) is passed to the binary
on its command line with Brian2's own run-argument mechanism (``name=value`` or ``name=file`` for arrays,
what ``device.run(run_args=...)`` writes), so a later run of the same shape, in this process or another,
starts the binary directly: no code generation, no compiler, not even ``import brian2``.

Concurrency: a project is built in a private temporary folder under a file lock and renamed into place
when complete (with its ``manifest.json``, which names the binary's run arguments and result files), so
a half-built project is never used and two processes never build the same shape twice. Each run writes
its arguments and results in its own temporary folder; the cached project is only read.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import RunInterrupted

__all__ = ["cache_root", "cached_project", "run_binary"]

#: bump when the code that builds a cached network changes (it is part of every key, with spikevae's Brian2
#: templates' text)
CODE_VERSION = 2


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """Where compiled kernels and standalone projects live: ``override``, ``$SPIKEVAE_CACHE`` or ``~/.cache/spikevae``."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get("SPIKEVAE_CACHE", Path.home() / ".cache" / "spikevae"))


def _key(spec: dict) -> str:
    from importlib.metadata import version

    from ._build import _cpu_key
    from ._state import TEMPLATE_DIR

    templates = hashlib.sha256()
    for f in sorted(TEMPLATE_DIR.glob("*.cpp")):
        templates.update(f.read_bytes())
    text = json.dumps({"spec": spec, "brian2": version("brian2"), "cpu": _cpu_key(), "code": CODE_VERSION,
                       "templates": templates.hexdigest()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_project(name: str, spec: dict, build: Callable[[Path], dict],
                   root: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """The compiled project of ``spec`` (built by ``build(folder) -> manifest`` on a miss) and its manifest."""
    from filelock import FileLock

    base = cache_root(root)
    folder = base / f"brian_{name}_{_key(spec)}"
    manifest = folder / "manifest.json"
    if not manifest.exists():
        base.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            if not manifest.exists():  # nobody built it while we waited
                tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=base))
                try:
                    info = dict(build(tmp), spec=spec)
                    (tmp / "manifest.json").write_text(json.dumps(info, indent=1))
                    if folder.exists():  # a project without a manifest: an interrupted build of an older version
                        shutil.rmtree(folder)
                    os.replace(tmp, folder)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    return folder, json.loads(manifest.read_text())


def run_binary(folder: Path, manifest: dict, args: dict, outputs: tuple[str, ...]) -> dict:
    """Run the compiled binary of ``folder`` with run-time values ``args`` (run-argument name → scalar or array),
    and return the result arrays named in ``outputs`` (keys of ``manifest['outputs']``).

    The run is complete only if the binary exited 0 and its clock reached the built run length; Ctrl-C
    (which ends the binary) raises ``KeyboardInterrupt``, any other failure a ``RuntimeError`` with the
    binary's last line."""
    with tempfile.TemporaryDirectory(prefix="spikevae-run-") as tmp:
        results = Path(tmp) / "results"
        results.mkdir()
        argv = [str(folder / manifest["binary"]), "--results_dir", str(results) + os.sep]
        for name, value in args.items():
            spec = manifest["args"][name]
            a = np.asarray(value, dtype=spec["dtype"])
            if a.size == 1 and spec["size"] != 1 or a.ndim == 0:  # one value for every element
                argv.append(f"{name}={a.reshape(-1)[0].item()!r}")
            else:
                if a.size != spec["size"]:
                    raise ValueError(f"run argument {name} needs {spec['size']} values, got {a.size}")
                path = Path(tmp) / f"{name}.dat"
                np.ascontiguousarray(a).tofile(path)
                argv.append(f"{name}={path}")
        proc = subprocess.run(argv, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode == -signal.SIGINT:
            raise KeyboardInterrupt
        if proc.returncode:
            last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise RuntimeError(f"the compiled Brian2 network in {folder} failed: {last}")
        out = manifest["outputs"]

        def read(key):
            f = results / out[key]["file"]
            return np.fromfile(f, dtype=out[key]["dtype"]) if f.exists() else np.zeros(0, out[key]["dtype"])

        t_end = read("clock_t")
        if not len(t_end) or abs(float(t_end[0]) - manifest["duration"]) > 0.5 * manifest["dt"]:
            raise RunInterrupted("the compiled Brian2 network stopped before its end (interrupted); nothing of it is kept")
        return {k: read(k) for k in outputs}
