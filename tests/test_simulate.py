"""The simulate command end to end, and its bad-input handling."""
import json

import numpy as np
import pytest
from conftest import assert_dandi_clean, run_cli

from spikevae.cli.simulate import main
from spikevae.io import read_neo, read_nwb
from spikevae.spikes import PoissonLayerConfig
from spikevae.workflows.simulate import run_simulation

BASE = ["--n-stimuli", "4", "--repeats", "2", "--window", "20", "--dt", "1", "--target", "numpy", "--quiet"]


def test_simulate_writes_every_output(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "run"
    assert run_cli(main, ["--checkpoint", str(tiny_checkpoint), "--out", str(out)] + BASE) == 0
    printed = capsys.readouterr().out
    assert "spikes.nwb" in printed and "from spike counts" in printed
    summary = json.loads((out / "summary.json").read_text())
    st = read_nwb(out / "spikes.nwb")
    assert_dandi_clean(out / "spikes.nwb")
    assert summary["n_spikes"] == st.n_spikes and summary["target"] == "numpy"
    assert summary["per_unit_counts"] == st.counts().sum(0).tolist()
    neo_st = read_neo(out / "spikes.nix")
    np.testing.assert_array_equal(neo_st.time, st.time)
    assert len(st.meta["checkpoint"]["sha256"]) == 64 and st.meta["seed"] == 0
    assert (out / "figures" / "raster.png").stat().st_size > 1000
    assert (out / "figures" / "counts_vs_expected.png").stat().st_size > 1000
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_run_simulation_counts_track_rates_and_seed_is_reproducible(tiny_checkpoint):
    layer = PoissonLayerConfig(window=0.02, dt=1e-3, target="numpy")
    a = run_simulation(tiny_checkpoint, "white-noise", 30, 3, layer, seed=5)
    b = run_simulation(tiny_checkpoint, "white-noise", 30, 3, layer, seed=5)
    np.testing.assert_array_equal(a.spikes.time, b.spikes.time)
    lam = a.spikes.presentations.expected
    assert abs(a.summary["n_spikes"] - lam.sum()) < 4 * np.sqrt(lam.sum()) + 1
    r = a.summary["reconstruction"]
    assert r["mse_rates"] == pytest.approx(_rate_mse(tiny_checkpoint, a), rel=1e-5)


def _rate_mse(path, res):
    import torch

    from spikevae.models.trained import load_model

    model = load_model(path).vae
    x = torch.as_tensor(res.stimuli.images[res.spikes.presentations.stimulus]).unsqueeze(1)
    with torch.no_grad():
        rec = model.decode(model.posterior(x).mean)
    return float((x - rec).square().flatten(1).sum(1).mean())


def test_shipped_model_is_used_and_said(tmp_path, capsys):
    assert run_cli(main, ["--out", str(tmp_path / "r"), "--n-stimuli", "2", "--repeats", "1", "--window", "10",
                          "--dt", "1", "--target", "numpy", "--quiet", "--no-neo"]) == 0
    assert "using the shipped model" in capsys.readouterr().out


def _image_dir(tmp_path, size):
    from PIL import Image

    d = tmp_path / f"imgs{size}"
    d.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size), dtype=np.uint8)).save(d / "a.png")
    return d


def test_user_image_folder(tmp_path, tiny_checkpoint):
    d = _image_dir(tmp_path, 40)
    res = run_simulation(tiny_checkpoint, str(d), 5, 1, PoissonLayerConfig(window=0.01, dt=1e-3, target="numpy"))
    assert res.stimuli.images.shape == (5, 8, 8) and res.stimuli.kind == "images"


@pytest.mark.parametrize("case,msg", [
    ("missing", "does not exist"),
    ("hostile", "refused"),
    ("small-images", "smaller than a 8-pixel patch"),
    ("unreadable-images", "cannot read image"),
    ("window", "--window: must be > 0"),
    ("dt", "does not divide"),
    ("outdir", "output folder"),
    ("stimuli", "--stimuli must be"),
])
def test_bad_input_one_line_no_files(tmp_path, tiny_checkpoint, hostile_file, capsys, case, msg):
    out = tmp_path / "run"
    argv = ["--checkpoint", str(tiny_checkpoint), "--out", str(out)] + BASE
    if case == "missing":
        argv[1] = str(tmp_path / "nope.pt")
    elif case == "hostile":
        argv[1] = str(hostile_file[0])
    elif case == "small-images":
        argv += ["--stimuli", str(_image_dir(tmp_path, 10))]
    elif case == "unreadable-images":
        d = tmp_path / "bad"
        d.mkdir()
        (d / "x.png").write_bytes(b"garbage")
        argv += ["--stimuli", str(d)]
    elif case == "window":
        argv += ["--window", "0"]
    elif case == "dt":
        argv += ["--dt", "0.3"]
    elif case == "outdir":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        argv[3] = str(blocker / "run")
    elif case == "stimuli":
        argv += ["--stimuli", "cats"]
    code = run_cli(main, argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and msg in err, err
    if case == "hostile":
        assert not hostile_file[1].exists()
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert written == []


def test_gaussian_checkpoint_is_refused(tmp_path, small_patches, capsys):
    from spikevae.models.training import TrainConfig, fit
    from spikevae.models.vae import VAEConfig

    path = tmp_path / "gauss.pt"
    fit(VAEConfig(family="gaussian", n_latents=8, patch_size=8), TrainConfig(epochs=1, batch_size=500),
        small_patches, path, progress=False)
    code = run_cli(main, ["--checkpoint", str(path), "--out", str(tmp_path / "r")] + BASE)
    err = capsys.readouterr().err
    assert code == 2 and "only the Poisson family emits spike counts" in err and err.count("\n") == 1


def test_a_grating_set_spans_the_whole_grid_or_is_refused(tmp_path, capsys):
    """`--stimuli gratings --n-stimuli N`: N a multiple of the 8 x 4 grid gives every orientation and frequency at
    N / 32 phases; any other N is one error line naming the nearest valid N, exit 2, nothing written."""
    from spikevae.stimuli import gratings

    g = gratings(64, 16)
    combos = {(round(o, 9), f) for o, f in zip(g.params["orientation"], g.params["spatial_frequency"])}
    assert len(combos) == 32 and len(set(np.round(g.params["phase"], 9))) == 2
    np.testing.assert_allclose(np.sort(np.unique(np.round(g.params["orientation"], 9))), np.arange(8) * np.pi / 8)
    np.testing.assert_allclose(g.images.reshape(64, -1).var(1), 1.0, rtol=0.15)  # unit variance per pixel
    out = tmp_path / "run"
    for n, near in (("16", "32"), ("50", "64"), ("100", "96")):
        assert run_cli(main, ["--stimuli", "gratings", "--n-stimuli", n, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"nearest: {near}" in err, err
        assert not out.exists()
