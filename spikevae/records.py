"""Typed records that cross the seams between model, simulator, io and analysis.

:class:`SpikeTrains` is the one record for every spike producer (the Brian2 Poisson layer, the
spiking LCA, ...), with one window-counting rule (:meth:`SpikeTrains.counts`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from .errors import ArgumentError, DataError

__all__ = ["Presentations", "SpikeTrains", "window_index", "window_counts", "overlaps"]


def overlaps(onset: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Positions k of windows, given in onset order, whose window reaches past the next one's onset."""
    return np.flatnonzero(np.asarray(offset)[:-1] > np.asarray(onset)[1:] + 1e-12)


@dataclass(frozen=True)
class Presentations:
    """The presentation (trial) table of a run; all arrays have one entry per presentation.

    Attributes
    ----------
    stimulus : ndarray (n,) int
        Index of the stimulus shown (into the run's stimulus set).
    repeat : ndarray (n,) int
        Repeat number of that stimulus (0, 1, ...).
    onset, offset : ndarray (n,) float
        Start and stop of the presentation window, s.
    expected : ndarray (n, K) float
        Expected spike count λ of every unit in the window (what drove the neurons).
    """

    stimulus: np.ndarray
    repeat: np.ndarray
    onset: np.ndarray
    offset: np.ndarray
    expected: np.ndarray

    def __post_init__(self):
        n = len(self.stimulus)
        for name in ("repeat", "onset", "offset"):
            if len(getattr(self, name)) != n:
                raise DataError(f"presentation table: {name} has {len(getattr(self, name))} entries, expected {n}")
        if self.expected.ndim != 2 or self.expected.shape[0] != n:
            raise DataError(f"presentation table: expected counts must be (n_presentations, K), got {self.expected.shape}")

    def __len__(self) -> int:
        return len(self.stimulus)

    def check_disjoint(self) -> None:
        """Refuse windows that overlap (a spike could not be given to one presentation): ArgumentError."""
        order = np.argsort(self.onset, kind="stable")
        on, off = np.asarray(self.onset, np.float64)[order], np.asarray(self.offset, np.float64)[order]
        bad = overlaps(on, off)
        if len(bad):
            k = int(bad[0])
            raise ArgumentError(f"presentation {int(order[k])} ({on[k]:.6g}-{off[k]:.6g} s) overlaps the next one "
                                f"(onset {on[k + 1]:.6g} s): the spikes cannot be replayed presentation by presentation")

    def __repr__(self) -> str:
        n = len(self)
        span = f", {float(self.onset[0]):.4g}-{float(self.offset[-1]):.4g} s" if n else ""
        return (f"Presentations({n} presentations of {len(np.unique(self.stimulus))} stimuli{span}, "
                f"expected counts {self.expected.shape})")


@dataclass(frozen=True)
class SpikeTrains:
    """Spikes of ``n_units`` neurons: one flat, time-sorted list of (unit, time) pairs.

    Attributes
    ----------
    unit : ndarray (n_spikes,) int64
        Unit index of each spike, 0 ≤ unit < n_units.
    time : ndarray (n_spikes,) float64
        Spike time, s (on the simulation grid: multiples of ``dt``).
    n_units : int
        Number of units (silent units included).
    t_stop : float
        End of the recording, s (start is 0).
    dt : float
        Simulation time step, s (the spike-time resolution).
    presentations : Presentations
        The trial table and the expected counts that drove the units.
    meta : dict
        Provenance: model, checkpoint hash, seed, target, package versions (plain values).
    """

    unit: np.ndarray
    time: np.ndarray
    n_units: int
    t_stop: float
    dt: float
    presentations: Presentations
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.unit) != len(self.time):
            raise DataError("spike unit and time arrays differ in length")
        if len(self.unit) and (self.unit.min() < 0 or self.unit.max() >= self.n_units):
            raise DataError(f"spike unit index outside [0, {self.n_units})")

    def __repr__(self) -> str:
        model = self.meta.get("model")
        return (f"SpikeTrains({self.n_spikes} spikes of {self.n_units} units, {len(self.presentations)} presentations, "
                f"0-{self.t_stop:.4g} s at dt {self.dt * 1e3:g} ms" + (f", model {model!r}" if model else "") + ")")

    @property
    def n_spikes(self) -> int:
        """Total number of spikes."""
        return len(self.time)

    def counts(self, delay: float | None = None) -> np.ndarray:
        """Spike counts per (presentation, unit) inside each window, (n_presentations, n_units).

        The one window-counting rule (:func:`window_index`): a spike at time t counts for the window [onset, offset)
        that holds it (half a time step of tolerance at both edges). ``delay`` (s) shifts every window, to
        count a response that starts one latency after the stimulus; default: the run's response
        latency (``meta['response_latency_s']``, 0 for the plain Poisson layer).
        """
        return window_counts(self.unit, self.window_of(delay), len(self.presentations), self.n_units)

    def window_of(self, delay: float | None = None) -> np.ndarray:
        """The presentation whose window holds each spike (n_spikes,), −1 for a spike outside every window: the
        counting rule of :meth:`counts` (same ``delay``)."""
        p = self.presentations
        if delay is None:
            delay = float(self.meta.get("response_latency_s", 0.0))
        return window_index(self.time, p.onset, p.offset, self.dt, delay)

    def to_neo(self, name: str = "spikevae run"):
        """This record as a ``neo.Block`` (one SpikeTrain per unit, an Epoch of presentations):
        :func:`spikevae.io.to_neo_block`. The io layer owns the format and depends on this module, not the
        reverse: it is reached by name when the method is called."""
        return importlib.import_module("spikevae.io").to_neo_block(self, name=name)

    def to_brian(self, name: str = "spikevae_spikes"):
        """These spikes as a Brian2 ``SpikeGeneratorGroup`` (the presentations as its ``presentations`` attribute),
        to drive a downstream network: :func:`spikevae.brian.export.spike_generator`."""
        return importlib.import_module("spikevae.brian.export").spike_generator(self, name=name)

    def to_pynn(self, sim, label: str = "spikevae spikes"):
        """These spikes as a PyNN ``Population`` of ``SpikeSourceArray`` cells for the simulator module ``sim`` (e.g.
        ``pyNN.nest``, after ``sim.setup``), times in ms: :func:`spikevae.io.simulators.to_pynn`."""
        return importlib.import_module("spikevae.io.simulators").to_pynn(self, sim, label=label)

    def _unit_order(self) -> np.ndarray:
        """Permutation to unit-then-time order: a stable sort by unit when the spikes are in time order (as
        every simulation writes them; a radix sort for up to 32,767 units), else a two-key sort."""
        t = self.time
        if len(t) > 1 and not np.all(t[1:] >= t[:-1]):
            return np.lexsort((t, self.unit))
        return np.argsort(self.unit.astype(np.int16) if self.n_units <= 32767 else self.unit, kind="stable")

    def unit_major(self) -> tuple[np.ndarray, np.ndarray]:
        """Spike times sorted by unit, then time, and the end offset of each unit's run (n_units,): NWB's layout."""
        order = self._unit_order()
        return self.time[order], np.cumsum(np.bincount(self.unit, minlength=self.n_units))

    def trains(self) -> list[np.ndarray]:
        """Spike times per unit (list of n_units sorted arrays), s."""
        order = self._unit_order()
        bounds = np.searchsorted(self.unit[order], np.arange(self.n_units + 1))
        t = self.time[order]
        return [t[bounds[k]:bounds[k + 1]] for k in range(self.n_units)]


def window_index(time: np.ndarray, onset: np.ndarray, offset: np.ndarray, dt: float, delay: float = 0.0) -> np.ndarray:
    """The one window-counting rule: the index of the window ``[onset + delay, offset + delay)`` that holds each spike
    time (half a time step ``dt`` of tolerance at both edges), −1 outside every window. Windows are disjoint."""
    time = np.asarray(time, dtype=np.float64)
    out = np.full(len(time), -1, dtype=np.int64)
    if not len(time) or not len(onset):
        return out
    order = np.argsort(onset, kind="stable")  # disjoint windows: locate each spike's window by its onset
    on, off = np.asarray(onset)[order] + delay, np.asarray(offset)[order] + delay
    k = np.searchsorted(on, time + 0.5 * dt, side="right") - 1
    ok = k >= 0
    ok[ok] &= time[ok] < off[k[ok]] - 0.5 * dt
    out[ok] = order[k[ok]]
    return out


def window_counts(unit: np.ndarray, window: np.ndarray, n_windows: int, n_units: int) -> np.ndarray:
    """Spike counts per (window, unit), (n_windows, n_units), of spikes whose window (:func:`window_index`) is given."""
    out = np.zeros((n_windows, n_units), dtype=np.int64)
    ok = window >= 0
    np.add.at(out, (window[ok], np.asarray(unit)[ok]), 1)
    return out
