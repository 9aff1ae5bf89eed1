"""Build a Cython kernel of this package on first use (like Brian2's own runtime code generation).

The extension is compiled once per machine into ``$SPIKEVAE_CACHE`` (default
``~/.cache/spikevae``), in a folder keyed by the source, the Python ABI and the CPU's instruction
set (it is built with ``-O3 -march=native``), and loaded from there afterwards. Needs Cython and a
C compiler (both are already needed by Brian2's cython target); callers fall back to numpy when the
build fails.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import platform
import sys
import sysconfig
from pathlib import Path

__all__ = ["load_kernel"]

log = logging.getLogger(__name__)

_CACHE: dict = {}


def _cpu_key() -> str:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return platform.machine() + flags


def load_kernel(name: str):
    """Import the compiled extension ``spikevae/<name>.pyx``, building it first if needed.

    Raises ``ImportError`` (with the reason) when it cannot be built here.
    """
    if name in _CACHE:
        if isinstance(_CACHE[name], Exception):
            raise ImportError(str(_CACHE[name]))
        return _CACHE[name]
    try:
        mod = _build_and_import(name)
    except Exception as exc:  # noqa: BLE001 - no compiler, no headers, ...: the caller falls back
        _CACHE[name] = exc
        raise ImportError(f"cannot build {name}: {exc}") from None
    _CACHE[name] = mod
    return mod


def _build_and_import(name: str):
    src = Path(__file__).with_name(f"{name}.pyx")
    text = src.read_bytes()
    key = hashlib.sha256(text + sys.version.encode() + _cpu_key().encode()).hexdigest()[:16]
    root = Path(os.environ.get("SPIKEVAE_CACHE", Path.home() / ".cache" / "spikevae")) / f"{name}_{key}"
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    so = root / f"{name}{suffix}"
    if not so.exists():
        import tempfile

        import numpy as np
        from Cython.Build import cythonize
        from setuptools import Distribution, Extension

        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            pyx = Path(tmp) / f"{name}.pyx"
            pyx.write_bytes(text)
            flags = ["-O3", "-march=native"] if platform.machine() in ("x86_64", "AMD64", "aarch64") else ["-O3"]
            ext = Extension(name, [str(pyx)], include_dirs=[np.get_include()], extra_compile_args=flags)
            dist = Distribution({"ext_modules": cythonize([ext], quiet=True, build_dir=tmp,
                                                          compiler_directives={"language_level": 3})})
            cmd = dist.get_command_obj("build_ext")
            cmd.build_lib, cmd.build_temp = tmp, tmp
            cmd.ensure_finalized()
            log.info("building %s (once per machine) in %s", name, root)
            cmd.run()
            built = Path(cmd.get_ext_fullpath(name))
            os.replace(built, so)  # atomic: a half-built file is never loaded
    spec = importlib.util.spec_from_file_location(name, so, loader=importlib.machinery.ExtensionFileLoader(name, str(so)))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
