"""The producer interface: every producer's spikes on its stated time base, counted by the one rule, and read out
the same way; the one run-folder writer."""
import numpy as np
import pytest
from conftest import assert_dandi_clean

from spikevae.data import Preprocessing
from spikevae.lca import LCAConfig, lca_fixed_point, normalise_atoms
from spikevae.models.ipvae import IPVAE, IPVAEConfig
from spikevae.spikes import PoissonLayerConfig
from spikevae.spikes.producers import (
    IPVAEProducer,
    LCAProducer,
    PoissonProducer,
    Produced,
    SpikingLCAProducer,
    repeat_major,
)

LAYER = PoissonLayerConfig(window=0.02, gap=0.01, dt=1e-3, target="numpy")


@pytest.fixture(scope="module")
def atoms():
    return normalise_atoms(np.random.default_rng(0).standard_normal((64, 12)))


def _producers(tiny_checkpoint, atoms):
    from spikevae.brian.ipvae import IPVAECircuitConfig
    from spikevae.models.trained import load_model

    prep = Preprocessing(patch_size=8)
    ip = IPVAE(IPVAEConfig(n_latents=10, patch_size=8, init_scale=0.05), seed=2)
    return {
        "pvae": PoissonProducer(load_model(tiny_checkpoint), LAYER),
        "lca soft": LCAProducer(atoms, prep, LCAConfig(lam=0.3, threshold="soft"), gain=2.0, layer=LAYER),
        "lca nonneg": LCAProducer(atoms, prep, LCAConfig(lam=0.3, threshold="nonneg"), gain=2.0, layer=LAYER),
        "ipvae circuit": IPVAEProducer(ip, 4, IPVAECircuitConfig(period=0.005, substeps=5), prep),
        "spiking lca": SpikingLCAProducer(atoms, prep, LCAConfig(lam=0.3, threshold="soft"), window=0.05),
    }


def test_every_producer_gives_spike_trains_on_its_time_base_counted_by_the_one_rule(tiny_checkpoint, atoms,
                                                                                      small_patches):
    """n × repeats presentations, repeat-major, each window where the time base puts it; every spike lies in a
    window; the response is SpikeTrains.counts(); the code has one row per stimulus and the producer's units."""
    x = small_patches.val[:5].astype(np.float64)
    n = len(x)
    for name, prod in _producers(tiny_checkpoint, atoms).items():
        repeats = 60 if name == "pvae" else 3  # the tiny P-VAE's λ are small: enough presentations for spikes
        out = prod.produce(x, repeats, seed=4)
        assert isinstance(out, Produced), name
        st, tb = out.spikes, prod.time_base
        p = st.presentations
        stim, rep = repeat_major(n, repeats)
        np.testing.assert_array_equal(p.stimulus, stim, err_msg=name)
        np.testing.assert_array_equal(p.repeat, rep, err_msg=name)
        np.testing.assert_allclose(p.onset, np.arange(n * repeats) * tb.period, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(p.offset - p.onset, tb.window, atol=1e-12, err_msg=name)
        assert st.n_units == prod.n_units and st.dt == pytest.approx(tb.dt), name
        c = st.counts()
        assert c.shape == (n * repeats, prod.n_units), name
        assert st.n_spikes > 0 and c.sum() == st.n_spikes, name  # no spike outside a window
        assert out.code.shape == (n, prod.n_units), name
        assert prod.decode(out.code).shape == (n, 64), name


@pytest.mark.slow
def test_rate_producers_drive_the_layer_with_their_code(tiny_checkpoint, atoms, small_patches):
    """A rate producer's code is λ, the expected count per window: the LCA's is gain × its converged code (ON and
    OFF halves for signed codes), and decoding λ gives Φa back exactly; the mean counts over many repeats are λ."""
    x = small_patches.val[:4].astype(np.float64)
    prods = _producers(tiny_checkpoint, atoms)
    soft = prods["lca soft"]
    a = lca_fixed_point(x.reshape(4, -1), atoms, LCAConfig(lam=0.3, threshold="soft")).codes
    lam = soft.rates(x)
    np.testing.assert_allclose(lam, 2.0 * np.concatenate([np.clip(a, 0, None), np.clip(-a, 0, None)], 1), rtol=1e-12)
    np.testing.assert_allclose(soft.decode(lam), a @ atoms.T, rtol=1e-10, atol=1e-12)
    out = soft.produce(x, 400, seed=1)
    mean = out.spikes.counts().reshape(400, 4, -1).mean(0)
    se = np.sqrt(np.maximum(lam, 1e-3) / 400)  # Poisson counts: s.e. of a mean of 400
    assert np.all(np.abs(mean - lam) <= 5 * se + 1e-9)


def test_spiking_lca_producer_reads_out_its_code(atoms, small_patches):
    """The spiking LCA's code is τ·count/window per unit (ON minus OFF), close to the converged analog code."""
    x = small_patches.val[:3].astype(np.float64).reshape(3, -1)
    cfg = LCAConfig(lam=0.3, threshold="soft")
    prod = SpikingLCAProducer(atoms, Preprocessing(patch_size=8), cfg, window=0.8)
    out = prod.produce(x, 1, seed=0)
    analog = lca_fixed_point(x, atoms, cfg).codes
    assert np.abs(prod.codes(out.code) - analog).mean() < 0.1 * np.abs(analog).mean() + 0.02


def test_bad_producer_input_is_refused(tiny_checkpoint, atoms):
    from spikevae.errors import ArgumentError

    prods = _producers(tiny_checkpoint, atoms)
    with pytest.raises(ArgumentError, match="repeats"):
        prods["lca soft"].produce(np.zeros((2, 8, 8)), 0)
    with pytest.raises(ArgumentError, match="stimuli"):
        prods["spiking lca"].produce(np.zeros(5), 1)
    with pytest.raises(ArgumentError, match="gain"):
        LCAProducer(atoms, Preprocessing(patch_size=8), gain=-1.0)
    with pytest.raises(ArgumentError, match="iterations"):
        IPVAEProducer(IPVAE(IPVAEConfig(n_latents=4, patch_size=4)), 0)


@pytest.mark.slow
def test_one_writer_for_every_producer(tmp_path, tiny_checkpoint, atoms, small_patches):
    """The run-folder writer takes any producer's spikes: the NWB file reads back with the same spikes, names the
    producer's units and the command, and passes DANDI's inspection."""
    from spikevae.io import RunFolder, read_nwb
    from spikevae.io.nwb import UNIT_DESCRIPTION
    from spikevae.workflows.run_folder import write_run_files

    x = small_patches.val[:2].astype(np.float64)
    for name, prod in _producers(tiny_checkpoint, atoms).items():
        st = prod.produce(x, 2, seed=3).spikes
        out = tmp_path / name.replace(" ", "_")
        with RunFolder(out, "simulate") as files:
            paths = write_run_files(files.path, st, {"n_spikes": st.n_spikes}, command="simulate", neo=True)
        assert sorted(paths) == ["nix", "nwb", "summary"], name
        back = read_nwb(out / "spikes.nwb")
        np.testing.assert_array_equal(back.unit, st.unit, err_msg=name)
        np.testing.assert_allclose(back.time, st.time, atol=1e-12, err_msg=name)
        from pynwb import NWBHDF5IO

        with NWBHDF5IO(str(out / "spikes.nwb"), "r") as io:
            f = io.read()
            assert f.source_script_file_name == "spikevae/cli/simulate.py", name
            key = next(k for k in UNIT_DESCRIPTION if st.meta["model"].startswith(k))
            assert f.units.description == UNIT_DESCRIPTION[key], name
        assert_dandi_clean(out / "spikes.nwb")


def test_simulate_runs_an_lca_dictionary_through_the_same_layer(tmp_path, capsys, atoms, small_patches):
    """``simulate --dictionary``: the LCA's units through the Poisson layer at the dictionary's λ, into the same
    files; the NWB file reads back with λ = gain × the rectified converged code; bad combinations: one line, exit 2."""
    from conftest import run_cli

    from spikevae.cli import simulate
    from spikevae.io import read_nwb, save_dictionary

    prep = Preprocessing(patch_size=8)
    dic = tmp_path / "d.npz"
    save_dictionary(dic, atoms, prep, {"lca_config": {"lam": 0.3, "threshold": "soft"}})
    out = tmp_path / "run"
    argv = ["--dictionary", str(dic), "--stimuli", "white-noise", "--n-stimuli", "4", "--repeats", "2",
            "--window", "20", "--dt", "1", "--target", "numpy", "--gain", "3", "--no-neo", "--quiet", "--out", str(out)]
    assert run_cli(simulate.main, argv) == 0
    st = read_nwb(out / "spikes.nwb")
    assert st.n_units == 2 * atoms.shape[1] and len(st.presentations) == 8
    lam = st.presentations.expected[:4]
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(out / "spikes.nwb"), "r") as io:
        f = io.read()
        imgs = np.stack([f.stimulus_template["stimuli"][f"stimulus_{j:06d}"].data[:] for j in range(4)])
    ref = LCAProducer(atoms, prep, LCAConfig(lam=0.3, threshold="soft"), gain=3.0).rates(imgs)
    np.testing.assert_allclose(lam, ref, rtol=1e-5, atol=1e-6)  # the stimuli are stored as float32
    assert run_cli(simulate.main, [*argv[:-1], str(tmp_path / "r2"), "--checkpoint", str(dic)]) == 2
    assert "at most one of --checkpoint and --dictionary" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()
