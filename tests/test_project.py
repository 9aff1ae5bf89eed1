"""Project-level checks: lint, the GPU benchmark's CPU path, and (slow) the demo end to end."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    res = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:]


@pytest.mark.slow
def test_gpu_benchmark_runs_on_cpu(tmp_path):
    """Without a GPU the script runs its CPU rows and says the CUDA rows were skipped."""
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--out", str(tmp_path), "--quick"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    if not report["cuda"]:
        assert "no CUDA device: the CUDA rows are skipped" in res.stdout
    rows = {r["config"]: r for r in report["throughput"] if r["device"] == "cpu" and "samples_per_s" in r}
    assert set(rows) == {"spikevae", "exact", "reference", "gaussian", "ipvae-T16"}
    assert rows["ipvae-T16"]["batch"] == 200 and 0 < rows["ipvae-T16"]["samples_per_s"] < rows["exact"]["samples_per_s"]
    assert rows["spikevae"]["samples_per_s"] > rows["reference"]["samples_per_s"]  # the sampler's whole point
    assert np.isfinite(report["recipe"]["metrics"]["nelbo"])


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """``spikevae-demo`` on the shipped model: the summary it writes is what its spike file holds."""
    from spikevae.io import read_nwb

    exe = Path(sys.executable).parent / "spikevae-demo"
    res = subprocess.run([str(exe), "--out", str(tmp_path), "--device", "cpu"], capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    st = read_nwb(tmp_path / "run" / "spikes.nwb")
    assert summary["n_spikes"] == st.n_spikes and summary["per_unit_counts"] == st.counts().sum(0).tolist()
    lam = st.presentations.expected
    assert abs(st.n_spikes - lam.sum()) < 4 * np.sqrt(lam.sum())
    assert (tmp_path / "basis.png").stat().st_size > 10_000


def test_every_help_shows_its_defaults():
    """Every option with a default says it in --help, and no option prints a default of None."""
    import contextlib
    import io

    from conftest import load_script

    from spikevae.cli import demo, evaluate, simulate, sweep, train
    from spikevae.cli import lca as lca_cli

    mains = {"simulate": simulate.main, "train": train.main, "evaluate": evaluate.main, "sweep": sweep.main,
             "demo": demo.main, "lca learn": lambda a: lca_cli.main(["learn", *a]),
             "lca infer": lambda a: lca_cli.main(["infer", *a]),
             "rf_mapping": load_script("simulations/rf_mapping.py").main,
             "spike_statistics": load_script("analysis/spike_statistics.py").main}
    for name, main in mains.items():
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as exc:
            main(["--help"])
        text = buf.getvalue()
        assert exc.value.code == 0 and "(default: None)" not in text, name
        assert text.count("(default:") >= 2, (name, text[-800:])


def test_version_and_short_reprs():
    """``spikevae.__version__`` is the installed distribution's; a record's repr says what it holds in one short
    line (counts, shapes, time span), never its arrays."""
    from importlib.metadata import version

    import numpy as np

    import spikevae

    assert spikevae.__version__ == version("spikevae")
    st = spikevae.simulate_spikes(np.full((30, 200), 2.0), window=0.05, dt=1e-3, target="numpy", seed=1)
    text = repr(st)
    assert text == (f"SpikeTrains({st.n_spikes} spikes of 200 units, 30 presentations, 0-{st.t_stop:.4g} s at dt 1 ms)")
    assert repr(st.presentations) == "Presentations(30 presentations of 30 stimuli, 0-1.5 s, expected counts (30, 200))"
    assert len(text) < 120 and "array" not in text


SCRIPTS = ["simulations/inference_comparison.py", "simulations/lca_vs_pvae.py", "simulations/rf_mapping.py",
           "simulations/spike_generation.py", "analysis/patch_statistics.py"]


@pytest.mark.parametrize("command", ["simulate", "train", "evaluate", "sweep", "demo", "lca", *SCRIPTS])
def test_every_option_has_help_and_shows_its_default(command):
    """--help explains every option and prints every default there is (zero included), commands and scripts."""
    import argparse
    import importlib

    from conftest import load_script

    module = load_script(command) if command.endswith(".py") else importlib.import_module(f"spikevae.cli.{command}")
    parser = module._parser()
    parsers = [parser] + [sub for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                          for sub in a.choices.values()]
    for p in parsers:
        text = " ".join(p.format_help().split())
        for action in p._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"{command}: {action.option_strings[0]} has no help"
            shown = action.default not in (None, False, argparse.SUPPRESS) and not isinstance(action.default, bool)
            if shown:
                flag = action.option_strings[-1]
                entry = text.split(f" {flag} ")[-1][:400]
                assert "default" in entry, f"{command}: {flag} hides its default {action.default!r}"


@pytest.mark.slow
def test_startup_benchmark_runs_and_finds_the_same_spikes(tmp_path):
    """benchmarks/simulate_startup.py: both paths run and write the same spikes (its exit status says so)."""
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "simulate_startup.py"), "--runs", "1",
                          "--out", str(tmp_path / "b")], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and "same spikes: True" in res.stdout, res.stdout + res.stderr[-2000:]
