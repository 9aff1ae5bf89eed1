"""Spikes into other simulators: a Brian2 SpikeGeneratorGroup and a PyNN SpikeSourceArray (NEST) replay a run's
spikes exactly, and NEST's own Poisson generator, an outside implementation, gives the layer's count law."""
import contextlib
import warnings

import numpy as np
import pytest
from scipy import stats

from spikevae.errors import ArgumentError
from spikevae.records import Presentations, SpikeTrains
from spikevae.spikes import PoissonLayerConfig, simulate_poisson


def _run(seed=1):
    lam = np.random.default_rng(0).uniform(0.5, 3.0, (20, 8))
    return simulate_poisson(lam, PoissonLayerConfig(window=0.05, gap=0.02, dt=1e-4, target="numpy"), seed=seed)


@contextlib.contextmanager
def _nest(timestep_ms=0.1):
    """pyNN.nest set up and torn down (its import warns about building extensions it does not need here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyNN.nest as sim

        sim.setup(timestep=timestep_ms)
        try:
            yield sim
        finally:
            sim.end()


def test_a_brian2_spike_generator_replays_the_run():
    import brian2 as b2

    st = _run()
    g = st.to_brian()
    mon = b2.SpikeMonitor(g)
    b2.Network(g, mon).run((st.t_stop + 0.001) * b2.second)
    np.testing.assert_array_equal(np.asarray(mon.i[:]), st.unit)
    np.testing.assert_allclose(np.asarray(mon.t_[:]), st.time, atol=1e-12)
    np.testing.assert_array_equal(g.presentations.onset, st.presentations.onset)


def test_overlapping_presentations_are_refused():
    st = _run()
    p = st.presentations
    bad = Presentations(p.stimulus, p.repeat, p.onset, p.offset + 0.03, p.expected)  # every window into the next
    odd = SpikeTrains(st.unit, st.time, st.n_units, st.t_stop, st.dt, bad, st.meta)
    with pytest.raises(ArgumentError, match="overlaps the next one"):
        odd.to_brian()
    with pytest.raises(ArgumentError, match="overlaps the next one"), _nest() as sim:
        odd.to_pynn(sim)


def test_a_pynn_spike_source_array_replays_the_run_in_nest():
    st = _run()
    with _nest() as sim:
        pop = st.to_pynn(sim)
        pop.record("spikes")
        sim.run(st.t_stop * 1e3 + 1.0)
        got = [np.asarray(s.magnitude) for s in pop.get_data().segments[0].spiketrains]
        assert pop.annotations["presentation_onset_ms"][1] == pytest.approx(st.presentations.onset[1] * 1e3)
    for g, t in zip(got, st.trains()):
        np.testing.assert_allclose(g, t * 1e3, atol=1e-9)


@pytest.mark.slow
def test_nest_poisson_generator_gives_the_layers_count_law():
    """The same rate through NEST's poisson_generator (to parrot neurons) and through the Brian2 layer: counts per
    100-ms window of 2,000 units at 30 Hz, the two count histograms alike (χ² two-sample, p > 1e-3) and each mean
    within 3 s.e. of λ = 3."""
    import nest

    nest.set_verbosity("M_ERROR")
    nest.ResetKernel()
    nest.SetKernelStatus({"resolution": 0.1, "rng_seed": 7})
    K, rate, W, n = 2000, 30.0, 0.1, 20
    gen = nest.Create("poisson_generator", params={"rate": rate})
    parrots = nest.Create("parrot_neuron", K)
    rec = nest.Create("spike_recorder")
    nest.Connect(gen, parrots)
    nest.Connect(parrots, rec)
    nest.Simulate(n * W * 1e3 + 1.0)
    ev = nest.GetStatus(rec, "events")[0]
    t_ms = np.asarray(ev["times"]) - 1.0  # a parrot repeats its input one minimal delay later
    unit = np.asarray(ev["senders"]) - np.min(parrots.tolist())
    win = np.floor(t_ms / (W * 1e3) + 1e-9).astype(int)
    ok = (win >= 0) & (win < n)
    c_nest = np.zeros((n, K), int)
    np.add.at(c_nest, (win[ok], unit[ok]), 1)
    c_b2 = simulate_poisson(np.full((n, K), rate * W), PoissonLayerConfig(window=W, dt=1e-4, target="cython"),
                            seed=3).counts()
    for c in (c_nest, c_b2):
        assert abs(c.mean() - rate * W) < 3 * c.std(ddof=1) / np.sqrt(c.size), c.mean()
    top = 10
    h = np.array([np.bincount(np.minimum(c.ravel(), top), minlength=top + 1) for c in (c_nest, c_b2)])
    h = h[:, h.sum(0) >= 10]
    assert stats.chi2_contingency(h)[1] > 1e-3, h
