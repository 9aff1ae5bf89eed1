"""Brian2 plumbing shared by the spiking layer and the LCA networks."""
from __future__ import annotations

import functools
import warnings

__all__ = ["quiet_brian"]


def quiet_brian(fn):
    """Run ``fn`` with pyparsing's deprecation warnings silenced.

    Brian2 2.9 parses equations and statements with pyparsing APIs that pyparsing 3.3 deprecates;
    Brian2 routes those warnings to its log, so every network build printed a page of them. They
    are not ours to fix and change nothing in the simulation.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            from pyparsing.warnings import PyparsingDeprecationWarning
        except ImportError:  # older pyparsing: nothing to silence
            return fn(*args, **kwargs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=PyparsingDeprecationWarning)
            return fn(*args, **kwargs)

    return wrapper
