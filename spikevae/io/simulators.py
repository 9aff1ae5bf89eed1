"""Spikes of a run as input to another simulator through PyNN (NEST, NEURON, Brian2 behind one API)."""
from __future__ import annotations

import numpy as np

from ..errors import ArgumentError

__all__ = ["to_pynn", "spike_times_ms"]


def spike_times_ms(trains) -> list[np.ndarray]:
    """Each unit's spike times in ms (PyNN's unit), sorted; the presentations must not overlap."""
    trains.presentations.check_disjoint()
    return [t * 1e3 for t in trains.trains()]


def to_pynn(trains, sim, label: str = "spikevae spikes"):
    """A ``sim.Population`` of ``trains.n_units`` ``SpikeSourceArray`` cells that emit ``trains``' spikes (ms), for
    a PyNN simulator module ``sim`` that has been set up (``sim.setup(timestep=...)``). Its annotations hold the
    presentations' onsets and offsets (ms), stimuli and repeats. A spike before the simulator's first possible
    time (one time step) cannot be sent: that is an error, not a silent drop."""
    if not hasattr(sim, "SpikeSourceArray") or not hasattr(sim, "Population"):
        raise ArgumentError(f"{sim!r} is not a PyNN simulator module (e.g. pyNN.nest)")
    times = spike_times_ms(trains)
    step = float(sim.get_time_step())
    early = [k for k, t in enumerate(times) if len(t) and t[0] < step - 1e-9]
    if early:
        raise ArgumentError(f"unit {early[0]} spikes at {times[early[0]][0]:g} ms, before the simulator's first time "
                            f"step ({step:g} ms): shift the spikes or set up a finer time step")
    pop = sim.Population(trains.n_units, sim.SpikeSourceArray(spike_times=[sim.Sequence(t) for t in times]),
                         label=label)
    p = trains.presentations
    pop.annotate(presentation_onset_ms=(np.asarray(p.onset) * 1e3).tolist(),
                 presentation_offset_ms=(np.asarray(p.offset) * 1e3).tolist(),
                 stimulus=np.asarray(p.stimulus).tolist(), repeat=np.asarray(p.repeat).tolist())
    return pop
