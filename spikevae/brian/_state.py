"""Brian2 plumbing shared by the spiking layer, the LCA networks and the tests.

:func:`brian_state` owns Brian2's global state for the duration of one build-and-run: whatever
device, code-generation target and interrupt preference it finds are restored when it exits, so
the order of library calls never changes a result. :func:`run_checked` runs a network and refuses
a run that stopped early (Brian2 turns a first Ctrl-C into a quiet stop; spikevae turns it into an
error so an incomplete run is never written as complete).
"""
from __future__ import annotations

import contextlib
import functools
import gc
import warnings
from pathlib import Path

from ..errors import STOP_REQUESTED, RunInterrupted

__all__ = ["quiet_brian", "brian_state", "runtime_build", "run_checked", "reset_brian", "before_fork",
           "two_pass_thresholder", "TEMPLATE_DIR"]


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


@contextlib.contextmanager
def brian_state():
    """Save Brian2's device, codegen target and Ctrl-C preference; restore them on exit.

    Inside, Ctrl-C raises ``KeyboardInterrupt`` at once (``core.stop_on_keyboard_interrupt`` off)
    instead of Brian2's quiet stop. Yields the ``brian2`` module.
    """
    import brian2 as b2
    from brian2.devices.device import get_device

    prev_device = get_device()
    prev_target = b2.prefs.codegen.target
    prev_stop = b2.prefs.core.stop_on_keyboard_interrupt
    b2.prefs.core.stop_on_keyboard_interrupt = False
    try:
        yield b2
    except BaseException:
        # the build or run was abandoned (an error, Ctrl-C): the objects it made are dropped on purpose, and
        # Brian2's "never included in a network" warnings at their deletion would bury the one-line message
        from brian2.utils.logger import BrianLogger

        BrianLogger.suppress_name("unused_brian_object")
        raise
    finally:
        b2.prefs.codegen.target = prev_target
        b2.prefs.core.stop_on_keyboard_interrupt = prev_stop
        if get_device() is not prev_device:
            b2.set_device(prev_device, build_on_run=getattr(prev_device, "build_on_run", True))


@contextlib.contextmanager
def runtime_build(target: str):
    """Build and run networks on Brian2's runtime device with code-generation ``target`` (``numpy`` or ``cython``).

    The one prologue of every runtime network: objects of an earlier build are collected first (Brian2 would
    rename the new ones), and :func:`brian_state` restores the device, target and Ctrl-C preference on exit.
    Yields the ``brian2`` module.
    """
    gc.collect()
    with brian_state() as b2:
        b2.set_device("runtime")
        b2.prefs.codegen.target = target
        yield b2


def run_checked(net, duration, finished=None, **kwargs) -> None:
    """``net.run(duration)``, then :class:`RunInterrupted` if the network stopped before its end.

    ``finished``: a callable that returns True when the network stopped itself on purpose (``net.stop()``
    from a network operation, e.g. on convergence); such an early end is kept."""
    from brian2 import Network, defaultclock, get_device

    if STOP_REQUESTED.is_set():
        raise KeyboardInterrupt
    net.run(duration, **kwargs)
    if STOP_REQUESTED.is_set():
        raise KeyboardInterrupt
    if get_device().__class__.__name__ == "CPPStandaloneDevice":
        return  # the binary either ran to the end or failed (Brian2 raises on a non-zero exit)
    import numpy as np

    dt = min((float(o.clock.dt_) for o in net.objects if hasattr(o, "clock")), default=float(defaultclock.dt))
    t_end = float(np.asarray(net.t_, dtype=float).ravel()[0])  # a clock's VariableView after a stop
    early = t_end < float(duration) - 0.5 * dt and not (finished is not None and finished())
    if Network._globally_stopped or early:
        raise RunInterrupted(f"the Brian2 run stopped at {t_end:.4g} s of {float(duration):.4g} s "
                             "(interrupted); nothing of it is kept")


#: spikevae's own Brian2 code-generation templates (``threshold.cpp``: same spikes as Brian2's, in two passes)
TEMPLATE_DIR = Path(__file__).parent / "templates"


@functools.cache
def _two_pass_class():
    from brian2.devices.cpp_standalone.codeobject import CPPStandaloneCodeObject

    # Brian2's mechanism for a device's own templates: a templater that looks in spikevae's folder first
    return type("TwoPassThresholderCodeObject", (CPPStandaloneCodeObject,), {
        "templater": CPPStandaloneCodeObject.templater.derive("spikevae.brian", templates_dir=TEMPLATE_DIR.name)})


def two_pass_thresholder(group) -> None:
    """Generate ``group``'s cpp_standalone thresholder from ``threshold.cpp`` in :data:`TEMPLATE_DIR`: the same
    spikes as Brian2's template, which branches once per neuron per step, with a vectorised condition pass
    instead (the Poisson layer's binary ran 1.6-1.8x faster). Only for the cpp_standalone device."""
    group.thresholder["spike"].codeobj_class = _two_pass_class()


def reset_brian() -> None:
    """Back to a fresh Brian2 state: runtime device, default target and clock, empty scope (for tests)."""
    import brian2 as b2
    from brian2.devices.device import get_device

    if get_device().__class__.__name__ == "CPPStandaloneDevice":
        b2.device.reinit()
        b2.device.activate()
    b2.set_device("runtime")
    b2.prefs.codegen.target = "auto"
    b2.prefs.core.stop_on_keyboard_interrupt = True
    b2.defaultclock.dt = 0.1 * b2.ms
    b2.start_scope()


def before_fork() -> None:
    """Import Brian2 in this process before forking workers that run runtime networks: Brian2 opens its debug log
    files at import and removes them at exit, which forked workers skip (they end with ``os._exit``); imported here,
    the files are this process's and are removed."""
    import brian2  # noqa: F401
