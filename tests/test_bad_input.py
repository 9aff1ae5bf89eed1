"""Bad input, across commands: tampered checkpoints, out-of-range options, interrupts.

Each case must end in exactly one stderr line naming the problem, a non-zero exit status, and no
output file (nothing half-written, nothing that claims more than it holds).
"""
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import load_script, run_cli


def _tamper(data: dict, case: str) -> dict:
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    sd = {k: v.clone() for k, v in d["state_dict"].items()}
    d["state_dict"] = sd
    if case == "patch-size":
        d["preprocessing"]["patch_size"] = 9
    elif case == "string-number":
        d["model_config"]["n_latents"] = "16"
    elif case == "nan-weight":
        sd["decoder.weight"][0, 0] = math.nan
    elif case == "inf-weight":
        sd["encoder.1.weight"][3, 2] = math.inf
    elif case == "no-train-config":
        del d["train_config"]
    elif case == "unknown-field":
        d["surprise"] = 1
    elif case == "unknown-config-field":
        d["model_config"]["depth"] = 3
    elif case == "bad-whitening":
        d["preprocessing"]["whiten_f0"] = "high"
    elif case == "shape":
        d["model_config"]["n_latents"] = 17
    elif case == "negative-epoch":
        d["epoch"] = -1
    elif case == "bad-train-config":
        d["train_config"]["beta"] = math.inf
    elif case == "huge-float64":
        sd["decoder.weight"] = sd["decoder.weight"].double() * 1e300  # finite as stored, infinite in float32
    elif case == "int-weight":
        sd["decoder.weight"] = sd["decoder.weight"].round().to(torch.int64)
    elif case == "log-rate-absurd":
        sd["log_r"][0] = -1e30
    elif case == "sparse-weight":
        sd["decoder.weight"] = sd["decoder.weight"].to_sparse()
    return d


CASES = {
    "patch-size": "preprocessing patch_size 9 does not match",
    "string-number": "field 'n_latents' must be an integer",
    "nan-weight": "weight 'decoder.weight' holds NaN or infinite values",
    "inf-weight": "weight 'encoder.1.weight' holds NaN or infinite values",
    "no-train-config": "checkpoint lacks train_config",
    "unknown-field": "unknown checkpoint fields ['surprise']",
    "unknown-config-field": "model_config has unknown fields ['depth']",
    "bad-whitening": "field 'whiten_f0' must be a finite number",
    "shape": "weights do not match the model config",
    "negative-epoch": "epoch must be >= 0",
    "bad-train-config": "field 'beta' must be a finite number",
    "huge-float64": "weight 'decoder.weight' holds NaN or infinite values (in float32)",
    "int-weight": "weight 'decoder.weight' is int64",
    "sparse-weight": "weight 'decoder.weight' is a torch.sparse_coo tensor",
    "log-rate-absurd": "prior log-rates 'log_r' range over",
}


def _commands(tmp_path, ck):
    from spikevae.cli import demo, evaluate, simulate
    from spikevae.cli import lca as lca_cli

    out = tmp_path / "out"
    small = ["--window", "10", "--dt", "1", "--target", "numpy", "--quiet"]
    return {
        "simulate": (simulate.main, ["--checkpoint", ck, "--out", str(out), "--n-stimuli", "2", "--repeats", "1", *small]),
        "demo": (demo.main, ["--checkpoint", ck, "--out", str(out), "--n-val", "10", "--no-spikes"]),
        "evaluate": (evaluate.main, ["--checkpoint", ck, "--out", str(out), "--quiet", "--no-gabor"]),
        "lca": (lca_cli.main, ["infer", "--checkpoint", ck, "--out", str(out), "--n-patches", "2", "--quiet"]),
        "rf_mapping": (load_script("simulations/rf_mapping.py").main,
                       ["--checkpoint", ck, "--out", str(out), "--frames", "10", "--sparse-frames", "10",
                        "--grating-repeats", "1", "--fit-units", "2", *small[:-1], "--quiet"]),
        "lca_vs_pvae": (load_script("simulations/lca_vs_pvae.py").main, ["--checkpoint", ck, "--out", str(out), "--quiet"]),
    }


@pytest.fixture(scope="module")
def tampered(tmp_path_factory, tiny_checkpoint):
    data = torch.load(tiny_checkpoint, weights_only=True)
    folder = tmp_path_factory.mktemp("tampered")
    paths = {}
    for case in CASES:
        paths[case] = folder / f"{case}.pt"
        torch.save(_tamper(data, case), paths[case])
    return paths


@pytest.mark.parametrize("command", ["simulate", "demo", "evaluate", "lca", "rf_mapping", "lca_vs_pvae"])
@pytest.mark.parametrize("case", list(CASES))
def test_tampered_checkpoint_one_line_no_files(tmp_path, capsys, tampered, command, case):
    main, argv = _commands(tmp_path, str(tampered[case]))[command]
    code = run_cli(main, argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and CASES[case] in err, err
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("argv,msg", [
    (["--dt", "1e-300"], "dt must be between 0.1 µs and 10 ms"),
    (["--window", "1e300"], "window and gap must be at most 10,000 s"),
    (["--window", "1e-300"], "must be at least one time step"),
    (["--dt", "0.3"], "does not divide the window"),
    (["--seed", "-1"], "--seed: a seed must be in [0, 2**32)"),
    (["--gap", "nan"], "--gap: must be finite"),
    (["--n-stimuli", "99999999999"], "--n-stimuli: must be between 1 and 1e9"),
    (["--n-stimuli", "90000000", "--repeats", "100"], "would need about"),
    (["--chunk", "0"], "--chunk: must be between 1 and 1e9"),
])
def test_simulate_numeric_options_refused_up_front(tmp_path, capsys, tiny_checkpoint, argv, msg):
    from spikevae.cli.simulate import main

    t0 = time.perf_counter()
    code = run_cli(main, ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o"), "--quiet",
                          "--target", "numpy", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and msg in err, err
    assert time.perf_counter() - t0 < 30  # refused, not attempted (dt 1e-300 used to hang)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.*"))


def test_library_raises_the_hierarchy():
    import spikevae
    from spikevae.errors import ArgumentError, SpikeVAEError

    with pytest.raises(ArgumentError, match="rates must be a non-empty"):
        spikevae.simulate_spikes(np.zeros((0, 3)))
    with pytest.raises(ArgumentError, match="finite and >= 0"):
        spikevae.simulate_spikes(np.full((2, 2), np.nan), target="numpy")
    with pytest.raises(SpikeVAEError):
        spikevae.load_model("/nonexistent.pt")
    assert issubclass(ArgumentError, ValueError)  # code that caught ValueError still works


# ------------------------------------------------------------------ Brian2 state and interrupts
def test_brian_state_restored_after_every_target():
    import brian2 as b2
    from brian2.devices.device import get_device

    import spikevae

    b2.prefs.codegen.target = "cython"  # what a user set
    for target in ("numpy", "cpp_standalone", "cython"):
        spikevae.simulate_spikes(np.full((3, 2), 1.0), window=0.01, dt=1e-3, target=target, seed=0)
        assert b2.prefs.codegen.target == "cython", target
        assert get_device().__class__.__name__ == "RuntimeDevice", target
        assert b2.prefs.core.stop_on_keyboard_interrupt is True
    b2.prefs.codegen.target = "auto"


def test_a_run_that_brian_stopped_early_is_refused():
    """Brian2's quiet stop (what its first Ctrl-C does) must not pass as a complete run."""
    import brian2 as b2

    from spikevae.brian._state import brian_state, run_checked
    from spikevae.errors import RunInterrupted

    with brian_state():
        b2.set_device("runtime")
        b2.prefs.codegen.target = "numpy"
        G = b2.NeuronGroup(2, "v : 1", dt=1 * b2.ms)
        net = b2.Network(G)

        @b2.network_operation(dt=1 * b2.ms)
        def _stop(t):
            if t >= 5 * b2.ms:
                net.stop()

        net.add(_stop)
        with pytest.raises(RunInterrupted, match="stopped at 0.00[56]"):
            run_checked(net, 100 * b2.ms)
        net2 = b2.Network(b2.NeuronGroup(1, "v : 1", dt=1 * b2.ms))
        run_checked(net2, 10 * b2.ms)  # a full run passes


@pytest.mark.parametrize("signals", [[signal.SIGINT], pytest.param([signal.SIGINT, signal.SIGINT], marks=pytest.mark.slow),
                                     pytest.param([signal.SIGTERM], marks=pytest.mark.slow)])
def test_interrupted_simulate_writes_nothing_and_cleans_up(tmp_path, signals):
    """Ctrl-C (once or twice) or SIGTERM during a long run (in worker processes, or in this one): one line,
    non-zero exit, no files, no temp folders."""
    out, tmp = tmp_path / "run", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "spikevae.simulate", "--out", str(out), "--n-stimuli", "200", "--repeats", "50",
           "--chunk", "20", "--target", "numpy", "--device", "cpu"]
    if len(signals) == 2:  # the chunks in this process (by default a run of many chunks uses every core)
        cmd += ["--workers", "1"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as proc:
        seen = ""
        t0 = time.time()
        while "brian2" not in seen and time.time() - t0 < 120:  # the chunk progress bar: Brian2 is starting
            seen += proc.stderr.read(1)
        assert "brian2" in seen, seen
        time.sleep(1.0)
        for s in signals:
            proc.send_signal(s)
            time.sleep(0.2)
        try:
            _, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"still running 90 s after the signal; stderr: {err[-2000:]}") from None
    last = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "brian2:" not in ln][-1]
    # the command's own status, or death by the signal itself (which a shell reports as the same 130 / 143)
    code = 143 if signals == [signal.SIGTERM] else 130
    assert proc.returncode in (code, -(code - 128)), (proc.returncode, err[-2000:])
    assert "no output was written as complete" in last or proc.returncode < 0, last
    assert not any(p.is_file() for p in out.rglob("*")), list(out.rglob("*"))
    assert list(tmp.iterdir()) == [], list(tmp.iterdir())  # Brian2 build folders and logs removed


def test_a_swallowed_stop_request_still_stops_the_next_run():
    """A signal whose KeyboardInterrupt was lost (raised in a finalizer, say) leaves the flag: the run stops."""
    import brian2 as b2

    from spikevae.brian._state import brian_state, run_checked
    from spikevae.errors import STOP_REQUESTED

    STOP_REQUESTED.set()
    try:
        with brian_state(), pytest.raises(KeyboardInterrupt):
            b2.set_device("runtime")
            b2.prefs.codegen.target = "numpy"
            run_checked(b2.Network(b2.NeuronGroup(1, "v : 1", dt=1 * b2.ms)), 10 * b2.ms)
    finally:
        STOP_REQUESTED.clear()


@pytest.mark.parametrize("name, value, match", [
    ("log_lr", 50.0, "parameter 'log_lr' ranges over"),
    ("u0", 1e30, "parameter 'u0' ranges over"),
    ("phi", math.inf, "holds NaN or infinite values"),
])
def test_implausible_ipvae_checkpoint_refused(tmp_path, capsys, name, value, match):
    """An iP-VAE whose parameters no neuron or time step can carry ends in one line before any spike is drawn."""
    from spikevae.cli import simulate
    from spikevae.models.ipvae import IPVAE, IPVAEConfig, save

    model = IPVAE(IPVAEConfig(n_latents=8, patch_size=8), seed=1)
    with torch.no_grad():
        getattr(model, name).view(-1)[0] = value
    ck = tmp_path / "bad.pt"
    save(model, ck)
    out = tmp_path / "run"
    assert run_cli(simulate.main, ["--checkpoint", str(ck), "--out", str(out), "--n-stimuli", "2", "--iterations", "2",
                                   "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err
    assert not out.exists()


@pytest.mark.parametrize("command, argv, match", [
    ("simulate", ["--gain-cv", "1e-300"], "gain_cv must be 0 (off) or in [0.001, 10]"),
    ("simulate", ["--scheduler", "not a url"], "not a scheduler address"),
    ("sweep", ["--grid", "beta=1,2", "--scheduler", "host-without-port"], "not a scheduler address"),
    ("simulate_ipvae", ["--period", "1e-300"], "period must be between 0.1 ms and 10 s"),
    ("simulate_ipvae", ["--substeps", "1000000000"], "substeps must be between 1 and 10,000"),
    ("train", ["--lr", "1e300"], "need 0 < lr <= 1"),
    ("train", ["--temp-start", "1e-300"], "temperatures must be in [0.001, 100]"),
    ("train", ["--temp-start", "1e300"], "temperatures must be in [0.001, 100]"),
    ("lca", ["infer", "--simulator", "spiking", "--duration", "1e-7"], "at least the LCA's time constant"),
    ("lca", ["infer", "--simulator", "spiking", "--duration", "1e300"], "at most 100 s"),
])
def test_options_out_of_physical_range_one_line(tmp_path, capsys, command, argv, match):
    """Numeric options checked against physical sense and each other, before any work: one line, exit 2, no files."""
    from spikevae.cli import lca, simulate, sweep, train
    from spikevae.models.checkpoint import default_checkpoint_path, default_ipvae_path

    out = tmp_path / "out"
    main, base = {
        "simulate": (simulate.main, ["--n-stimuli", "2", "--repeats", "1", "--out", str(out), "--quiet"]),
        "simulate_ipvae": (simulate.main, ["--checkpoint", str(default_ipvae_path()), "--n-stimuli", "1",
                                           "--repeats", "1", "--iterations", "1", "--out", str(out), "--quiet"]),
        "sweep": (sweep.main, ["--out", str(out), "--quiet"]),
        "train": (train.main, ["--out", str(tmp_path / "t.pt"), "--quiet"]),
        "lca": (lca.main, []),
    }[command]
    if command == "lca":
        argv = [*argv, "--checkpoint", str(default_checkpoint_path()), "--n-patches", "2", "--out", str(out), "--quiet"]
    assert run_cli(main, [*base, *argv] if command != "lca" else argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err
    assert not out.exists() and not (tmp_path / "t.pt").exists()
