"""NWB export of simulated spike trains (pynwb), inspector-clean.

Layout of the file:

- ``units``: one row per model unit, ``spike_times`` in s, ``resolution = dt``,
  columns ``latent_index`` (the unit's index in the model) and ``obs_intervals``;
- ``trials``: one row per presentation, ``start_time``/``stop_time`` (the
  window), ``stimulus_index`` and ``repeat``;
- stimuli (optional): up to :data:`MAX_STIMULUS_IMAGES` distinct stimuli, an ``Images`` container of
  the model-input patches and an ``IndexSeries`` ``stimulus_presentation`` that points into it at each
  onset; more (white-noise mapping: one new frame per presentation), one ``ImageSeries``
  ``stimulus_frames`` holding the frame shown at each onset (one HDF5 dataset per image made 55,000
  images take minutes to write);
- ``processing/model``: a ``DynamicTable`` ``expected_counts`` with λ for every
  (presentation, unit) (one row per presentation, an array column of K values);
- provenance (checkpoint hash, configs, package versions, seed) as JSON in the
  file's ``notes``; ``source_script`` names spikevae;
- the subject of a simulation, described honestly (:class:`SubjectInfo`): by default species
  ``http://purl.obolibrary.org/obo/NCBITaxon_32630`` (NCBI Taxonomy's "synthetic construct", a term IRI that
  NWB best practice and DANDI accept), ``sex = 'U'`` (unknown), ``age = 'P0D/'`` (ISO 8601 open range: "0 days
  or more", the form DANDI accepts when the age is not known) and ``subject_id = 'sim-<model>-seed<seed>'``;
  the subject's and the session's descriptions say it is a simulated network, not an animal. Every field can be
  set (``simulate --subject-species ...``), e.g. to the species whose data a model was fitted to;
- ``trials`` gains one column per stimulus parameter when the caller passes them (``trial_columns``: a grating's
  orientation, spatial frequency, phase; an aperture's diameter and centre), so tuning curves can be recomputed
  from the file alone (``analysis/tuning_from_nwb.py``).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import uuid
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..records import Presentations, SpikeTrains, overlaps

__all__ = ["write_nwb", "read_nwb", "read_trial_columns", "SUBJECT_NOTE", "SubjectInfo", "SYNTHETIC_SPECIES"]

SUBJECT_NOTE = "simulated network (spikevae); no animal was recorded"
#: NCBI Taxonomy 32630, "synthetic construct"
SYNTHETIC_SPECIES = "http://purl.obolibrary.org/obo/NCBITaxon_32630"


class SubjectInfo(NamedTuple):
    """The NWB Subject of a simulated run (see the module docstring for the defaults and why)."""

    species: str = SYNTHETIC_SPECIES
    subject_id: str | None = None  # None: sim-<model>-seed<seed>
    age: str = "P0D/"
    sex: str = "U"

    def validate(self) -> SubjectInfo:
        """Refuse, with one line, what DANDI's inspector configuration would report as CRITICAL."""
        import re

        from ..errors import ArgumentError

        if not re.fullmatch(r"([A-Z][a-z]* [a-z]+)|(http://purl\.obolibrary\.org/obo/NCBITaxon_\d+)", self.species):
            raise ArgumentError(f"subject species {self.species!r} must be a Latin binomial ('Macaca mulatta') or an "
                                "NCBI taxonomy IRI (http://purl.obolibrary.org/obo/NCBITaxon_<id>)")
        if self.sex not in ("M", "F", "O", "U"):
            raise ArgumentError(f"subject sex must be M, F, O or U (unknown), got {self.sex!r}")
        dur = r"P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?"
        if not (re.fullmatch(dur, self.age) or re.fullmatch(f"({dur})?/({dur})?", self.age) and self.age != "/"):
            raise ArgumentError(f"subject age {self.age!r} must be an ISO 8601 duration ('P90D') or a range "
                                "('P0D/' when unknown)")
        if self.subject_id is not None and (not self.subject_id or "/" in self.subject_id):
            raise ArgumentError(f"subject id {self.subject_id!r} must be non-empty and without '/'")
        return self


#: above this many distinct stimuli the file holds one frame per presentation (an ImageSeries), not one image each
MAX_STIMULUS_IMAGES = 2000


#: what a units table's rows are, by the producer that made them (``meta['model']``)
UNIT_DESCRIPTION = {
    "pvae": "model units simulated as Brian2 Poisson neurons",
    "lca": "LCA units (rectified converged codes) simulated as Brian2 Poisson neurons",
    "ipvae-circuit": "iP-VAE latents simulated as the Brian2 inference circuit's neurons",
    "spiking-lca": "spiking-LCA integrate-and-fire neurons (Brian2)",
}


def write_nwb(path: str | os.PathLike, st: SpikeTrains, stimuli: np.ndarray | None = None,
              description: str = "spikevae simulated spike trains", start_time: _dt.datetime | None = None,
              subject: SubjectInfo | None = None, trial_columns: dict | None = None,
              unit_columns: dict | None = None) -> Path:
    """Write ``st`` (and optionally the stimuli, (n_stimuli, P, P)) to an NWB file, atomically.

    ``subject``: the simulated subject (default :class:`SubjectInfo`()). ``trial_columns``: ``{name: (values,
    description)}`` with one value per stimulus (indexed by each trial's stimulus index) or per trial.
    ``unit_columns``: ``{name: (values, description)}``, one value per unit (e.g. each unit's tuning properties;
    say the unit in the description).

    ``st`` is a :class:`SpikeTrains` or any record with its fields whose ``unit_major()`` and
    ``presentations.expected`` may be h5py datasets (a long run spilled to disk,
    :class:`spikevae.workflows.simulate.SpilledSpikes`): those are copied into the file without being loaded.
    """
    from hdmf.common import DynamicTable, VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject
    from pynwb.misc import Units

    from .files import atomic_write

    subject = (subject or SubjectInfo()).validate()
    meta = dict(st.meta)
    seed = meta.get("seed")
    model = meta.get("model", "pvae")
    command = str(meta.get("command", "simulate"))  # the command that made the run (its module names the script)
    start = start_time or _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    nwb = NWBFile(
        session_description=f"{description} (a simulation: no animal was recorded)",
        identifier=meta.get("run_id") or str(uuid.uuid4()),
        session_start_time=start,
        experimenter=["spikevae (simulation)"],
        experiment_description=meta.get("experiment", "Poisson neurons driven by a model's posterior rates"),
        institution="simulation (no institution)",
        keywords=["simulation", "brian2", "spikevae", "poisson vae"],
        source_script=f"spikevae {meta.get('spikevae_version', '')}: python -m spikevae.{command}",
        source_script_file_name=f"spikevae/cli/{command.split()[0]}.py",
        notes=json.dumps(meta, sort_keys=True, default=str),
        subject=Subject(subject_id=subject.subject_id or f"sim-{model}-seed{seed}", species=subject.species,
                        age=subject.age, sex=subject.sex, description=SUBJECT_NOTE),
    )
    # columns built whole (an h5py dataset is copied by HDF5 without being read into memory), not row by row
    times, ends = st.unit_major()
    K = st.n_units
    spike_times = VectorData(name="spike_times", description="the spike times for each unit in seconds", data=times)
    obs = VectorData(name="obs_intervals", description="the observation intervals for each unit",
                     data=np.tile([[0.0, float(st.t_stop)]], (K, 1)))
    nwb.units = Units(name="units", description=next((v for k, v in UNIT_DESCRIPTION.items() if str(model).startswith(k)),
                                                    UNIT_DESCRIPTION["pvae"]),
                      resolution=st.dt,
                      id=np.arange(K), columns=[
                          spike_times, VectorIndex(name="spike_times_index", data=np.asarray(ends, np.int64),
                                                   target=spike_times),
                          obs, VectorIndex(name="obs_intervals_index", data=np.arange(1, K + 1), target=obs),
                          VectorData(name="latent_index", description="index of the unit in the model's latent vector",
                                     data=np.arange(K)), *_unit_columns(unit_columns, K)])
    p = st.presentations
    nwb.trials = TimeIntervals(name="trials", description="presentations of the stimuli", id=np.arange(len(p)),
                               columns=[
        VectorData(name="start_time", description="start of the presentation window, s", data=p.onset),
        VectorData(name="stop_time", description="end of the presentation window, s", data=p.offset),
        VectorData(name="stimulus_index", description="index of the stimulus shown (into stimuli)",
                   data=np.asarray(p.stimulus, np.int64)),
        VectorData(name="repeat", description="repeat number of this stimulus (0-based)",
                   data=np.asarray(p.repeat, np.int64)), *_trial_columns(trial_columns, p)])
    if stimuli is not None and len(p):
        _add_stimuli(nwb, stimuli, p)
    mod = nwb.create_processing_module("model", "model outputs that drove the simulated units")
    lam = VectorData(name="expected_counts", data=p.expected,
                     description="expected spike count λ per unit in the presentation window (rate × window)")
    mod.add(DynamicTable(name="expected_counts", description="λ per (presentation, unit); row n = trial n",
                         columns=[lam]))

    def _write(tmp):
        with NWBHDF5IO(tmp, "w") as io:
            io.write(nwb, link_data=False)  # copy on-disk columns into the file

    return atomic_write(path, _write)


def _add_stimuli(nwb, stimuli: np.ndarray, p: Presentations) -> None:
    """The stimuli as model-input images with the index shown at each onset (regular onsets as a rate), or, beyond
    :data:`MAX_STIMULUS_IMAGES` stimuli, as one frame per presentation."""
    from pynwb.base import ImageReferences, Images
    from pynwb.image import GrayscaleImage, ImageSeries, IndexSeries

    step = np.diff(p.onset)
    if len(step) and np.allclose(step, step[0], rtol=0, atol=1e-9 * max(1.0, p.onset[-1])) and step[0] > 0:
        timing = {"starting_time": float(p.onset[0]), "rate": float(1.0 / step[0])}  # regular onsets
    else:
        timing = {"timestamps": p.onset.astype(np.float64)}
    if len(stimuli) > MAX_STIMULUS_IMAGES:
        frames = np.asarray(stimuli, dtype=np.float32)[np.asarray(p.stimulus, np.int64)]
        nwb.add_stimulus(ImageSeries(name="stimulus_frames", data=frames, unit="n.a.", format="raw", **timing,
                                     description="the stimulus shown at each presentation onset, as model input "
                                                 "(whitened, contrast-normalised); its index is trials.stimulus_index"))
        return
    imgs = [GrayscaleImage(name=f"stimulus_{j:06d}", data=np.asarray(s, dtype=np.float32),
                           description="model-input patch (whitened, contrast-normalised)")
            for j, s in enumerate(stimuli)]
    images = Images(name="stimuli", images=imgs, description="stimuli shown, as model input",
                    order_of_images=ImageReferences(name="order_of_images", data=imgs))
    nwb.add_stimulus_template(images)
    nwb.add_stimulus(IndexSeries(name="stimulus_presentation", data=p.stimulus.astype(np.uint32),
                                 indexed_images=images, unit="N/A", **timing,
                                 description="index of the stimulus shown at each presentation onset"))


def _unit_columns(columns: dict | None, K: int) -> list:
    from hdmf.common import VectorData

    from ..errors import ArgumentError

    out = []
    for name, (values, description) in (columns or {}).items():
        v = np.asarray(values)
        if v.shape != (K,):
            raise ArgumentError(f"unit column {name!r} has {v.shape} values, expected one per unit ({K})")
        out.append(VectorData(name=name, description=description, data=v))
    return out


def _trial_columns(columns: dict | None, p: Presentations) -> list:
    from hdmf.common import VectorData

    from ..errors import ArgumentError

    out = []
    for name, (values, desc) in (columns or {}).items():
        v = np.asarray(values)
        if name in ("start_time", "stop_time", "stimulus_index", "repeat"):
            raise ArgumentError(f"trial column {name!r} is written by spikevae itself")
        if len(v) != len(p):
            stim = np.asarray(p.stimulus, np.int64)
            if len(p) and stim.max() >= len(v):
                raise ArgumentError(f"trial column {name!r} has {len(v)} values for stimuli up to {stim.max()}")
            v = v[stim]
        out.append(VectorData(name=name, description=desc, data=v))
    return out


def read_nwb(path: str | os.PathLike) -> SpikeTrains:
    """Read an NWB file with a Units table (and, if present, trials and λ) into a SpikeTrains record.

    Works on files from other tools too: units need ``spike_times``; trials
    without ``stimulus_index`` get their row number; λ defaults to NaN.
    A missing or unreadable file raises :class:`~spikevae.data.DataError` with one line.
    """
    from ..errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    try:
        return _read_nwb(path)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py/pynwb raise many types for damaged or foreign files
        raise DataError(f"cannot read {path} as NWB ({type(exc).__name__})") from None


def read_trial_columns(path: str | os.PathLike) -> dict:
    """The trials table's columns other than start/stop time, stimulus index and repeat (the stimulus protocol,
    e.g. a grating's orientation), in trial order as :func:`read_nwb` returns the presentations. {} without
    trials; one-line :class:`~spikevae.data.DataError` for an unreadable file."""
    from pynwb import NWBHDF5IO

    from ..errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    try:
        with NWBHDF5IO(str(path), "r") as io:
            tr = io.read().trials
            if tr is None or not len(tr):
                return {}
            order = np.argsort(np.asarray(tr["start_time"].data[:], dtype=np.float64), kind="stable")
            skip = {"start_time", "stop_time", "stimulus_index", "repeat", "tags", "timeseries"}
            return {c: np.asarray(tr[c].data[:])[order] for c in tr.colnames if c not in skip}
    except Exception as exc:  # noqa: BLE001 - h5py/pynwb raise many types for damaged or foreign files
        raise DataError(f"cannot read the trials of {path} ({type(exc).__name__})") from None


def _read_nwb(path: Path) -> SpikeTrains:
    from pynwb import NWBHDF5IO

    from ..errors import DataError

    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        if nwb.units is None or "spike_times" not in nwb.units.colnames:
            raise DataError(f"{path}: no Units table with spike_times")
        units = nwb.units
        n_units = len(units)
        ids = np.asarray(units["latent_index"].data[:]) if "latent_index" in units.colnames else np.arange(n_units)
        unit_list, time_list = [], []
        for row in range(n_units):
            t = np.asarray(units.get_unit_spike_times(row), dtype=np.float64)
            unit_list.append(np.full(len(t), ids[row], dtype=np.int64))
            time_list.append(t)
        unit = np.concatenate(unit_list) if unit_list else np.zeros(0, np.int64)
        time = np.concatenate(time_list) if time_list else np.zeros(0)
        dt = float(units.resolution) if units.resolution is not None and np.isfinite(units.resolution) else 0.0
        tr = nwb.trials
        if tr is not None and len(tr):
            onset = np.asarray(tr["start_time"].data[:], dtype=np.float64)
            offset = np.asarray(tr["stop_time"].data[:], dtype=np.float64)
            stim = np.asarray(tr["stimulus_index"].data[:]) if "stimulus_index" in tr.colnames else np.arange(len(onset))
            rep = np.asarray(tr["repeat"].data[:]) if "repeat" in tr.colnames else np.zeros(len(onset), np.int64)
        else:
            onset = offset = np.zeros(0)
            stim = rep = np.zeros(0, np.int64)
        expected = np.full((len(onset), int(ids.max()) + 1 if n_units else 0), np.nan)
        if "model" in nwb.processing and "expected_counts" in nwb.processing["model"].data_interfaces:
            expected = np.asarray(nwb.processing["model"]["expected_counts"]["expected_counts"].data[:])
        meta = {}
        if nwb.notes:
            try:
                meta = json.loads(nwb.notes)
            except ValueError:
                meta = {"notes": nwb.notes}
        t_stop = float(max(time.max() if len(time) else 0.0, offset.max() if len(offset) else 0.0))
        if "obs_intervals" in units.colnames and n_units:
            t_stop = max(t_stop, float(np.max(units["obs_intervals"][0])))
    n_out = int(ids.max()) + 1 if n_units else 0
    onset, offset, stim, rep, expected = _check_foreign(path, ids, time, onset, offset, stim, rep, expected, meta, n_out)
    order = np.lexsort((unit, time))
    pres = Presentations(stim.astype(np.int64), rep.astype(np.int64), onset, offset, expected)
    return SpikeTrains(unit[order], time[order], n_out, t_stop, dt, pres, meta)


def _check_foreign(path, ids, time, onset, offset, stim, rep, expected, meta, n_units):
    """What a file from another tool (or a damaged one) must satisfy before any number is computed from it.

    Trials out of time order are sorted (with their λ rows); overlapping trials, duplicate or negative unit
    ids, non-finite or negative spike times, and malformed model fields are refused with one line.
    """
    from ..errors import DataError

    ids = np.asarray(ids)
    if len(ids) and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0):
        raise DataError(f"{path}: unit ids (latent_index) must be integers >= 0")
    if len(np.unique(ids)) != len(ids):
        values, n_seen = np.unique(ids, return_counts=True)
        dup = values[n_seen > 1]
        raise DataError(f"{path}: unit ids (latent_index) repeat ({', '.join(map(str, dup[:5]))}): two units would "
                        "be merged")
    if len(time) and not (np.all(np.isfinite(time)) and time.min() >= 0):
        bad = "NaN or infinite" if not np.all(np.isfinite(time)) else f"{time.min():g} s"
        raise DataError(f"{path}: spike times must be finite and >= 0 (found {bad})")
    if len(onset):
        if not (np.all(np.isfinite(onset)) and np.all(np.isfinite(offset)) and np.all(offset > onset)):
            raise DataError(f"{path}: every trial needs finite start and stop times with stop > start")
        order = np.argsort(onset, kind="stable")
        if np.any(order != np.arange(len(onset))):  # documented handling: trials in time order
            onset, offset, stim, rep = onset[order], offset[order], stim[order], rep[order]
            if len(expected) == len(order):
                expected = expected[order]
        overlap = overlaps(onset, offset)
        if len(overlap):
            k = int(overlap[0])
            raise DataError(f"{path}: trials overlap ({len(overlap)} pairs, first: [{onset[k]:g}, {offset[k]:g}) and "
                            f"[{onset[k + 1]:g}, {offset[k + 1]:g}) s): spikes per trial would be counted twice")
    if expected.shape != (len(onset), n_units) and expected.size:
        raise DataError(f"{path}: expected_counts is {expected.shape}, not (trials, units) = ({len(onset)}, {n_units})")
    if expected.size and not np.all(np.isnan(expected)) and not (np.all(np.isfinite(expected)) and expected.min() >= 0):
        raise DataError(f"{path}: expected_counts must be finite and >= 0")
    if "prior_rates" in meta:
        try:
            r = np.asarray(meta["prior_rates"], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{path}: model field prior_rates is not a list of numbers") from None
        if r.ndim != 1 or len(r) != n_units or not np.all(np.isfinite(r)) or r.min() <= 0:
            raise DataError(f"{path}: model field prior_rates must be {n_units} finite rates > 0")
    return onset, offset, stim, rep, expected
