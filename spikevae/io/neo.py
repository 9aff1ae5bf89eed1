"""Neo export: a Block with one SpikeTrain per unit and an Epoch of presentations, saved with NixIO."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..records import Presentations, SpikeTrains

__all__ = ["to_neo_block", "from_neo_block", "write_neo", "read_neo"]


def to_neo_block(st: SpikeTrains, name: str = "spikevae run", trial_columns: dict | None = None):
    """SpikeTrains → ``neo.Block`` (one Segment; SpikeTrains annotated with ``channel_id``/``latent_index``).
    ``trial_columns``: ``{name: (values, description)}`` as for :func:`spikevae.io.write_nwb` (one value per
    stimulus or per presentation): array annotations of the presentations epoch, their descriptions in the
    epoch's ``column_descriptions`` annotation."""
    import neo
    import quantities as pq

    p = st.presentations
    blk = neo.Block(name=name, description="spikevae simulated spike trains",
                    meta=json.dumps(st.meta, sort_keys=True, default=str), dt_s=float(st.dt))
    seg = neo.Segment(name="run")
    blk.segments.append(seg)
    for k, t in enumerate(st.trains()):
        train = neo.SpikeTrain(t * pq.s, t_start=0 * pq.s, t_stop=st.t_stop * pq.s, sampling_rate=(1 / st.dt) * pq.Hz,
                               name=f"unit{k}", channel_id=k, latent_index=k)
        seg.spiketrains.append(train)
    columns = {"stimulus_index": p.stimulus.astype(np.int64), "repeat": p.repeat.astype(np.int64)}
    described = {}
    for key, (values, desc) in (trial_columns or {}).items():
        v = np.asarray(values)
        columns[key] = v if len(v) == len(p) else v[np.asarray(p.stimulus, np.int64)]
        described[key] = desc
    ep = neo.Epoch(times=p.onset * pq.s, durations=(p.offset - p.onset) * pq.s,
                   labels=np.array([f"stim{s}_rep{r}" for s, r in zip(p.stimulus, p.repeat)]),
                   name="presentations", array_annotations=columns,
                   column_descriptions=json.dumps(described, sort_keys=True))
    seg.epochs.append(ep)
    if p.expected.size:
        # λ per presentation, as an irregular signal sampled at the onsets (one channel per unit)
        seg.irregularlysampledsignals.append(neo.IrregularlySampledSignal(
            p.onset * pq.s, p.expected * pq.dimensionless, name="expected_counts",
            description="expected spike count per unit in each presentation window"))
    return blk


def from_neo_block(blk) -> SpikeTrains:
    """``neo.Block`` written by :func:`to_neo_block` (or any single-segment block of SpikeTrains) → SpikeTrains."""
    seg = blk.segments[0]
    trains = seg.spiketrains
    ids = [int(tr.annotations.get("channel_id", k)) for k, tr in enumerate(trains)]
    unit = np.concatenate([np.full(len(tr), i, np.int64) for i, tr in zip(ids, trains)]) if trains else np.zeros(0, np.int64)
    time = np.concatenate([tr.rescale("s").magnitude.astype(np.float64) for tr in trains]) if trains else np.zeros(0)
    t_stop = float(max(tr.t_stop.rescale("s").magnitude for tr in trains)) if trains else 0.0
    dt = float(blk.annotations.get("dt_s", 0.0))
    ep = next((e for e in seg.epochs if e.name == "presentations"), None)
    if ep is not None:
        onset = ep.times.rescale("s").magnitude.astype(np.float64)
        offset = onset + ep.durations.rescale("s").magnitude
        stim = np.asarray(ep.array_annotations.get("stimulus_index", np.arange(len(onset))), dtype=np.int64)
        rep = np.asarray(ep.array_annotations.get("repeat", np.zeros(len(onset))), dtype=np.int64)
    else:
        onset = offset = np.zeros(0)
        stim = rep = np.zeros(0, np.int64)
    sig = next((s for s in seg.irregularlysampledsignals if s.name == "expected_counts"), None)
    expected = np.asarray(sig.magnitude, dtype=np.float64) if sig is not None else np.full((len(onset), len(trains)), np.nan)
    meta = json.loads(blk.annotations["meta"]) if "meta" in blk.annotations else {}
    order = np.lexsort((unit, time))
    return SpikeTrains(unit[order], time[order], max(ids) + 1 if ids else 0, t_stop, dt,
                       Presentations(stim, rep, onset, offset, expected), meta)


def write_neo(path: str | os.PathLike, st: SpikeTrains, trial_columns: dict | None = None) -> Path:
    """Save ``st`` as a Neo Block with NixIO (annotations kept), atomically; ``trial_columns`` as for
    :func:`to_neo_block` (the stimulus parameters the NWB file holds in its trials)."""
    from neo.io import NixIO

    from .files import atomic_write

    blk = to_neo_block(st, trial_columns=trial_columns)

    def _write(tmp):
        os.unlink(tmp)  # NixIO creates the file itself
        with NixIO(tmp, mode="ow") as io:
            io.write_block(blk)

    return atomic_write(path, _write)


def read_neo(path: str | os.PathLike) -> SpikeTrains:
    """Read a NixIO file written by :func:`write_neo` into a SpikeTrains record."""
    from neo.io import NixIO

    with NixIO(str(path), mode="ro") as io:
        blk = io.read_block()
    return from_neo_block(blk)
