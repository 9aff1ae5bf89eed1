"""NWB and Neo export: lossless round trips, files read by pynwb / neo, nwbinspector clean."""
from datetime import UTC

import numpy as np
import pytest

from spikevae.io import read_neo, read_nwb, to_neo_block, write_neo, write_nwb
from spikevae.records import Presentations, SpikeTrains


@pytest.fixture
def spikes():
    rng = np.random.default_rng(0)
    n_p, K, dt = 6, 5, 1e-4
    on = np.arange(n_p) * 0.12
    pres = Presentations(np.array([0, 1, 2, 0, 1, 2]), np.array([0, 0, 0, 1, 1, 1]), on, on + 0.1,
                         rng.uniform(0, 3, (n_p, K)))
    steps = np.sort(rng.choice(int(0.72 / dt), 80, replace=False))
    unit = rng.integers(0, K - 1, 80)  # the last unit stays silent
    order = np.lexsort((unit, steps))
    return SpikeTrains(unit[order], steps[order] * dt, K, 0.72, dt, pres,
                       {"seed": 3, "model": "pvae-test", "checkpoint_sha256": "ab" * 32, "nested": {"a": [1, 2]}})


def _assert_same(a: SpikeTrains, b: SpikeTrains):
    np.testing.assert_array_equal(a.unit, b.unit)
    np.testing.assert_array_equal(a.time, b.time)
    assert (a.n_units, a.t_stop, a.dt) == (b.n_units, b.t_stop, b.dt)
    for f in ("stimulus", "repeat", "onset", "offset", "expected"):
        np.testing.assert_array_equal(getattr(a.presentations, f), getattr(b.presentations, f))
    assert a.meta == b.meta


def test_nwb_round_trip_is_lossless(tmp_path, spikes):
    stim = np.random.default_rng(1).normal(size=(3, 8, 8)).astype(np.float32)
    path = write_nwb(tmp_path / "run.nwb", spikes, stimuli=stim)
    _assert_same(spikes, read_nwb(path))
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert nwb.units.resolution == spikes.dt
        assert list(nwb.units["latent_index"].data[:]) == list(range(5))
        np.testing.assert_array_equal(nwb.stimulus["stimulus_presentation"].data[:], spikes.presentations.stimulus)
        np.testing.assert_array_equal(nwb.stimulus_template["stimuli"]["stimulus_000001"].data[:], stim[1])
        assert "not an animal" in nwb.subject.description or "no animal" in nwb.subject.description


def test_nwbinspector_reports_no_critical_or_violation(tmp_path, spikes):
    from nwbinspector import inspect_nwbfile

    path = write_nwb(tmp_path / "run.nwb", spikes, stimuli=np.zeros((3, 8, 8), np.float32))
    msgs = list(inspect_nwbfile(nwbfile_path=str(path)))
    bad = [m for m in msgs if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION")]
    assert not bad, [(m.check_function_name, m.message) for m in bad]


def test_many_stimuli_are_one_frame_series_and_inspector_clean(tmp_path, monkeypatch):
    """Above MAX_STIMULUS_IMAGES distinct stimuli (white-noise mapping) the file holds the frame shown at each
    onset as one ImageSeries: read back equal to the stimuli in presentation order, inspector-clean."""
    from nwbinspector import inspect_nwbfile
    from pynwb import NWBHDF5IO

    import spikevae.io.nwb as N

    monkeypatch.setattr(N, "MAX_STIMULUS_IMAGES", 4)
    n = 6
    on = np.arange(n) * 0.05
    order = np.array([5, 0, 1, 2, 3, 4])
    pres = Presentations(order, np.zeros(n, np.int64), on, on + 0.05, np.ones((n, 2)))
    st = SpikeTrains(np.array([0, 1]), np.array([0.01, 0.2]), 2, 0.3, 1e-4, pres, {"seed": 1})
    stim = np.random.default_rng(2).normal(size=(n, 4, 4)).astype(np.float32)
    path = N.write_nwb(tmp_path / "wn.nwb", st, stimuli=stim)
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        series = nwb.stimulus["stimulus_frames"]
        np.testing.assert_array_equal(series.data[:], stim[order])
        assert series.rate == pytest.approx(20.0) and "stimuli" not in nwb.stimulus_template
    msgs = list(inspect_nwbfile(nwbfile_path=str(path)))
    bad = [m for m in msgs if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION")]
    assert not bad, [(m.check_function_name, m.message) for m in bad]


def test_neo_round_trip_is_lossless(tmp_path, spikes):
    path = write_neo(tmp_path / "run.nix", spikes)
    _assert_same(spikes, read_neo(path))
    from neo.io import NixIO

    with NixIO(str(path), mode="ro") as io:
        blk = io.read_block()
    trains = blk.segments[0].spiketrains
    assert len(trains) == 5 and trains[2].annotations["latent_index"] == 2
    assert blk.segments[0].epochs[0].name == "presentations"


def test_stimulus_parameters_are_in_the_nix_file_as_in_the_nwb_file(tmp_path, spikes):
    """Grating parameters (one per stimulus) become per-presentation columns of both files, equal, described."""
    from neo.io import NixIO
    from pynwb import NWBHDF5IO

    cols = {"orientation": (np.array([0.0, 0.5, 1.0]), "grating orientation, rad"),
            "spatial_frequency": (np.array([0.1, 0.2, 0.3]), "cycles/pixel")}
    write_neo(tmp_path / "run.nix", spikes, trial_columns=cols)
    write_nwb(tmp_path / "run.nwb", spikes, trial_columns=cols)
    with NixIO(str(tmp_path / "run.nix"), mode="ro") as io:
        ep = io.read_block().segments[0].epochs[0]
    with NWBHDF5IO(tmp_path / "run.nwb", "r") as io:
        trials = io.read().trials
        for k in cols:
            np.testing.assert_array_equal(ep.array_annotations[k], trials[k].data[:])
            np.testing.assert_array_equal(ep.array_annotations[k], cols[k][0][spikes.presentations.stimulus])
    assert "rad" in ep.annotations["column_descriptions"]


def test_neo_block_matches_elephant_counts(spikes):
    import quantities as pq
    from elephant.conversion import BinnedSpikeTrain

    blk = to_neo_block(spikes)
    seg = blk.segments[0]
    # presentations are 100 ms windows every 120 ms: bin at 20 ms and sum the five bins of each window
    b = BinnedSpikeTrain(seg.spiketrains, bin_size=20 * pq.ms, t_start=0 * pq.s, t_stop=0.72 * pq.s).to_array()
    per_window = b.reshape(5, 6, 6)[:, :, :5].sum(-1).T
    np.testing.assert_array_equal(per_window, spikes.counts())


def test_read_nwb_from_another_tool(tmp_path):
    """A plain pynwb file (units with spike_times, trials without our columns) reads back."""
    from datetime import datetime

    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile(session_description="x", identifier="y", session_start_time=datetime(2026, 1, 1, tzinfo=UTC))
    nwb.add_unit(spike_times=[0.1, 0.5])
    nwb.add_unit(spike_times=[0.2])
    nwb.add_trial(start_time=0.0, stop_time=0.3)
    nwb.add_trial(start_time=0.3, stop_time=0.6)
    with NWBHDF5IO(str(tmp_path / "other.nwb"), "w") as io:
        io.write(nwb)
    st = read_nwb(tmp_path / "other.nwb")
    np.testing.assert_array_equal(st.counts(), [[1, 1], [1, 0]])
    np.testing.assert_array_equal(st.presentations.stimulus, [0, 1])


def test_subject_is_configurable_and_validated(tmp_path, spikes):
    """A chosen subject is written as given; values DANDI's inspector calls CRITICAL are refused with one line."""
    from pynwb import NWBHDF5IO

    from spikevae.errors import ArgumentError
    from spikevae.io.nwb import SubjectInfo

    path = write_nwb(tmp_path / "s.nwb", spikes, subject=SubjectInfo("Macaca mulatta", "m1", "P4Y", "F"))
    with NWBHDF5IO(str(path), "r") as io:
        sub = io.read().subject
        assert (sub.species, sub.subject_id, sub.age, sub.sex) == ("Macaca mulatta", "m1", "P4Y", "F")
    for bad, msg in ((dict(species="monkey"), "Latin binomial"), (dict(sex="X"), "M, F, O or U"),
                     (dict(age="4 years"), "ISO 8601"), (dict(subject_id="a/b"), "without '/'")):
        with pytest.raises(ArgumentError, match=msg):
            SubjectInfo(**bad).validate()
    with pytest.raises(ArgumentError):  # refused before anything is written
        write_nwb(tmp_path / "bad.nwb", spikes, subject=SubjectInfo(sex="X"))
    assert not list(tmp_path.glob("bad*"))


def _files_naming(folder, secret: str) -> list:
    """Files under ``folder`` whose bytes contain ``secret`` (HDF5 strings, JSON, CSV, PNG metadata alike)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes())


@pytest.mark.slow
def test_outputs_never_record_a_private_path(tmp_path, tiny_checkpoint):
    """Provenance names an input file (name, size, SHA-256) and the package version; no output file of simulate (a
    P-VAE or an LCA dictionary) or of `lca infer` holds the folder the inputs or outputs lie in."""
    import json
    import shutil

    from conftest import run_cli

    from spikevae import __version__
    from spikevae.cli.lca import main as lca_main
    from spikevae.cli.simulate import main as simulate_main
    from spikevae.io import file_sha256, read_nwb

    private = tmp_path / "private-folder-3f9c"
    private.mkdir()
    ckpt = private / "model.pt"
    shutil.copyfile(tiny_checkpoint, ckpt)
    quick = ["--n-stimuli", "3", "--repeats", "1", "--target", "numpy", "--window", "10", "--quiet"]
    assert run_cli(simulate_main, ["--checkpoint", str(ckpt), "--out", str(private / "run")] + quick) == 0
    st = read_nwb(private / "run" / "spikes.nwb")
    assert st.meta["checkpoint"] == {"name": "model.pt", "bytes": ckpt.stat().st_size, "sha256": file_sha256(ckpt)}
    assert st.meta["provenance"]["packages"]["spikevae"] == __version__
    summary = json.loads((private / "run" / "summary.json").read_text())
    assert summary["checkpoint"]["sha256"] == file_sha256(ckpt)

    phi = np.linalg.qr(np.random.default_rng(0).normal(size=(64, 16)))[0]
    from spikevae.data import Preprocessing
    from spikevae.io import save_dictionary

    save_dictionary(private / "dict.npz", phi, Preprocessing(patch_size=8, downsample=1, whiten_f0=0.3),
                    {"lca_config": {"lam": 0.1, "threshold": "nonneg"}})
    assert run_cli(simulate_main, ["--dictionary", str(private / "dict.npz"), "--out", str(private / "lca_run"),
                                   "--no-neo"] + quick) == 0
    assert read_nwb(private / "lca_run" / "spikes.nwb").meta["dictionary"]["name"] == "dict.npz"
    assert run_cli(lca_main, ["infer", "--dictionary", str(private / "dict.npz"), "--out", str(private / "infer"),
                              "--n-patches", "3", "--quiet"]) == 0
    for run in ("run", "lca_run", "infer"):
        assert _files_naming(private / run, str(tmp_path)) == [], run
        assert _files_naming(private / run, "private-folder-3f9c") == [], run
