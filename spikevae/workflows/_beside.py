"""Work beside the main process: ``with Beside(fn, *args) as job: ...; value = job.result()``.

``fn(*args)`` runs in a forked process while the main one goes on (a command draws its figures while it
writes its NWB file), where the OS can fork and this process may use more than one core; otherwise it runs
right away, in this process, with the same result. An exception of ``fn`` is raised again by ``result()``.
Leaving the block without ``result()`` (an error, Ctrl-C) ends the process first and waits for it, so
nothing it writes can land after the caller has cleaned up. The process ignores Ctrl-C (the main
process decides) and exits without running exit handlers.
"""
from __future__ import annotations

import multiprocessing
import signal

from .._resources import usable_cores

__all__ = ["Beside"]


def _child(conn, fn, args) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        out = ("ok", fn(*args))
    except BaseException as exc:  # noqa: BLE001 - carried to the main process, which raises it
        out = ("error", exc)
    try:
        conn.send(out)
    except Exception as exc:  # an exception that cannot be pickled: its text
        conn.send(("error", RuntimeError(f"{type(out[1]).__name__}: {out[1]}" if out[0] == "error" else str(exc))))
    conn.close()


class Beside:
    """``fn(*args)`` in a forked process (see the module's docstring); ``forked`` says whether it is."""

    def __init__(self, fn, *args, fork: bool | None = None):
        if fork is None:
            fork = usable_cores() > 1 and "fork" in multiprocessing.get_all_start_methods()
        self.forked, self._proc = fork, None
        if not fork:
            try:
                self._out = ("ok", fn(*args))
            except Exception as exc:  # raised by result(), as from the forked process
                self._out = ("error", exc)
            return
        ctx = multiprocessing.get_context("fork")
        self._conn, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True)
        self._proc.start()
        send.close()

    def result(self):
        """``fn``'s value (or its exception, raised), once it has finished."""
        if self._proc is not None:
            try:
                self._out = self._conn.recv()
            except EOFError:
                self._proc.join()
                self._out = ("error", RuntimeError(f"the process beside this one ended without a result "
                                                   f"(exit status {self._proc.exitcode})"))
            self._stop(wait=True)
        status, value = self._out
        if status == "error":
            raise value
        return value

    def _stop(self, wait: bool = False) -> None:
        """End the process (after its result: let it exit on its own first) and reap it."""
        if self._proc is not None:
            if wait:
                self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()
            self._proc.join()
            self._conn.close()
            self._proc = None

    def __enter__(self) -> Beside:
        return self

    def __exit__(self, *exc) -> None:
        self._stop()
