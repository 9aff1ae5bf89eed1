"""Brian2 Poisson layer: counts follow λ, deterministic edges, same spikes on every target."""
import dataclasses

import numpy as np
import pytest
from scipy import stats

from spikevae.records import Presentations, SpikeTrains
from spikevae.spikes import PoissonLayerConfig, rate_dt_report, simulate_poisson
from spikevae.spikes.plan import _chunk_table
from spikevae.spikes.spike_model import SpikeModel, drive_schedule

FAST = PoissonLayerConfig(window=0.05, dt=5e-4, target="numpy")  # 100 steps per window


@pytest.mark.slow
def test_counts_pass_a_poisson_dispersion_test():
    rng = np.random.default_rng(0)
    lam = rng.uniform(0.2, 2.0, (200, 20))
    run = simulate_poisson(lam, FAST, seed=1)
    c = run.counts()
    # Σ (c - λ)² / λ over 4000 independent pairs ~ χ²(4000) under Poisson (Bernoulli steps: 1 - p ≥ 0.98 of it)
    d = ((c - lam) ** 2 / lam).sum()
    p_value = 2 * min(stats.chi2.cdf(d, lam.size), stats.chi2.sf(d, lam.size))
    assert p_value > 1e-3, (d, lam.size)
    # total count against its Poisson sd
    assert abs(c.sum() - lam.sum()) < 4 * np.sqrt(lam.sum())


@pytest.mark.slow
def test_fano_factor_across_repeats_is_one():
    lam1 = np.linspace(0.5, 3.0, 10)[None, :]
    R = 40
    expected = np.repeat(np.tile(lam1, (5, 1)), R, axis=0)  # 5 stimuli x 40 repeats, same λ per stimulus
    run = simulate_poisson(expected, FAST, seed=2)
    c = run.counts().reshape(5, R, 10)
    fano = c.var(1, ddof=1) / c.mean(1)  # per (stimulus, unit), across repeats
    # mean of 50 Fano factors from 40 repeats: sd of one ≈ sqrt(2/39); Bernoulli steps shrink it by p <= 0.03
    assert abs(fano.mean() - 1.0) < 4 * np.sqrt(2 / 39) / np.sqrt(50) + 0.03


@pytest.mark.slow
def test_spike_times_uniform_within_window():
    expected = np.full((100, 4), 2.0)
    cfg = PoissonLayerConfig(window=0.05, gap=0.01, dt=5e-4, target="numpy")
    run = simulate_poisson(expected, cfg, seed=3)
    on, off = run.presentations.onset, run.presentations.offset
    k = np.searchsorted(on, run.time, side="right") - 1
    phase = (run.time - on[k]) / cfg.window
    assert np.all(run.time < off[k] - 1e-12)  # nothing in the gaps
    # phases live on the 100-step grid: compare with the discrete uniform law
    steps = np.rint(phase * 100).astype(int)
    obs = np.bincount(steps, minlength=100)
    assert stats.chisquare(obs).pvalue > 1e-3


def test_rate_zero_silent_and_rate_one_over_dt_every_step():
    cfg = PoissonLayerConfig(window=0.01, dt=1e-3, target="numpy")
    expected = np.array([[0.0, 10.0, 0.0]] * 5)  # rate 1/dt for unit 1: 10 per 10-step window
    run = simulate_poisson(expected, cfg, seed=4)
    assert not np.any(run.unit != 1)
    np.testing.assert_allclose(run.time, np.arange(50) * 1e-3, atol=1e-12)
    assert run.meta["notes"] and "use --dt" in run.meta["notes"][0]


def test_gap_rows_and_trailing_zero_row():
    cfg = PoissonLayerConfig(window=0.004, gap=0.002, dt=1e-3)
    lam = np.array([[1.0, 2.0], [3.0, 4.0]])
    table, slot, _ = _chunk_table(drive_schedule(lam, cfg.window, cfg.dt, cfg.spikes), cfg, 0, 12)
    assert slot == 2  # gcd(4, 2) steps
    hz = np.array([[250.0, 500.0], [750.0, 1000.0]])  # λ / 4 ms
    expect = np.array([hz[0], hz[0], [0, 0], hz[1], hz[1], [0, 0], [0, 0]])
    np.testing.assert_allclose(table, expect)


def test_rate_dt_report_names_units_and_dt():
    cfg = PoissonLayerConfig(window=0.1, dt=1e-3)
    lam = np.zeros((3, 5))
    lam[1, 2] = 20.0  # 200 Hz, rate·dt = 0.2
    msg = rate_dt_report(lam, cfg)
    assert "1 of 5 units" in msg and "0.2" in msg and "use --dt 0.25 ms or smaller" in msg
    assert rate_dt_report(lam * 0.01, cfg) is None


@pytest.mark.parametrize("kwargs,match", [({"window": 0}, "window"), ({"window": 0.1, "dt": 3e-4}, "does not divide"),
                                          ({"gap": -1}, "gap"), ({"target": "gpu"}, "target")])
def test_bad_layer_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PoissonLayerConfig(**kwargs).validate()


def test_same_seed_same_spikes_on_every_target(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    lam = rng.uniform(0, 3, (12, 8))
    # one chunk (one C++ build, ~20 s cold): how the run is cut is test_same_seed_same_spikes_for_any_chunking's
    runs = [simulate_poisson(lam, PoissonLayerConfig(window=0.02, gap=0.005, dt=1e-3, target=t), seed=9,
                             build_dir=tmp_path)
            for t in ("numpy", "cython", "cpp_standalone")]
    assert [r.meta["target"] for r in runs] == ["numpy", "cython", "cpp_standalone"]
    assert len(runs[0].time) > 100
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0].unit, other.unit)
        np.testing.assert_array_equal(runs[0].time, other.time)

    # built once: another seed and other rates of the same shape run the cached binary (no Brian2 build), and
    # their spikes are the numpy target's, so every per-run value reached the binary at run time
    import spikevae.brian.poisson as S

    projects = sorted(p.name for p in tmp_path.iterdir() if (p / "manifest.json").exists())
    assert len(projects) == 1

    def no_build(*args, **kwargs):
        raise AssertionError("the cached project was built again")

    monkeypatch.setattr(S, "_build_standalone", no_build)
    lam2 = rng.uniform(0, 6, (12, 8))
    cfg = PoissonLayerConfig(window=0.02, gap=0.005, dt=1e-3, target="cpp_standalone")
    warm = simulate_poisson(lam2, cfg, seed=10, build_dir=tmp_path)
    ref = simulate_poisson(lam2, dataclasses.replace(cfg, target="numpy"), seed=10)
    assert len(ref.time) > 200 and not np.array_equal(ref.time[:100], runs[0].time[:100])
    np.testing.assert_array_equal(warm.unit, ref.unit)
    np.testing.assert_array_equal(warm.time, ref.time)
    assert sorted(p.name for p in tmp_path.iterdir() if (p / "manifest.json").exists()) == projects
    # the spikes above came through spikevae's two-pass thresholder, not Brian2's template
    code = (tmp_path / projects[0] / "code_objects" / "pvae_units_spike_thresholder_codeobject.cpp").read_text()
    assert "_condition_bytes" in code

    # a compiled run whose clock did not reach the built run length is refused: nothing of it is kept
    import json

    from spikevae.brian import _standalone
    from spikevae.errors import RunInterrupted

    folder = tmp_path / projects[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    with pytest.raises(RunInterrupted, match="stopped before its end"):
        _standalone.run_binary(folder, dict(manifest, duration=manifest["duration"] * 2), {}, ("i",))


def test_counts_method_matches_loop():
    rng = np.random.default_rng(6)
    on = np.arange(6) * 0.03
    off = on + 0.02
    time = np.sort(rng.uniform(0, 0.18, 300).round(3))
    unit = rng.integers(0, 4, 300)
    st = SpikeTrains(unit, time, 4, 0.18, 1e-3, Presentations(np.arange(6), np.zeros(6, int), on, off, np.ones((6, 4))))
    loop = np.zeros((6, 4), int)
    for u, t in zip(unit, time):
        for k in range(6):
            if on[k] - 1e-9 <= t < off[k] - 1e-9:
                loop[k, u] += 1
    np.testing.assert_array_equal(st.counts(), loop)


@pytest.mark.parametrize("spikes", [pytest.param(SpikeModel(), marks=pytest.mark.slow, id="poisson"),
                                    pytest.param(SpikeModel(refractory=0.003), marks=pytest.mark.slow, id="refractory"),
                                    pytest.param(SpikeModel(gamma_order=3, refractory=0.001, spontaneous_hz=4.0),
                                                 id="gamma")])
def test_same_seed_same_spikes_for_any_chunking(spikes):
    """Draws are a function of (seed, unit, absolute step): where the run is cut changes nothing."""
    lam = np.random.default_rng(7).gamma(0.5, 6.0, (5, 24))  # some units near the refractory limit
    runs = [simulate_poisson(lam, PoissonLayerConfig(window=0.02, gap=0.004, dt=5e-4, target="numpy", chunk=c,
                                                     spikes=spikes), seed=11) for c in (2, 2000)]
    assert runs[0].n_spikes > 200
    for r in runs[1:]:
        np.testing.assert_array_equal(r.unit, runs[0].unit)
        np.testing.assert_array_equal(r.time, runs[0].time)
    other = simulate_poisson(lam, PoissonLayerConfig(window=0.02, gap=0.004, dt=5e-4, target="numpy", spikes=spikes),
                             seed=12)
    assert not np.array_equal(other.time, runs[0].time)  # and the seed does matter


def test_stream_draws_are_uniform_and_independent():
    from spikevae.brian._streams import stream_key, uniform_numpy

    key = stream_key(0)
    unit, step = np.meshgrid(np.arange(500), np.arange(400))
    u0 = uniform_numpy(key, unit, step, 0).ravel()
    u1 = uniform_numpy(key, unit, step, 1).ravel()
    assert 0 < u0.min() and u0.max() < 1
    assert stats.kstest(u0, "uniform").pvalue > 1e-3 and stats.kstest(u1, "uniform").pvalue > 1e-3
    # neighbouring units, steps and streams are uncorrelated (sd of r over 2e5 pairs ≈ 0.0022)
    assert abs(np.corrcoef(u0, u1)[0, 1]) < 0.01
    grid = u0.reshape(400, 500)
    assert abs(np.corrcoef(grid[:, 1:].ravel(), grid[:, :-1].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(grid[1:].ravel(), grid[:-1].ravel())[0, 1]) < 0.01
    assert not np.array_equal(uniform_numpy(stream_key(1), unit, step, 0).ravel(), u0)


@pytest.mark.slow
def test_parallel_chunks_equal_serial_and_a_failed_chunk_is_rerun(monkeypatch):
    """Chunks in worker processes give the serial run's spikes; a chunk whose worker fails is reported and run
    again in the parent."""
    import os

    import spikevae.spikes.runner as S

    lam = np.random.default_rng(8).uniform(0, 3, (40, 6))
    cfg = PoissonLayerConfig(window=0.02, gap=0.005, dt=1e-3, target="numpy", chunk=10)
    serial = simulate_poisson(lam, cfg, seed=2)
    parent, real = os.getpid(), S.run_chunk

    def flaky(table, slot, n_steps, dt, key, step0, *args):
        if os.getpid() != parent and step0 == 0:  # the first chunk fails in its worker (a forked child)
            raise RuntimeError("worker lost")
        return real(table, slot, n_steps, dt, key, step0, *args)

    monkeypatch.setattr(S, "run_chunk", flaky)
    par = simulate_poisson(lam, cfg, seed=2, workers=2)
    assert len(serial.time) > 250
    np.testing.assert_array_equal(par.unit, serial.unit)
    np.testing.assert_array_equal(par.time, serial.time)
    assert any("chunk 1 of" in n and "failed in a worker" in n for n in par.meta["notes"])


@pytest.mark.slow
def test_chunks_on_a_dask_scheduler_equal_serial():
    from dask.distributed import LocalCluster

    lam = np.random.default_rng(9).uniform(0, 3, (20, 5))
    cfg = PoissonLayerConfig(window=0.02, dt=1e-3, target="numpy", chunk=5)
    serial = simulate_poisson(lam, cfg, seed=4)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                      silence_logs=40) as cluster:
        dist = simulate_poisson(lam, cfg, seed=4, scheduler=cluster.scheduler_address)
    np.testing.assert_array_equal(dist.unit, serial.unit)
    np.testing.assert_array_equal(dist.time, serial.time)


def test_compiled_runs_stay_within_brian2_standalone_clock_tolerance():
    """Brian2's standalone network matches clocks to 1e-14 s, which one rounding of t exceeds past 64 s: every
    compiled run is at most 64 s long, and as long as the ladder allows."""
    from spikevae.brian.poisson import STANDALONE_MAX_SECONDS, _ladder, _piece_rows

    assert STANDALONE_MAX_SECONDS <= 64.0 and np.spacing(64.0 - 1e-9) < 1e-14 < np.spacing(64.0)
    for slot, dt in [(1000, 1e-4), (10, 1e-2), (1, 1e-7), (500, 1e-4), (640, 1e-4)]:
        rows = _piece_rows(slot, dt)
        assert rows * slot * dt <= STANDALONE_MAX_SECONDS + 1e-9 and _ladder(rows) == rows
        assert _ladder(rows + 1) * slot * dt > STANDALONE_MAX_SECONDS  # the next ladder length would not fit
    with pytest.raises(ValueError, match="at most 64 s between rate changes"):
        _piece_rows(1000, 0.1)


@pytest.mark.slow
def test_two_pass_thresholder_equals_brians_own_with_refractoriness(tmp_path):
    """The template's other branch (``refractory=``, which spikevae's layer does not use) and a group whose size
    is not a multiple of the eight conditions read at once: the same spikes as Brian2's thresholder."""
    from spikevae.brian._state import brian_state, two_pass_thresholder

    with brian_state() as b2:
        b2.set_device("cpp_standalone", directory=str(tmp_path), build_on_run=False, with_output=False)
        try:
            eqs = "dv/dt = (drive - v) / (5*ms) : 1 (unless refractory)\ndrive : 1 (constant)"
            groups = [b2.NeuronGroup(13, eqs, threshold="v > 1", reset="v = 0", refractory=3 * b2.ms,
                                     method="exact", dt=0.1 * b2.ms) for _ in range(2)]
            two_pass_thresholder(groups[1])
            mons = [b2.SpikeMonitor(g) for g in groups]
            for g in groups:
                g.drive = "1.05 + 0.4 * i / 13"
            b2.Network(groups, mons).run(200 * b2.ms)
            b2.device.build(directory=str(tmp_path), compile=True, run=True, with_output=False)
            ref, two = [(np.asarray(m.i[:]), np.asarray(m.t_[:])) for m in mons]
        finally:
            b2.device.reinit()
            b2.device.activate()
    assert "_condition_bytes" in "".join(f.read_text() for f in (tmp_path / "code_objects").glob("*thresholder*.cpp"))
    assert len(ref[0]) > 100 and set(ref[0]) == set(range(13))
    np.testing.assert_array_equal(two[0], ref[0])
    np.testing.assert_array_equal(two[1], ref[1])


@pytest.mark.slow
def test_a_chunk_longer_than_64_s_gives_numpys_spikes_on_cpp_standalone(tmp_path):
    """The case that broke before chunks were cut at 64 s: 120 s in one chunk (one compiled run gave other spikes
    from 64 s on)."""
    lam = np.random.default_rng(1).uniform(0, 8, (1200, 3))
    ref = simulate_poisson(lam, PoissonLayerConfig(window=0.1, dt=1e-2, target="numpy"), seed=1)
    run = simulate_poisson(lam, PoissonLayerConfig(window=0.1, dt=1e-2, target="cpp_standalone"), seed=1,
                           build_dir=tmp_path)
    np.testing.assert_array_equal(run.unit, ref.unit)
    np.testing.assert_array_equal(run.time, ref.time)


def test_unit_major_order_equals_a_two_key_sort_for_sorted_and_unsorted_spikes():
    rng = np.random.default_rng(11)
    steps, unit = rng.integers(0, 5000, 3000), rng.integers(0, 40, 3000)
    keep = np.unique(steps * 40 + unit, return_index=True)[1]  # one spike per (unit, step)
    steps, unit = steps[keep], unit[keep]
    for order in (np.lexsort((unit, steps)), rng.permutation(len(steps))):  # time-sorted, then shuffled
        st = SpikeTrains(unit[order], steps[order] * 1e-3, 40, 5.0, 1e-3, None, {})
        ref = np.lexsort((st.time, st.unit))
        times, ends = st.unit_major()
        np.testing.assert_array_equal(times, st.time[ref])
        np.testing.assert_array_equal(ends, np.cumsum(np.bincount(st.unit, minlength=40)))
        for k, tr in enumerate(st.trains()):
            np.testing.assert_array_equal(tr, np.sort(st.time[st.unit == k]))


@pytest.mark.slow
def test_auto_target_falls_back_with_a_note(monkeypatch):
    """``auto`` whose first target cannot build here runs the next one, with the same spikes, and says so in the
    run's notes (serial chunks and the parallel path share one fallback)."""
    import spikevae.spikes.runner as S

    lam = np.random.default_rng(2).uniform(0, 3, (6, 5))
    cfg = PoissonLayerConfig(window=0.02, dt=1e-3, target="numpy")
    ref = simulate_poisson(lam, cfg, seed=4)
    monkeypatch.setattr(S, "_AUTO_ORDER", ("cython", "numpy"))
    real = S.run_chunk

    def broken(table, slot, n_steps, dt, key, step0, target, *rest):
        if target == "cython":
            raise RuntimeError("no compiler here\nsecond line")
        return real(table, slot, n_steps, dt, key, step0, target, *rest)

    monkeypatch.setattr(S, "run_chunk", broken)
    run = simulate_poisson(lam, PoissonLayerConfig(window=0.02, dt=1e-3, target="auto"), seed=4)
    assert run.meta["target"] == "numpy"
    assert run.meta["notes"][-1] == "Brian2 target cython did not work here (RuntimeError: no compiler here); using numpy"
    np.testing.assert_array_equal(run.time, ref.time)
    np.testing.assert_array_equal(run.unit, ref.unit)
    # the parallel path settles its target before the workers start: the same fallback, the same spikes
    monkeypatch.setattr(S, "_AUTO_ORDER", ("cpp_standalone", "numpy"))

    def no_build(*args, **kwargs):
        raise OSError("no C++ toolchain")

    monkeypatch.setattr(S, "prepare_standalone", no_build)
    par = simulate_poisson(lam, PoissonLayerConfig(window=0.02, dt=1e-3, target="auto", chunk=2), seed=4, workers=2)
    assert par.meta["target"] == "numpy"
    assert par.meta["notes"][-1] == "Brian2 target cpp_standalone did not work here (OSError: no C++ toolchain); using numpy"
    np.testing.assert_array_equal(par.time, ref.time)


def test_time_order_keeps_a_monitors_order_and_sorts_anything_else():
    from spikevae.spikes.plan import _time_ordered

    rng = np.random.default_rng(3)
    steps, unit = rng.integers(0, 400, 2000), rng.integers(0, 30, 2000)
    keep = np.unique(steps * 30 + unit, return_index=True)[1]  # one spike per (unit, step), in (step, unit) order
    steps, unit = steps[keep], unit[keep]
    u, st = _time_ordered(unit, steps)
    assert u is unit and st is steps  # already ordered: no copy
    perm = rng.permutation(len(steps))
    u, st = _time_ordered(unit[perm], steps[perm])
    np.testing.assert_array_equal(u, unit)
    np.testing.assert_array_equal(st, steps)
