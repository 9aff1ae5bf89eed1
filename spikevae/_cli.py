"""Shared command-line plumbing: one-line errors, devices, seeds."""
from __future__ import annotations

import argparse
import functools
import sys

__all__ = ["UserError", "Parser", "cli_entry", "resolve_device"]


class UserError(ValueError):
    """Bad input from the user of a command (reported as one line, exit status 2)."""


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line (no usage block)."""

    def error(self, message):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message}\n")


def cli_entry(prog: str):
    """Decorate ``main(argv) -> int``: known user errors become one stderr line and exit status 2."""
    from .checkpoint import CheckpointError
    from .data import DataError

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(argv=None):
            try:
                return fn(argv)
            except (UserError, CheckpointError, DataError) as exc:
                print(f"{prog}: error: {exc}", file=sys.stderr)
                return 2
            except OSError as exc:
                where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
                print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130

        return wrapper

    return deco


def resolve_device(name: str):
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was requested but no CUDA device is available (use --device auto or cpu)")
        return torch.device(name)
    raise UserError(f"--device must be auto, cpu or cuda, got {name!r}")
