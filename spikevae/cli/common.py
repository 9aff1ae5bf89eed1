"""Command-line plumbing shared by every command: one-line errors, checked numeric options, interrupts.

Library functions raise :mod:`spikevae.errors`; :func:`cli_entry` is the one place that turns them
(and OS errors, memory errors, Ctrl-C and SIGTERM) into one line on stderr and an exit status:
2 for bad input, 130 for an interrupt, 143 for SIGTERM. ``finally`` blocks and temporary-file
clean-up run on every path.
"""
from __future__ import annotations

import argparse
import atexit
import functools
import gc
import logging
import math
import signal
import sys

from .._resources import available_memory, check_memory
from ..errors import STOP_REQUESTED, ArgumentError, RunInterrupted, SpikeVAEError

__all__ = ["ArgumentError", "Parser", "cli_entry", "resolve_device", "seed", "positive_int", "positive_float",
           "nonneg_float", "unit_float", "scheduler_address", "check_memory", "available_memory"]


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, a flag's False) or the help
    already says it."""

    def _format_action(self, action):
        if action.help is None and action.option_strings and action.default not in (None, argparse.SUPPRESS):
            action.help = ""  # argparse shows no default for an option without help text
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is False or "(default" in text or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line (no usage block) and whose help shows defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message}\n")

    def add_output(self, command: str, default: str | None = None):
        """``--out`` (a folder holding one run, :class:`spikevae.io.RunFolder`) and ``--overwrite``."""
        self.add_argument("--out", default=default, required=default is None,
                          help="output folder: new or empty, or an earlier run of this command (with --overwrite)")
        self.add_argument("--overwrite", action="store_true",
                          help=f"replace an earlier `{command}` run in --out as a whole (kept if this run fails)")

    def add_subject(self):
        """The NWB subject of a simulated run (:class:`spikevae.io.nwb.SubjectInfo`; docs/simulate.md)."""
        g = self.add_argument_group("NWB subject (a simulation: by default no animal is claimed)")
        g.add_argument("--subject-species", default="http://purl.obolibrary.org/obo/NCBITaxon_32630",
                       help="Latin binomial or NCBI taxonomy IRI (default: NCBI's 'synthetic construct')")
        g.add_argument("--subject-id", default=None, help="subject id (default: sim-<model>-seed<seed>)")
        g.add_argument("--subject-age", default="P0D/", help="ISO 8601 duration or range ('P0D/': unknown)")
        g.add_argument("--subject-sex", default="U", choices=("M", "F", "O", "U"), help="U: unknown")


def subject_from(args):
    """The :class:`~spikevae.io.nwb.SubjectInfo` of ``--subject-*`` arguments, validated (one-line errors)."""
    from ..io.nwb import SubjectInfo

    return SubjectInfo(args.subject_species, args.subject_id, args.subject_age, args.subject_sex).validate()


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that clean-up runs."""


def _ignore_further_stops() -> None:
    """A second Ctrl-C or SIGTERM must not cut the clean-up of the first one short; the run's loops see
    :data:`~spikevae.errors.STOP_REQUESTED` even if the first exception was swallowed."""
    STOP_REQUESTED.set()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


def _on_sigterm(signum, frame):
    _ignore_further_stops()
    raise _Terminated()


def _on_sigint(signum, frame):
    _ignore_further_stops()
    raise KeyboardInterrupt()


def _unraisable_hook(previous):
    """Drop the report of a stop signal raised inside a finalizer or callback (Python cannot raise it there):
    :data:`~spikevae.errors.STOP_REQUESTED` carries the stop to the next check instead."""
    def hook(u):
        if isinstance(u.exc_value, (KeyboardInterrupt, _Terminated)):
            return
        previous(u)

    return hook


def _quick_exit() -> None:
    """Registered at exit by :func:`cli_entry`: ``gc.freeze()`` takes every object still alive out of the
    collector's reach, so the interpreter's last collection does not walk the hundreds of thousands of
    objects torch, pynwb and matplotlib leave behind (0.7-1.3 s of each command's exit, measured; the run's
    files are closed before its command returns). Objects are still released by reference counting and
    every later exit handler (h5py's file closing among them) still runs."""
    gc.freeze()


class _Warnings(logging.Handler):
    """The library's warnings (``logging`` under ``spikevae``) as ``warning: ...`` lines on stderr, each once."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen: set[str] = set()

    def emit(self, record):
        text = record.getMessage()
        if text not in self.seen:
            self.seen.add(text)
            print(f"warning: {text}", file=sys.stderr)


def cli_entry(prog: str):
    """Decorate ``main(argv) -> int``: known errors become one stderr line and a non-zero exit status."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(argv=None):
            atexit.unregister(_quick_exit)  # once, and after the handlers of modules imported so far
            atexit.register(_quick_exit)
            logger, warn = logging.getLogger("spikevae"), _Warnings()
            logger.addHandler(warn)  # records still propagate to handlers the caller configured
            previous = {}
            hook = sys.unraisablehook
            sys.unraisablehook = _unraisable_hook(hook)
            try:
                # Brian2 wraps the SIGINT handler it finds at import; with its stop-on-Ctrl-C preference off
                # (spikevae.brian._state.brian_state) it passes the signal on to this one
                previous = {s: signal.signal(s, h) for s, h in ((signal.SIGTERM, _on_sigterm),
                                                                (signal.SIGINT, _on_sigint))}
            except ValueError:  # not the main thread (e.g. a test runner's worker): leave the signals alone
                pass
            try:
                return fn(argv)
            except RunInterrupted as exc:
                print(f"{prog}: interrupted: {exc}; no output was written as complete", file=sys.stderr)
                return 130
            except SpikeVAEError as exc:
                print(f"{prog}: error: {exc}", file=sys.stderr)
                return 2
            except MemoryError:
                print(f"{prog}: error: out of memory; use smaller sizes", file=sys.stderr)
                return 2
            except OSError as exc:
                where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
                print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"{prog}: interrupted; no output was written as complete", file=sys.stderr)
                return 130
            except _Terminated:
                print(f"{prog}: terminated (SIGTERM); no output was written as complete", file=sys.stderr)
                return 143
            except Exception as exc:
                from ..io.files import os_error_of

                reason = os_error_of(exc)  # a full disk or an I/O error that a library wrapped in its own type
                if reason is None:
                    raise
                print(f"{prog}: error: {reason} ({type(exc).__name__} while writing; is the disk, or the cache "
                      "folder $SPIKEVAE_CACHE, full?)", file=sys.stderr)
                return 2
            finally:
                logger.removeHandler(warn)
                sys.unraisablehook = hook
                STOP_REQUESTED.clear()
                # after a stop, further signals stay ignored until the process has exited
                if previous and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
                    for s, h in previous.items():
                        signal.signal(s, h)

        return wrapper

    return deco


def resolve_device(name: str):
    """``auto`` → CUDA when available, else CPU (see :func:`spikevae.models.trained.resolve_device`)."""
    from ..models.trained import resolve_device as _resolve

    return _resolve(name)


# ------------------------------------------------------------------ argparse types (each error is one line)
def _number(kind, text: str):
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return v


def seed(text: str) -> int:
    """A seed in [0, 2**32)."""
    v = _number(int, text)
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"a seed must be in [0, 2**32), got {v}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (at most 1e9)."""
    v = _number(int, text)
    if not 1 <= v <= 10**9:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1e9, got {v}")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0."""
    v = _number(float, text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v:g}")
    return v


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    v = _number(float, text)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v:g}")
    return v


def unit_float(text: str) -> float:
    """A number in (0, 1]."""
    v = _number(float, text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {v:g}")
    return v


def scheduler_address(text: str) -> str:
    """A Dask scheduler address, ``[scheme://]host:port`` (checked before any work; the scheduler is reached later)."""
    import re

    m = re.fullmatch(r"(?:(tcp|tls|ws|wss|ucx|inproc)://)?([A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})", text.strip())
    if not m or not 1 <= int(m.group(3)) <= 65535:
        raise argparse.ArgumentTypeError(f"not a scheduler address (tcp://HOST:PORT): {text!r}")
    return text.strip()
