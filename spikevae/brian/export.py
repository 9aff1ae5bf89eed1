"""Spikes of a run as input to a downstream Brian2 network: a ``SpikeGeneratorGroup`` that replays them."""
from __future__ import annotations

import numpy as np

__all__ = ["spike_generator"]


def spike_generator(trains, name: str = "spikevae_spikes"):
    """A Brian2 ``SpikeGeneratorGroup`` of ``trains.n_units`` neurons that emits ``trains``' spikes at their times,
    on their time step (``dt`` of the group; a network that runs it at another dt moves them to its grid, as
    Brian2 does). The group carries the run's trial table as ``presentations`` (a
    :class:`~spikevae.records.Presentations`) and its provenance as ``spikevae_meta``. Overlapping
    presentations are refused (:class:`~spikevae.errors.ArgumentError`)."""
    import brian2 as b2

    trains.presentations.check_disjoint()
    g = b2.SpikeGeneratorGroup(trains.n_units, np.asarray(trains.unit, dtype=np.int64),
                               np.asarray(trains.time, dtype=np.float64) * b2.second, dt=trains.dt * b2.second,
                               name=name)
    g.add_attribute("presentations")
    g.presentations = trains.presentations
    g.add_attribute("spikevae_meta")
    g.spikevae_meta = dict(trains.meta)
    return g
