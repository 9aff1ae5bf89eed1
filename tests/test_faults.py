"""Faults outside bad options: reused folders, full disks, resource bombs, degenerate images, foreign NWB files,
and a long run whose memory and spikes must not depend on how it is cut."""
import datetime as dt
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import run_cli

from spikevae.errors import CheckpointError, DataError
from spikevae.spikes import PoissonLayerConfig
from spikevae.spikes.spike_model import SpikeModel

LAYER = PoissonLayerConfig(window=0.02, gap=0.005, dt=1e-3, target="numpy", chunk=7,
                           spikes=SpikeModel(latency=0.01, spontaneous_hz=40.0))  # responses spill over chunk cuts


@pytest.mark.slow
def test_streamed_run_writes_the_spikes_of_the_in_memory_run(tmp_path, tiny_checkpoint):
    """simulate_to_folder (spill file, counting sort on disk, counts reduced per chunk) = run_simulation."""
    from spikevae.io import read_nwb
    from spikevae.workflows.simulate import run_simulation, simulate_to_folder

    mem = run_simulation(tiny_checkpoint, "white-noise", 9, 4, LAYER, seed=3)
    summary = simulate_to_folder(tmp_path / "run", tiny_checkpoint, "white-noise", 9, 4, LAYER, seed=3, neo=False)
    back = read_nwb(tmp_path / "run" / "spikes.nwb")
    assert mem.spikes.n_spikes > 300
    np.testing.assert_array_equal(back.unit, mem.spikes.unit)
    np.testing.assert_array_equal(back.time, mem.spikes.time)
    np.testing.assert_array_equal(back.presentations.expected, mem.spikes.presentations.expected)
    np.testing.assert_array_equal(back.counts(), mem.counts)
    for key in ("n_spikes", "n_spikes_in_windows", "per_unit_counts"):
        assert summary[key] == mem.summary[key], key
    for key, value in mem.summary["reconstruction"].items():
        assert summary["reconstruction"][key] == pytest.approx(value, rel=1e-12), key
    assert not list((tmp_path / "run").glob(".spikes-spill-*"))  # the spill file is gone


def test_one_run_per_folder(tmp_path, tiny_checkpoint, capsys):
    from spikevae.cli.simulate import main

    out = tmp_path / "run"
    base = ["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--stimuli", "white-noise", "--n-stimuli", "3",
            "--repeats", "1", "--target", "numpy", "--window", "10", "--quiet"]
    assert run_cli(main, base + ["--seed", "1"]) == 0
    assert (out / "spikes.nix").is_file()
    assert run_cli(main, base + ["--seed", "2", "--no-neo"]) == 2  # an earlier run: refused without --overwrite
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err, err
    assert json.loads((out / "summary.json").read_text())["n_units"] == 16  # untouched
    (out / ".spikes.tmp-abc.nix").write_bytes(b"named like a temporary file, but no run made it")
    assert run_cli(main, base + ["--seed", "2", "--no-neo", "--overwrite"]) == 2  # never deleted by its name
    assert ".spikes.tmp-abc.nix" in capsys.readouterr().err and (out / ".spikes.tmp-abc.nix").exists()
    (out / ".spikes.tmp-abc.nix").unlink()
    assert run_cli(main, base + ["--seed", "2", "--no-neo", "--overwrite"]) == 0
    assert not (out / "spikes.nix").exists()  # the old run is replaced as a whole
    listed = json.loads((out / ".spikevae-run.json").read_text())["files"]
    assert sorted(listed) == sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                                    and p.name != ".spikevae-run.json")
    (out / "notes.txt").write_text("mine")
    assert run_cli(main, base + ["--overwrite"]) == 2  # a file the run did not write is never deleted
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1")
    assert run_cli(main, base[:2] + ["--out", str(other)] + base[4:]) == 2
    assert "holds no spikevae run" in capsys.readouterr().err


def test_a_failed_or_killed_replacement_keeps_the_earlier_run(tmp_path):
    from spikevae.io import MANIFEST, RunFolder, write_json

    out = tmp_path / "run"
    with RunFolder(out, "simulate"):
        write_json(out / "summary.json", {"seed": 1})
        write_json(out / "figures" / "a.json", [1])
    earlier = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert set(earlier) == {"summary.json", "figures/a.json", MANIFEST}

    def files():
        return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    with pytest.raises(KeyboardInterrupt):  # interrupted half way: the earlier run comes back unchanged
        with RunFolder(out, "simulate", overwrite=True):
            write_json(out / "summary.json", {"seed": 2})
            write_json(out / "spikes.json", [2])
            raise KeyboardInterrupt
    assert files() == earlier
    killed = ("import os, sys\nfrom spikevae.io import RunFolder, write_json\nout = sys.argv[1]\n"
              "RunFolder(out, 'simulate', overwrite=True).__enter__()\n"
              "write_json(out + '/spikes.json', [2])\nwrite_json(out + '/figures/b.json', [2])\n"
              "os._exit(9)  # killed before its __exit__: no clean-up runs\n")
    subprocess.run([sys.executable, "-c", killed, str(out)], check=False)
    assert "summary.json" not in files() and "spikes.json" in files()  # moved aside; restored by the next run:
    with pytest.raises(DataError, match="--overwrite"):
        RunFolder(out, "simulate").__enter__()
    assert files() == earlier
    with RunFolder(out, "simulate", overwrite=True):  # a replacement that succeeds replaces everything
        write_json(out / "summary.json", {"seed": 3})
    assert set(files()) == {"summary.json", MANIFEST}
    assert json.loads((out / MANIFEST).read_text())["files"] == ["summary.json"]
    new = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with RunFolder(new, "simulate"):
            write_json(new / "summary.json", {})
            raise RuntimeError
    assert not new.exists()  # a failed run into a new folder leaves nothing, not even the folder


def _small_fs(tmp_path, size="3m"):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.decode().strip() or 'not permitted'})")
    return mnt


@pytest.mark.parametrize("neo", [pytest.param(True, id="neo"), pytest.param(False, id="no-neo", marks=pytest.mark.slow)])
def test_full_disk_one_line_and_nothing_left(tmp_path, tiny_checkpoint, neo):
    mnt = _small_fs(tmp_path)
    try:
        out = mnt / "run"
        cmd = [sys.executable, "-m", "spikevae.simulate", "--checkpoint", str(tiny_checkpoint), "--out", str(out),
               "--stimuli", "white-noise", "--n-stimuli", "200", "--repeats", "20", "--window", "20", "--dt", "1",
               "--target", "cython", "--quiet"] + ([] if neo else ["--no-neo"])
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and ("No space left" in lines[0] or "not enough space" in lines[0]), r.stderr[-2000:]
        assert not [p for p in out.rglob("*") if p.is_file()]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.slow
def test_checkpoint_zip_bomb_refused_before_decompressing(tmp_path, tiny_checkpoint):
    from spikevae.models.checkpoint import load_checkpoint

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(tiny_checkpoint) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        with zout.open(zin.infolist()[0].filename.split("/")[0] + "/data/99", "w", force_zip64=True) as f:
            for _ in range(64):
                f.write(bytes(1 << 24))  # 1 GiB of zeros, ~1 MB on disk
    assert bomb.stat().st_size < 3e6
    with pytest.raises(CheckpointError, match="refused before decompressing"):
        load_checkpoint(bomb)
    load_checkpoint(tiny_checkpoint)  # torch.save's own stored entries pass


def test_image_above_the_pixel_limit_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    from spikevae import data

    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((12000, 12000), np.uint8)).save(big)  # 144 MP in a few hundred kB
    assert big.stat().st_size < 2e6
    with pytest.raises(DataError, match=r"12000 x 12000 pixels \(144 MP\) exceeds the limit"):
        data.read_image(big)
    monkeypatch.setattr(data.images, "MAX_PIXELS", 10_000)  # configurable
    Image.fromarray(np.zeros((50, 300), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(DataError, match="300 x 50 pixels"):
        data.read_image(tmp_path / "wide.png")


def test_degenerate_images_skipped_or_refused(tmp_path, tiny_checkpoint, capsys, caplog):
    from PIL import Image

    from spikevae.cli.simulate import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((200, 200), 9, np.uint8)).save(folder / "constant.png")
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(folder / "tiny.png")
    base = ["--checkpoint", str(tiny_checkpoint), "--stimuli", str(folder), "--n-stimuli", "4", "--repeats", "1",
            "--target", "numpy", "--window", "10", "--quiet", "--no-neo"]
    assert run_cli(main, base + ["--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no usable image" in err and "constant" in err, err
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((120, 120)) * 255).astype(np.uint8)).save(folder / "noise.png")
    assert run_cli(main, base + ["--out", str(tmp_path / "b")]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert np.isfinite(summary["reconstruction"]["r2_rates"])
    assert "skipping image constant.png" in caplog.text and "skipping image tiny.png" in caplog.text


def _foreign_nwb(path, spike_times=((0.1, 0.2), (0.3,)), ids=(0, 1), trials=((0.0, 0.25), (0.25, 0.5)),
                 notes=None):
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.file import Subject

    nwb = NWBFile(session_description="foreign", identifier="x", session_start_time=dt.datetime.now(dt.UTC),
                  subject=Subject(subject_id="s", species="Mus musculus", age="P90D", sex="F"), notes=notes)
    nwb.add_unit_column(name="latent_index", description="id")
    for k, t in zip(ids, spike_times):
        nwb.add_unit(spike_times=list(t), latent_index=k)
    for a, b in trials:
        nwb.add_trial(start_time=a, stop_time=b)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


@pytest.mark.parametrize("kwargs,msg", [
    ({"trials": ((0.0, 0.3), (0.25, 0.5))}, "trials overlap"),
    ({"ids": (3, 3)}, r"unit ids \(latent_index\) repeat \(3\)"),
    ({"spike_times": ((0.1, float("nan")), (0.3,))}, "spike times must be finite and >= 0"),
    ({"spike_times": ((-0.1, 0.2), (0.3,))}, "spike times must be finite and >= 0"),
    ({"notes": json.dumps({"prior_rates": [0.5, -1.0]})}, "prior_rates must be 2 finite rates > 0"),
    ({"notes": json.dumps({"prior_rates": ["a", "b"]})}, "prior_rates is not a list of numbers"),
], ids=["overlap", "duplicate-unit", "nan-time", "negative-time", "negative-prior", "text-prior"])
def test_foreign_nwb_defects_refused(tmp_path, kwargs, msg):
    from spikevae.io import read_nwb

    path = _foreign_nwb(tmp_path / "f.nwb", **kwargs)
    with pytest.raises(DataError, match=msg):
        read_nwb(path)


def test_foreign_nwb_unsorted_trials_are_sorted(tmp_path):
    from spikevae.io import read_nwb

    st = read_nwb(_foreign_nwb(tmp_path / "f.nwb", trials=((0.25, 0.5), (0.0, 0.25))))
    np.testing.assert_array_equal(st.presentations.onset, [0.0, 0.25])
    np.testing.assert_array_equal(st.counts(), [[2, 0], [0, 1]])  # a loop over the sorted windows by hand


@pytest.mark.slow
def test_memory_does_not_grow_with_the_run(tmp_path):
    """Peak RSS of simulate --no-neo at 50,000 presentations within 1.25x that at 2,000 (benchmarks/memory.py)."""
    from conftest import load_script

    bench = load_script("benchmarks/memory.py")
    rss = []
    for n in (2_000, 50_000):
        out = tmp_path / f"run{n}"
        _, mb = bench.peak_rss_mb([sys.executable, "-m", "spikevae.simulate", "--out", str(out), "--no-neo", "--quiet",
                                   "--n-stimuli", "50", "--repeats", str(n // 50), "--chunk", "2000",
                                   "--target", "cython", "--dt", "1"])  # memory does not depend on dt
        rss.append(mb)
    assert rss[1] < 1.25 * rss[0], rss
    assert os.path.getsize(tmp_path / "run50000" / "spikes.nwb") > 10 * os.path.getsize(tmp_path / "run2000" / "spikes.nwb")


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    import os

    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(d))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_workers_end_when_their_parent_is_killed(tmp_path):
    """SIGKILL of a run with worker processes: the workers do not outlive it (they get the parent-death signal)."""
    import os
    import signal
    import subprocess
    import time

    script = tmp_path / "run.py"
    script.write_text(
        "import numpy as np\n"
        "from spikevae.spikes import PoissonLayerConfig, simulate_poisson\n"
        "cfg = PoissonLayerConfig(window=0.05, dt=1e-4, target='numpy', chunk=50)\n"
        "simulate_poisson(np.full((4000, 64), 3.0), cfg, seed=1, workers=2)\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    try:
        workers = []
        for _ in range(300):  # the pool starts after the run is planned
            workers = [c for c in _children(proc.pid) if c != proc.pid]
            if len(workers) >= 1 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert workers and proc.poll() is None, "the run did not start its workers"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 10
        alive = workers
        while alive and time.time() < deadline:
            alive = [w for w in workers if os.path.exists(f"/proc/{w}") and _state(w) != "Z"]
            time.sleep(0.1)
        assert not alive, f"workers {alive} outlived their killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_workers_are_bounded_by_the_cores_and_the_work():
    from spikevae._resources import bounded_workers, usable_cores

    assert bounded_workers(10**9, 10**6) == usable_cores()
    assert bounded_workers(30, 2) == min(2, usable_cores())
    assert bounded_workers(0, 5) == 1


def test_a_run_folder_touches_only_what_its_run_created(tmp_path):
    """A refused run deletes nothing (a user's file named like a temporary one survives); a second run into a
    folder that another live process writes is refused; runs inside or around another run's folder are refused;
    the current directory is refused; a run inside this process's own run (the demo's) is part of it."""
    import time

    from spikevae.io import MANIFEST, RunFolder, write_json

    out = tmp_path / "run"
    with RunFolder(out, "simulate"):
        write_json(out / "summary.json", {"seed": 1})
    draft = out / "sub" / ".thesis.tmp-draft"
    draft.parent.mkdir()
    draft.write_text("a user's draft")
    with pytest.raises(DataError, match="did not write"):
        RunFolder(out, "simulate", overwrite=True).__enter__()
    assert draft.read_text() == "a user's draft"
    draft.unlink()
    draft.parent.rmdir()

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom spikevae.io import RunFolder\n"
                               "with RunFolder(sys.argv[1], 'simulate', overwrite=True):\n"
                               "    print('in', flush=True); time.sleep(30)\n", str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "in"
        with pytest.raises(DataError, match=rf"process {holder.pid}\) is writing into"):
            RunFolder(out, "simulate", overwrite=True).__enter__()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    time.sleep(0.1)
    with RunFolder(out, "simulate", overwrite=True):  # the killed holder's lock is stale: recovered, taken over
        write_json(out / "summary.json", {"seed": 3})
    assert json.loads((out / "summary.json").read_text()) == {"seed": 3}

    with pytest.raises(DataError, match="lies inside the run folder"):
        RunFolder(out / "inner", "simulate").__enter__()
    assert not (out / "inner").exists()
    with pytest.raises(DataError, match="holds another run's folder"):
        RunFolder(tmp_path, "simulate", overwrite=True).__enter__()
    for here in ("", "."):
        with pytest.raises(DataError, match="not the current directory"):
            RunFolder(here, "simulate").__enter__()

    demo = tmp_path / "demo"
    for _ in range(2):  # the demo's nested simulate run is the demo's: a second demo replaces both
        with RunFolder(demo, "demo", overwrite=True):
            write_json(demo / "metrics.json", {})
            with RunFolder(demo / "run", "simulate", overwrite=True):
                write_json(demo / "run" / "summary.json", {})
    listed = json.loads((demo / MANIFEST).read_text())["files"]
    assert sorted(listed) == ["metrics.json", f"run/{MANIFEST}", "run/summary.json"]


def test_outputs_replace_only_regular_files(tmp_path):
    """A FIFO, a socket, a folder or a symlink at an output path is refused in one line and left as it is."""
    import socket

    from spikevae.io import write_json

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    try:
        for path, what in ((fifo, "not a regular file"), (sock_path, "not a regular file"), (tmp_path, "a folder"),
                           (link, "symbolic link")):
            with pytest.raises(DataError, match=what):
                write_json(path, {"x": 1})
        assert fifo.is_fifo() and sock_path.is_socket() and link.is_symlink() and target.read_text() == "{}"
    finally:
        sock.close()


def test_special_files_as_inputs_and_outputs_get_one_line(tmp_path, capsys, tiny_checkpoint):
    """A FIFO as a checkpoint, dictionary or image is refused at once (it would block every read); train never
    replaces a FIFO or a user's file that is not a checkpoint."""
    from spikevae.cli import simulate, train
    from spikevae.data import read_image
    from spikevae.io import load_dictionary

    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    assert run_cli(simulate.main, ["--checkpoint", str(fifo), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a regular file" in err, err
    with pytest.raises(DataError, match="not a regular file"):
        load_dictionary(fifo)
    with pytest.raises(DataError, match="directory"):
        read_image(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    small = ["--dataset", "natural", "--n-train", "256", "--n-val", "64", "--epochs", "1", "--latents", "8",
             "--patch-size", "8", "--batch-size", "64", "--quiet"]
    for out, what in ((notes, "not a spikevae checkpoint"), (fifo, "not a regular file")):
        assert run_cli(train.main, ["--out", str(out), *small]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and what in err, err
    assert notes.read_text() == "my notes" and fifo.is_fifo()


def test_a_swallowed_stop_is_never_written_as_complete(tmp_path):
    """A Ctrl-C whose KeyboardInterrupt a library swallowed (only the stop flag is left): the file being written is
    not renamed into place, and the run folder ends as an interrupted run, with nothing left."""
    from spikevae.errors import STOP_REQUESTED
    from spikevae.io import RunFolder, write_json

    out = tmp_path / "run"
    try:
        with pytest.raises(KeyboardInterrupt):
            with RunFolder(out, "simulate"):
                write_json(out / "a.json", [1])
                STOP_REQUESTED.set()  # as the signal handler does; the exception itself was lost
        assert not out.exists()
        with pytest.raises(KeyboardInterrupt):
            write_json(tmp_path / "b.json", [2])
        assert not list(tmp_path.iterdir())
    finally:
        STOP_REQUESTED.clear()


def test_a_full_disk_inside_a_library_is_one_line(capsys):
    """A full disk that a library re-raised as its own error type (as compilers and HDF5 do) still ends in one line
    and exit 2, naming the OS error, not in a traceback."""
    import errno

    from spikevae.cli.common import cli_entry

    @cli_entry("prog")
    def main(argv=None):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            raise RuntimeError("the build failed") from exc

    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err, err

    @cli_entry("prog")
    def other(argv=None):
        raise RuntimeError("a bug, not a full disk")

    with pytest.raises(RuntimeError, match="a bug"):  # anything else is not hidden
        other([])
