"""The one exception hierarchy of spikevae.

Library functions raise these; only the command-line wrapper (:func:`spikevae.cli.common.cli_entry`)
turns them into one line on stderr and a non-zero exit status. Each subclass is also a
``ValueError`` (except :class:`RunInterrupted`), so code that caught ``ValueError`` keeps working.
"""
from __future__ import annotations

import threading

__all__ = ["SpikeVAEError", "ArgumentError", "DataError", "CheckpointError", "RunInterrupted", "STOP_REQUESTED"]


class SpikeVAEError(Exception):
    """Base class of every error spikevae raises on purpose."""


class ArgumentError(SpikeVAEError, ValueError):
    """A parameter or option outside what the function accepts (names the argument and the accepted values)."""


class DataError(SpikeVAEError, ValueError):
    """A data source, image, dictionary or recording that cannot be read or used."""


class CheckpointError(SpikeVAEError, ValueError):
    """A checkpoint file that is missing, unreadable, not a spikevae checkpoint, or inconsistent."""


class RunInterrupted(SpikeVAEError):
    """A simulation was stopped before its end (Ctrl-C caught by Brian2, SIGTERM): its result is incomplete."""


#: set by the command line's signal handlers: a stop was asked for. Long loops check it between steps
#: (:func:`spikevae.brian._state.run_checked`), so a signal whose exception was swallowed (raised inside a
#: finalizer, say) still stops the run.
STOP_REQUESTED = threading.Event()
