"""spikevae.workflows._beside.Beside: work in a forked process gives the serial result, its errors, and never outlives
the block that started it."""
import os
import time

import numpy as np
import pytest

from spikevae.workflows._beside import Beside


def _square_sum(a):
    return float(np.square(a).sum()), os.getpid()


def _fail(path):
    open(path)


def _late_write(path):
    time.sleep(0.6)
    with open(path, "w") as f:
        f.write("late")
    return path


@pytest.mark.parametrize("fork", [True, False])
def test_result_and_errors_as_if_called_here(fork, tmp_path):
    a = np.arange(10.0)
    with Beside(_square_sum, a, fork=fork) as job:
        value, pid = job.result()
    assert value == 285.0 and job.forked is fork and (pid != os.getpid()) is fork
    with Beside(_fail, tmp_path / "missing", fork=fork) as job, pytest.raises(FileNotFoundError, match="missing"):
        job.result()


def test_leaving_the_block_early_ends_the_process_before_it_writes(tmp_path):
    target = tmp_path / "late.txt"
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), Beside(_late_write, target, fork=True):
        raise KeyboardInterrupt  # the caller fails before asking for the result
    assert time.perf_counter() - t0 < 0.5  # ended, not waited for
    time.sleep(1.0)
    assert not target.exists()


def test_figures_drawn_beside_equal_figures_drawn_here(tmp_path):
    """simulate draws its figures in a forked process while it writes the NWB file: the same PNG bytes."""
    from spikevae.records import Presentations, SpikeTrains
    from spikevae.workflows.simulate import _draw_figures

    rng = np.random.default_rng(0)
    lam = rng.gamma(0.5, 2.0, (6, 40))
    onset = np.arange(6) * 0.15
    pres = Presentations(np.arange(6), np.zeros(6, int), onset, onset + 0.1, lam)
    n = 400
    st = SpikeTrains(rng.integers(0, 40, n), np.sort(rng.uniform(0, 0.9, n)), 40, 0.9, 1e-4, pres, {})
    counts = rng.poisson(lam).astype(float)
    paths = {}
    for fork in (True, False):
        out = tmp_path / str(fork)
        (out / "figures").mkdir(parents=True)
        with Beside(_draw_figures, out, st, counts, lam, fork=fork) as job:
            paths[fork] = job.result()
    assert set(paths[True]) == {"raster", "counts_vs_expected"}
    for name in paths[True]:
        assert paths[True][name].read_bytes() == paths[False][name].read_bytes()


def test_raster_title_counts_the_spikes_it_shows():
    """The raster of a long run shows its first presentations: its title counts those spikes, not the run's."""
    from spikevae import plots
    from spikevae.records import Presentations, SpikeTrains

    rng = np.random.default_rng(1)
    onset = np.arange(30) * 0.1
    pres = Presentations(np.arange(30), np.zeros(30, int), onset, onset + 0.1, np.ones((30, 200)))
    t = np.sort(rng.uniform(0, 3.0, 5000))
    st = SpikeTrains(rng.integers(0, 200, 5000), t, 200, 3.0, 1e-4, pres, {})
    fig = plots.raster(st, max_units=50, max_presentations=10)
    order = np.argsort(-np.bincount(st.unit, minlength=200), kind="stable")[:50]
    shown = int(((st.time < 1.0) & np.isin(st.unit, order)).sum())
    assert fig.axes[0].get_title().startswith(f"{shown} spikes shown: 50 of 200 Brian2 Poisson units, 10 presentations")
    assert shown < st.n_spikes
    plots._mpl().close(fig)
