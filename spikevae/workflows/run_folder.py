"""The one run-folder writer: every producer's spikes land in a folder the same way.

``spikes.nwb`` (pynwb, with the stimuli and their parameters), ``spikes.nix`` (Neo NixIO, optional),
``figures/*.png`` and ``summary.json``, last. The figures are drawn in a process beside this one while the NWB
file is written (:class:`~spikevae.workflows._beside.Beside`); the NIX file comes after a check of the free space
(its writer cannot fail cleanly on a full disk). The folder itself, its temporary names and its clean-up on
failure are :class:`spikevae.io.RunFolder`'s. The writer never asks which model produced the spikes: the record's
``meta['model']`` and ``meta['command']`` name it in the files.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..io.files import write_json

__all__ = ["write_run_files", "nix_bytes", "trial_columns", "checkpoint_record"]


def nix_bytes(st) -> float:
    """Disk space the Neo (NIX) file of ``st`` may need, bytes: a fixed 64 MiB, 24 bytes a spike and 16 a value of the
    expected-count table."""
    return 64 * 2**20 + 24.0 * st.n_spikes + 16.0 * np.asarray(st.presentations.expected).size


def trial_columns(stimuli) -> dict:
    """The stimulus parameters of a :class:`~spikevae.stimuli.StimulusSet` as NWB trial columns (one value per
    stimulus, indexed by each trial's stimulus)."""
    if stimuli is None:
        return {}
    return {k: (np.asarray(v), f"{k} of the stimulus shown ({stimuli.description})") for k, v in stimuli.params.items()}


def write_run_files(out: Path, spikes, summary: dict, *, command: str, stimuli=None, draw: Callable | None = None,
                    draw_args: tuple = (), neo: bool = True, subject=None,
                    description: str = "spikevae simulated spike trains") -> dict:
    """Write a run's files into ``out`` (the path of an open :class:`spikevae.io.RunFolder`); return their paths.

    Parameters
    ----------
    spikes : SpikeTrains or SpilledSpikes
        The run; ``meta['command']`` is set to ``command`` (the NWB file's source script names it).
    summary : dict
        Written as ``summary.json``, last; ``command`` is added.
    command : str
        The command that made the run (``simulate``, ``lca infer``, ...).
    stimuli : StimulusSet, optional
        Stored in the NWB file with their parameters as trial columns.
    draw : callable, optional
        ``draw(out, *draw_args) -> {name: path}`` draws the figures into ``out / 'figures'``; it runs beside the NWB
        write (forked) where the machine allows, so its arguments are in-memory arrays, not open files.
    neo : bool
        Also write ``spikes.nix``; it needs the whole run in memory (a spilled run is loaded for it).
    """
    from .. import io
    from ._beside import Beside

    spikes.meta["command"] = command
    images = None if stimuli is None else stimuli.images
    with Beside(draw or _no_figures, out, *draw_args, fork=None if draw else False) as figures:
        paths = {"nwb": io.write_nwb(out / "spikes.nwb", spikes, stimuli=images, subject=subject,
                                     description=description, trial_columns=trial_columns(stimuli))}
        if neo:
            full = spikes.load() if hasattr(spikes, "load") else spikes
            io.check_free_space(out, nix_bytes(full), "the Neo (NIX) file")
            paths["nix"] = io.write_neo(out / "spikes.nix", full, trial_columns=trial_columns(stimuli))
        paths.update(figures.result())
    paths["summary"] = write_json(out / "summary.json", {**summary, "command": command})
    return paths


def checkpoint_record(model) -> dict | None:
    """What a run records of a model's checkpoint (:func:`spikevae.io.files.file_record`: name, size, SHA-256);
    None for a model that was not loaded from a file."""
    from ..io.files import file_record

    path = getattr(model, "path", None)
    return file_record(path) if path else None


def _no_figures(out: Path) -> dict:
    return {}
