"""Spikes of a run as input to a downstream Brian2 network: a ``SpikeGeneratorGroup`` that replays them."""
from __future__ import annotations

import numpy as np

from ..errors import ArgumentError

__all__ = ["spike_generator", "check_presentations"]


def check_presentations(p) -> None:
    """Refuse a presentation table whose windows overlap (a replay could not say which presentation a spike
    belongs to)."""
    on, off = np.asarray(p.onset, dtype=np.float64), np.asarray(p.offset, dtype=np.float64)
    order = np.argsort(on, kind="stable")
    on, off = on[order], off[order]
    bad = np.flatnonzero(off[:-1] > on[1:] + 1e-12)
    if len(bad):
        i = int(order[bad[0]])
        raise ArgumentError(f"presentation {i} ({on[bad[0]]:.6g}-{off[bad[0]]:.6g} s) overlaps the next one "
                            f"(onset {on[bad[0] + 1]:.6g} s): the spikes cannot be replayed presentation by presentation")


def spike_generator(trains, name: str = "spikevae_spikes"):
    """A Brian2 ``SpikeGeneratorGroup`` of ``trains.n_units`` neurons that emits ``trains``' spikes at their times,
    on their time step (``dt`` of the group; a network that runs it at another dt moves them to its grid, as
    Brian2 does). The group carries the run's trial table as ``presentations`` (a
    :class:`~spikevae.records.Presentations`) and its provenance as ``spikevae_meta``. Overlapping
    presentations are refused (:class:`~spikevae.errors.ArgumentError`)."""
    import brian2 as b2

    check_presentations(trains.presentations)
    g = b2.SpikeGeneratorGroup(trains.n_units, np.asarray(trains.unit, dtype=np.int64),
                               np.asarray(trains.time, dtype=np.float64) * b2.second, dt=trains.dt * b2.second,
                               name=name)
    g.add_attribute("presentations")
    g.presentations = trains.presentations
    g.add_attribute("spikevae_meta")
    g.spikevae_meta = dict(trains.meta)
    return g
