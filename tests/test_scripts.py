"""Smoke tests of the runnable scripts with tiny arguments."""
import csv

import numpy as np
import pytest
from conftest import assert_dandi_clean, load_script, run_cli


@pytest.mark.slow
def test_rf_mapping_smoke(tmp_path, tiny_checkpoint, capsys, caplog):
    rf = load_script("simulations/rf_mapping.py")
    out = tmp_path / "rf"
    assert rf.main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--frames", "300", "--sparse-frames", "128",
                    "--grating-repeats", "1", "--window", "5", "--dt", "1", "--target", "numpy", "--fit-units", "4",
                    "--orientations", "4", "--phases", "4", "--quiet"]) == 0
    with open(out / "gabor_fits.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert 1 <= len(rows) <= 4 and {"r2", "nx", "ny", "osi", "corr_sta_encoder"} <= set(rows[0])
    assert np.load(out / "sta.npy").shape == (16, 8, 8)
    with np.load(out / "tuning.npz", allow_pickle=False) as z:  # one repeat: no error bars, and no pickled None
        assert "sem" not in z.files and int(z["n_repeats"]) == 1
    for fig in ("rf_grid", "nx_ny", "tuning", "on_off"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
    from spikevae.io import read_nwb

    assert len(read_nwb(out / "white_noise.nwb").presentations) == 300
    assert "mapped 16 pvae units" in capsys.readouterr().out
    assert "STAs are noise-dominated" in caplog.text and "--frames" in caplog.text  # 300 frames: too few
    # the V1 battery: one row per unit; the grating protocol is in the NWB trials, and the tuning recomputed from
    # the file alone equals the run's (same spikes, same definitions)
    with open(out / "properties.csv") as fh:
        props = list(csv.DictReader(fh))
    assert len(props) == 16 and {"circular_variance", "sf_bandwidth_octaves", "ssi", "f1_f0", "weak"} <= set(props[0])
    assert sum(r["size_measured"] == "True" for r in props) == len(rows)
    assert "| surround-suppression index |" in (out / "summary.md").read_text()
    for f in ("white_noise", "gratings", "size"):
        assert_dandi_clean(out / f"{f}.nwb")
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(out / "gratings.nwb", "r") as io:  # the properties on the units, described, read back
        units = io.read().units
        for key in ("orientation_bandwidth_deg", "ssi", "peak_response", "gabor_r2"):
            np.testing.assert_array_equal(units[key].data[:], [float(r[key]) for r in props])
        assert "deg" in units["orientation_bandwidth_deg"].description
    tun = load_script("analysis/tuning_from_nwb.py")
    assert tun.main([str(out / "gratings.nwb"), "--out", str(tmp_path / "tun"), "--quiet"][:-1]) == 0
    with open(tmp_path / "tun" / "properties.csv") as fh:
        again = list(csv.DictReader(fh))
    for key in ("circular_variance", "orientation_bandwidth_deg", "peak_sf_cpp", "f1_f0"):
        np.testing.assert_array_equal([float(r[key]) for r in again], [float(r[key]) for r in props])
    # the peak response in the RF run's unit (spikes/s), and no folder the command wrote nothing into
    np.testing.assert_allclose([float(r["peak_response"]) for r in again], [float(r["peak_response"]) for r in props])
    assert {r["response_unit"] for r in again} == {"spikes/s"} and not (tmp_path / "tun" / "figures").exists()
    capsys.readouterr()
    # the LCA's mapping into the same folder replaces the P-VAE's as a whole: no white_noise.nwb survives beside it
    lca = ["--model", "lca", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--frames", "300",
           "--sparse-frames", "128", "--grating-repeats", "1", "--fit-units", "4", "--orientations", "4", "--phases", "4",
           "--quiet"]
    assert rf.main(lca) == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "white_noise.nwb").is_file()
    assert rf.main(lca + ["--overwrite"]) == 0
    # the LCA's signed code is mapped as ON and OFF rectified channels: 2 x 16
    assert not (out / "white_noise.nwb").exists() and np.load(out / "sta.npy").shape == (32, 8, 8)


def test_rf_mapping_bad_input(tmp_path, capsys):
    rf = load_script("simulations/rf_mapping.py")
    assert rf.main(["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_analysis_scripts_on_a_simulated_run(tmp_path, tiny_checkpoint, capsys):
    import json

    from spikevae.cli.simulate import main as simulate

    run = tmp_path / "run"
    assert simulate(["--checkpoint", str(tiny_checkpoint), "--out", str(run), "--n-stimuli", "3", "--repeats", "4",
                     "--window", "20", "--dt", "1", "--target", "numpy", "--quiet", "--no-neo"]) == 0
    stats = load_script("analysis/spike_statistics.py")
    assert stats.main([str(run / "spikes.nwb"), "--out", str(tmp_path / "stats")]) == 0
    s = json.loads((tmp_path / "stats" / "summary.json").read_text())
    assert s["n_units"] == 16 and s["n_presentations"] == 12
    cost = load_script("analysis/metabolic_cost.py")
    assert cost.main([str(run / "spikes.nwb"), "--out", str(tmp_path / "cost"), "--preset", "attwell-laughlin2001"]) == 0
    c = json.loads((tmp_path / "cost" / "summary.json").read_text())
    sim = json.loads((run / "summary.json").read_text())
    assert c["mean_per_presentation"]["emitted_spikes"] * 12 == sim["n_spikes"]
    assert "kl_bits" in c["mean_per_presentation"]  # prior rates travel in the NWB provenance
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*"))
    assert cost.main([str(run / "spikes.nwb"), "--out", str(run), "--overwrite"]) == 2  # another command's run
    assert "holds a `simulate` run" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*")) == before
    assert (tmp_path / "cost" / "figures" / "metabolic.png").stat().st_size > 1000
    assert cost.main([str(tmp_path / "missing.nwb")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow  # 30 s; simulations/inference_comparison.py (smoke-tested in the default run) absorbs this comparison
def test_lca_vs_pvae_smoke(tmp_path, tiny_checkpoint, capsys):
    import json

    rep = load_script("simulations/lca_vs_pvae.py")
    out = tmp_path / "report"
    assert rep.main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--n-patches", "40",
                     "--lams", "0.01", "1.0", "--stimuli", "4", "--repeats", "3", "--window", "20",
                     "--slca-patches", "2", "--slca-duration", "40", "--rf-frames", "200", "--rf-fit-units", "4",
                     "--target", "numpy", "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    from spikevae.io import read_nwb

    spk = res["spikes"]
    pv, sl = spk["P-VAE (Poisson neurons)"], spk["spiking LCA (IF neurons, ON/OFF)"]
    st = read_nwb(out / "pvae.nwb")  # the numbers in the table are those of the exported spikes
    assert len(st.presentations) == pv["presentations"] == 12 and st.n_units == pv["units"] == 16
    assert pv["spikes_per_presentation"] == pytest.approx(st.n_spikes / 12)
    assert pv["spikes_per_unit_per_s"] == pytest.approx(st.n_spikes / (12 * 16 * 0.020))
    sl_st = read_nwb(out / "spiking_lca.nwb")
    assert sl["units"] == sl_st.n_units == 32  # ON/OFF pairs
    assert sl["mean_rate_hz"] == pytest.approx(sl_st.n_spikes / (32 * 2 * 0.040))
    assert sl["median_fano"] is None  # one presentation per patch: undefined, not invented
    # the report's LCA RF numbers are those rf_mapping.py gives for the same mapping
    rf = load_script("simulations/rf_mapping.py")
    assert rf.main(["--model", "lca", "--checkpoint", str(tiny_checkpoint), "--lam", "0.5", "--out",
                    str(tmp_path / "rf_lca"), "--frames", "200", "--sparse-frames", "50", "--grating-repeats", "1",
                    "--fit-units", "4", "--quiet"]) == 0
    with open(tmp_path / "rf_lca" / "gabor_fits.csv") as fh:
        r2 = [float(r["r2"]) for r in csv.DictReader(fh)]
    rf_lca = next(v for k, v in res["receptive_fields"].items() if k.startswith("LCA"))
    assert rf_lca["gabor_fraction"] == pytest.approx(np.mean(np.array(r2) >= 0.5))
    report = (out / "report.md").read_text()
    assert "## Spikes, spike statistics and metabolic cost" in report and "## Receptive fields" in report
    assert (out / "figures" / "agreement_pvae.png").stat().st_size > 1000
    rows = res["lca_on_pvae_dictionary"]
    assert [r["lambda"] for r in rows] == [0.01, 1.0]
    assert rows[1]["lifetime_sparsity"] >= rows[0]["lifetime_sparsity"]  # larger λ, sparser code
    assert rows[1]["mse"] >= rows[0]["mse"] - 1e-9  # and a worse reconstruction
    assert "| LCA, λ = 1 |" in (out / "report.md").read_text()
    assert (out / "figures" / "recon_vs_sparsity.png").stat().st_size > 1000
    assert rep.main(["--checkpoint", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_inference_comparison_smoke(tmp_path, tiny_checkpoint, capsys):
    """Every model's row on the same patches and its dictionary; the P-VAE's rate row recomputed here from the model
    itself with both R² definitions; the frontier's gap is the interpolation of the rows it names; one time base."""
    from spikevae.analysis.metrics import r2_mean, r2_pooled
    from spikevae.data import natural_patches
    from spikevae.models.ipvae import IPVAE, IPVAEConfig, save
    from spikevae.models.trained import load_model

    pvae = load_model(tiny_checkpoint)
    ip = tmp_path / "ip.pt"
    save(IPVAE(IPVAEConfig(n_latents=16, patch_size=8, init_scale=0.1), seed=0), ip,
         preprocessing=pvae.preprocessing.to_dict())
    cmp = load_script("simulations/inference_comparison.py")
    out = tmp_path / "cmp"
    assert cmp.main(["--ipvae", str(ip), "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--n-patches", "30",
                     "--iterations", "1", "4", "16", "--lams", "0.1", "0.5", "2", "--circuit-patches", "5",
                     "--circuit-iterations", "4", "--substeps", "20", "--slca-patches", "1", "--slca-duration", "30",
                     "--zeros", "0.3", "0.6", "0.99"]) == 0
    with open(out / "comparison.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:12] == ["model", "dictionary", "readout", "iterations", "r2", "r2_pooled", "zeros", "distance",
                                  "distance_pooled", "mse", "spikes_per_patch", "window_ms"]
    kinds = {(r["model"], r["dictionary"], r["readout"], r["iterations"]) for r in rows}
    assert {("iP-VAE (torch)", "iP-VAE", "spikes", "4"), ("iP-VAE (Brian2 circuit)", "iP-VAE", "spikes", "4"),
            ("P-VAE (amortized)", "P-VAE", "counts", "1")} <= kinds
    lca = {(r["model"], r["dictionary"], r["readout"]) for r in rows if "LCA" in r["model"]}
    for atoms in ("P-VAE", "iP-VAE"):  # the LCA on each model's own atoms
        assert {("LCA λ=0.1", atoms, "signed"), ("LCA λ=2", atoms, "nonneg")} <= lca
    assert {("spiking LCA λ=0.5", "P-VAE", "nonneg"), ("LCA λ=0.5 (the spiking LCA's patches)", "P-VAE", "signed")} <= lca
    x = natural_patches(1, 30, pvae.preprocessing, seed=1).val.reshape(30, -1).astype(np.float64)
    lam = pvae.rates(x)
    xhat = lam @ pvae.dictionary.T
    rates = next(r for r in rows if r["readout"] == "rates" and r["model"].startswith("P-VAE"))
    assert float(rates["r2"]) == pytest.approx(r2_mean(x, xhat), rel=1e-6)
    assert float(rates["r2_pooled"]) == pytest.approx(r2_pooled(x, xhat), rel=1e-6)
    assert float(rates["distance"]) == pytest.approx(np.hypot(1 - r2_mean(x, xhat), 1))
    # one time base: spikes per second per unit from spikes per patch over the read-out's window, K units
    for r in rows:
        if r["spikes_per_s"] and "LCA" not in r["model"]:  # the P-VAE's and the iP-VAE's 16 units
            assert float(r["spikes_per_s"]) == pytest.approx(float(r["spikes_per_patch"]) / (16 * float(r["window_ms"]) * 1e-3))
    it16 = next(r for r in rows if r["model"] == "iP-VAE (torch)" and r["readout"] == "spikes" and r["iterations"] == "16")
    assert float(it16["elapsed_ms"]) == pytest.approx(17 * float(it16["window_ms"]))  # periods 0..16
    with open(out / "frontier.csv") as fh:
        front = list(csv.DictReader(fh))
    assert {r["dictionary"] for r in front} == {"P-VAE", "iP-VAE"}
    pts = sorted((float(r["zeros"]), float(r["r2"])) for r in rows if r["model"].startswith("LCA λ=")
                 and r["dictionary"] == "iP-VAE" and r["readout"] == "signed" and "spiking" not in r["model"])
    for f in (f for f in front if f["dictionary"] == "iP-VAE" and f["lca"] == "signed"):
        z = float(f["zeros"])
        inside = pts[0][0] <= z <= pts[-1][0]
        assert (f["r2_lca"] != "") == inside  # interpolated inside the sweep, never extrapolated
        if inside:
            assert float(f["r2_lca"]) == pytest.approx(np.interp(z, *zip(*pts)), abs=1e-9)
        if f["r2_lca"] and f["r2_model"]:
            assert float(f["gap"]) == pytest.approx(float(f["r2_lca"]) - float(f["r2_model"]), abs=1e-9)
    capsys.readouterr()
    other = tmp_path / "other.pt"  # an iP-VAE whose atoms do not match the patches is refused in one line
    save(IPVAE(IPVAEConfig(n_latents=16, patch_size=12)), other)
    assert cmp.main(["--ipvae", str(other), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "atoms do not match the patches" in err
    assert not (tmp_path / "o2").exists()


def test_tuning_from_a_file_without_a_full_grid_names_what_it_lacks(tmp_path, tiny_checkpoint, capsys):
    """A grating run of one phase per grating (`--n-stimuli 32`) cannot give F1/F0: one line naming what the file
    lacks and the command that records a full grid, exit 2, no output folder."""
    from spikevae.cli.simulate import main as simulate

    run = tmp_path / "run"
    assert run_cli(simulate, ["--checkpoint", str(tiny_checkpoint), "--out", str(run), "--stimuli", "gratings",
                              "--n-stimuli", "32", "--repeats", "1", "--window", "10", "--target", "numpy", "--no-neo",
                              "--quiet"]) == 0
    capsys.readouterr()
    tun = load_script("analysis/tuning_from_nwb.py")
    assert tun.main([str(run / "spikes.nwb"), "--out", str(tmp_path / "tun")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 phase (needs >= 3)" in err and "--n-stimuli 96" in err, err
    assert not (tmp_path / "tun").exists()
