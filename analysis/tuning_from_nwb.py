"""Grating tuning recomputed from an NWB file alone: ``python analysis/tuning_from_nwb.py rf/gratings.nwb --out tuning/``.

Reads the units' spikes and the trials table's stimulus protocol (each presentation's ``orientation``,
``spatial_frequency`` and ``phase``, as ``simulations/rf_mapping.py`` writes them; any file with those trial
columns works), counts each unit's spikes in each trial window, averages repeats, and applies the V1 battery's
definitions (:func:`spikevae.analysis.battery.grid_properties`): circular variance, orientation bandwidth,
orthogonal/preferred ratio, peak SF and SF bandwidth, F1/F0; the peak response in spikes/s, as the RF run reports
it. A grid these definitions cannot use (fewer than 4 orientations, 3 spatial frequencies or 3 phases) is refused
up front, naming what the file lacks and the command that records a full grid. A size-protocol file (``size.nwb``: trial columns
``unit`` and ``diameter``) gives each unit's size tuning instead. Writes ``properties.csv`` (one row per unit) and
``tuning.npz`` (the mean responses).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikevae.cli.common import Parser, cli_entry
from spikevae.errors import ArgumentError


@cli_entry("tuning_from_nwb")
def main(argv=None) -> int:
    from spikevae.io import RunFolder, read_nwb, write_csv, write_npz
    from spikevae.io.nwb import read_trial_columns

    p = Parser(prog="tuning_from_nwb", description=__doc__.splitlines()[0])
    p.add_argument("nwb")
    p.add_output("tuning_from_nwb", "tuning")
    args = p.parse_args(argv)
    path = Path(args.nwb)
    st = read_nwb(path)
    cols = read_trial_columns(path)
    counts = st.counts() if len(st.presentations) else None
    if counts is None:
        raise ArgumentError(f"{path} has no trials table: tuning needs one row per presentation")
    if {"orientation", "spatial_frequency", "phase"} <= set(cols) and "diameter" not in cols:
        _check_grid(path, cols)
        window = float(np.median(st.presentations.offset - st.presentations.onset))
        rows, arrays = _grid(counts, cols, window)
        kind = "grating grid"
    elif {"unit", "diameter"} <= set(cols):
        rows, arrays = _size(counts, cols)
        kind = "size tuning"
    else:
        raise ArgumentError(f"{path}: the trials table needs orientation, spatial_frequency and phase columns (a "
                            f"grating grid) or unit and diameter (size tuning); it has {', '.join(cols) or 'none'}")
    with RunFolder(args.out, "tuning_from_nwb", args.overwrite) as run:
        write_csv(run.path / "properties.csv", list(rows[0]), (list(r.values()) for r in rows))
        write_npz(run.path / "tuning.npz", **arrays)
    print(f"{kind}: {len(rows)} units from {len(counts)} trials of {path}; wrote {run.path}")
    return 0


#: the fewest distinct values of each grating parameter the battery's definitions need
GRID_MIN = {"orientation": 4, "spatial_frequency": 3, "phase": 3}


def _check_grid(path, cols) -> None:
    """Refuse a grating protocol the definitions cannot use, naming what it lacks and how to record a full one."""
    have = {k: len(np.unique(np.round(np.asarray(cols[k], dtype=np.float64), 12))) for k in GRID_MIN}
    short = [f"{have[k]} {k.replace('_', ' ')}{'s' if have[k] != 1 else ''} (needs >= {GRID_MIN[k]})"
             for k in GRID_MIN if have[k] < GRID_MIN[k]]
    if short:
        raise ArgumentError(f"{path}: its gratings have {', '.join(short)}; record a full grid with `python -m "
                            "spikevae.simulate --stimuli gratings --n-stimuli 96` (8 orientations x 4 frequencies x 3 "
                            "phases) or `python simulations/rf_mapping.py` (its gratings.nwb)")


def _grid(counts, cols, window: float):
    from spikevae.analysis.battery import grid_from_trials, grid_properties

    grid, oris, freqs = grid_from_trials(counts, cols["orientation"], cols["spatial_frequency"], cols["phase"])
    g = grid_properties(grid, oris, freqs)
    rows = [{"unit": k, "peak_response": float(g["peak"][k]) / window, "response_unit": "spikes/s",
             "preferred_orientation_deg": float(np.degrees(g["pref"][k])),
             "circular_variance": float(g["cv"][k]), "orientation_bandwidth_deg": float(g["bw"][k]),
             "orth_pref_ratio": float(g["opr"][k]), "peak_sf_cpp": float(g["sf"]["peak"][k]),
             "sf_bandwidth_octaves": float(g["sf"]["bandwidth_octaves"][k]), "f1_f0": float(g["f1f0"][k])}
            for k in range(grid.shape[0])]
    return rows, {"grid": grid, "orientations": oris, "frequencies": freqs}


def _size(counts, cols):
    from spikevae.analysis.v1 import size_tuning

    unit = np.asarray(cols["unit"], np.int64)
    d_all = np.asarray(cols["diameter"], np.float64)
    diam = np.unique(d_all)
    units = np.unique(unit)
    curve = np.full((len(units), len(diam)), np.nan)
    for j, u in enumerate(units):
        sel = unit == u
        di = np.searchsorted(diam, d_all[sel])
        curve[j] = np.bincount(di, counts[sel, u], len(diam)) / np.maximum(np.bincount(di, minlength=len(diam)), 1)
    s = size_tuning(curve, diam)
    rows = [{"unit": int(u), "gsf_px": float(s["gsf"][j]), "ssi": float(s["ssi"][j])} for j, u in enumerate(units)]
    return rows, {"size": curve, "diameters": diam, "units": units}


if __name__ == "__main__":
    raise SystemExit(main())
