"""Smoke tests of the runnable scripts with tiny arguments."""
import csv
import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load(rel):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rf_mapping_smoke(tmp_path, tiny_checkpoint, capsys):
    rf = _load("simulations/rf_mapping.py")
    out = tmp_path / "rf"
    assert rf.main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--frames", "300", "--sparse-frames", "128",
                    "--grating-repeats", "1", "--window", "10", "--dt", "1", "--target", "numpy", "--fit-units", "4",
                    "--quiet"]) == 0
    with open(out / "gabor_fits.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert 1 <= len(rows) <= 4 and {"r2", "nx", "ny", "osi", "corr_sta_encoder"} <= set(rows[0])
    assert np.load(out / "sta.npy").shape == (16, 8, 8)
    for fig in ("rf_grid", "nx_ny", "tuning", "on_off"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
    from spikevae.io import read_nwb

    assert len(read_nwb(out / "white_noise.nwb").presentations) == 300
    assert "mapped 16 pvae units" in capsys.readouterr().out


def test_rf_mapping_bad_input(tmp_path, capsys):
    rf = _load("simulations/rf_mapping.py")
    assert rf.main(["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
