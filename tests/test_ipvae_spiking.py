"""The iP-VAE's Brian2 circuit against the torch iteration: equal in distribution, same seed → same spikes."""
import math

import numpy as np
import pytest
import torch
from conftest import assert_dandi_clean

from spikevae.brian.ipvae import IPVAECircuitConfig, ipvae_brian, iteration_counts
from spikevae.errors import ArgumentError
from spikevae.models.ipvae import IPVAE, IPVAEConfig


def _model():
    m = IPVAE(IPVAEConfig(n_latents=24, patch_size=4, init_scale=0.15), seed=1)
    with torch.no_grad():
        m.log_lr.fill_(math.log(0.5))
    return m


def _patches(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 16)).astype(np.float32)


def test_circuit_matches_the_torch_iteration_in_distribution():
    """Per iteration, the read-out's squared error and fraction of zeros (means over 300 patches) of the Brian2
    circuit and of the torch iteration agree within 3 standard errors; every drawn spike was emitted."""
    model, x, T = _model(), _patches(300), 6
    res = ipvae_brian(model, x, T, IPVAECircuitConfig(substeps=40), seed=0)
    assert res.clipped_spikes == 0
    assert np.array_equal(iteration_counts(res.spikes, T), res.counts)  # the spike times carry the counts
    with torch.no_grad():
        tr = model.infer(torch.as_tensor(x), T, 0.0, torch.Generator().manual_seed(0))
    phi = model.phi.detach().double().numpy()

    def per_patch(z):
        return ((x - z @ phi.T) ** 2).sum(1), (z == 0).mean(1)

    for t in range(1, T + 1):
        for a, b in zip(per_patch(res.counts[t].astype(float)), per_patch(tr.spikes[t - 1].double().numpy())):
            se = math.hypot(a.std(ddof=1), b.std(ddof=1)) / math.sqrt(len(a))
            assert abs(a.mean() - b.mean()) < 3 * se, (t, a.mean(), b.mean(), se)
    assert 0.3 < (res.counts[1:] == 0).mean() < 0.9  # a regime where both spikes and silence occur


def test_synapses_and_dense_inhibition_give_the_same_spikes():
    model, x = _model(), _patches(6, seed=2)
    a = ipvae_brian(model, x, 4, IPVAECircuitConfig(substeps=20, inhibition="dense"), seed=5)
    b = ipvae_brian(model, x, 4, IPVAECircuitConfig(substeps=20, inhibition="synapses"), seed=5)
    assert len(a.spikes.time) > 50
    assert np.array_equal(a.spikes.unit, b.spikes.unit) and np.array_equal(a.spikes.time, b.spikes.time)
    np.testing.assert_allclose(a.u, b.u, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_same_seed_same_spikes_on_numpy_and_cython():
    model, x = _model(), _patches(20, seed=3)
    a = ipvae_brian(model, x, 5, IPVAECircuitConfig(substeps=20, target="numpy"), seed=7)
    b = ipvae_brian(model, x, 5, IPVAECircuitConfig(substeps=20, target="cython"), seed=7)
    assert np.array_equal(a.spikes.unit, b.spikes.unit) and np.array_equal(a.spikes.time, b.spikes.time)


def test_counts_beyond_the_substeps_are_reported_and_the_spikes_export(tmp_path):
    from spikevae.io import read_nwb, write_nwb

    model, x = _model(), _patches(4, seed=4) * 3
    with torch.no_grad():
        model.u0.fill_(2.0)  # e² ≈ 7.4 spikes per period at the start
    res = ipvae_brian(model, x, 2, IPVAECircuitConfig(substeps=2), seed=0)
    assert res.clipped_spikes > 0 and res.counts.max() <= 2
    back = read_nwb(write_nwb(tmp_path / "ip.nwb", res.spikes))
    assert np.array_equal(back.unit, res.spikes.unit) and np.allclose(back.time, res.spikes.time, atol=1e-9)


def test_bad_arguments():
    model = _model()
    with pytest.raises(ArgumentError, match="T must be >= 1"):
        ipvae_brian(model, _patches(1), 0)
    with pytest.raises(ArgumentError, match="period"):
        ipvae_brian(model, _patches(1), 1, IPVAECircuitConfig(period=0.0))
    with pytest.raises(ArgumentError, match="pixels"):
        ipvae_brian(model, np.zeros((1, 9)), 1)


def test_simulate_runs_an_ipvae_checkpoint_as_its_circuit(tmp_path, capsys):
    """``simulate --checkpoint ipvae.pt``: the circuit's spikes over the iterations, in NWB with the stimuli;
    a command that needs an encoder refuses the same file in one line."""
    import json

    from spikevae.cli.evaluate import main as evaluate_main
    from spikevae.cli.simulate import main
    from spikevae.data import Preprocessing
    from spikevae.io import read_nwb
    from spikevae.models.ipvae import save

    model = IPVAE(IPVAEConfig(n_latents=16, patch_size=8, init_scale=0.05), seed=2)
    ck = tmp_path / "ip.pt"
    save(model, ck, preprocessing=Preprocessing(patch_size=8, downsample=1, whiten_f0=0.3).to_dict())
    out = tmp_path / "run"
    assert main(["--checkpoint", str(ck), "--out", str(out), "--stimuli", "white-noise", "--n-stimuli", "3",
                 "--repeats", "2", "--iterations", "5", "--substeps", "20", "--no-neo", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    st = read_nwb(out / "spikes.nwb")
    assert_dandi_clean(out / "spikes.nwb")
    assert summary["n_presentations"] == 6 and summary["n_iter"] == 5 and len(st.time) == summary["n_spikes"] > 0
    assert list(st.presentations.stimulus) == [0, 1, 2, 0, 1, 2] and list(st.presentations.repeat) == [0] * 3 + [1] * 3
    assert st.t_stop == pytest.approx(6 * 6 * 0.01)  # 6 presentations of 5 + 1 periods of 10 ms
    assert "iP-VAE circuit: 6 presentations" in capsys.readouterr().out
    assert evaluate_main(["--checkpoint", str(ck), "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds an iP-VAE" in err[0]


@pytest.mark.slow
def test_rf_mapping_of_an_ipvae_through_its_circuit(tmp_path, capsys):
    """``rf_mapping.py --checkpoint ipvae.pt``: units mapped by their circuit's spikes over the iterations; the STA
    of the response (the spikes of iterations 1..T) is the spike-weighted mean of the per-iteration STAs, and the
    battery's rows are written."""
    import csv

    from conftest import load_script

    from spikevae.data import Preprocessing
    from spikevae.models.ipvae import save

    model = IPVAE(IPVAEConfig(n_latents=16, patch_size=8, init_scale=0.05), seed=2)
    ck = tmp_path / "ip.pt"
    save(model, ck, preprocessing=Preprocessing(patch_size=8, downsample=1, whiten_f0=0.3).to_dict())
    rf = load_script("simulations/rf_mapping.py")
    out = tmp_path / "rf"
    assert rf.main(["--checkpoint", str(ck), "--out", str(out), "--frames", "300", "--sparse-frames", "64",
                    "--iterations", "3", "--fit-units", "2", "--orientations", "4", "--phases", "4", "--quiet"]) == 0
    with np.load(out / "sta_lags.npz") as z:  # closed here, not whenever the collector runs
        lags = {k: z[k] for k in z.files}
    with np.load(out / "tuning.npz", allow_pickle=False) as z:  # 2 grating repeats: error bars over them
        assert int(z["n_repeats"]) == 2 and z["sem"].shape == z["response"].shape and np.isfinite(z["sem"]).all()
    assert lags["sta"].shape == (4, 16, 8, 8) and (out / "figures" / "sta_lags.png").is_file()
    n_t = lags["spikes"][1:, :, None, None]
    np.testing.assert_allclose((n_t * lags["sta"][1:]).sum(0) / n_t.sum(0), np.load(out / "sta.npy"), rtol=1e-9,
                               atol=1e-12)
    assert lags["spikes"][0].sum() > 0  # the prior period spikes too, and is kept apart
    with open(out / "properties.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 16
    assert "mapped 16 ipvae units" in capsys.readouterr().out
