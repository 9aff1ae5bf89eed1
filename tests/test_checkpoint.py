"""Checkpoints: round trip, and every kind of bad file gets one clear error without running code."""
from pathlib import Path

import pytest
import torch

from spikevae.data import Preprocessing
from spikevae.io.files import atomic_write
from spikevae.models import checkpoint as C
from spikevae.models.trained import load_model


def test_round_trip_gives_identical_rates(tiny_checkpoint, small_patches):
    loaded = load_model(tiny_checkpoint)
    model, data = loaded.vae, loaded.checkpoint
    x = torch.as_tensor(small_patches.val[:50]).unsqueeze(1)
    rates = model.posterior(x).mean
    C.save_checkpoint(tiny_checkpoint.parent / "copy.pt", {k: v for k, v in data.items() if k not in ("format", "version")})
    again = load_model(tiny_checkpoint.parent / "copy.pt")
    data2 = again.checkpoint
    assert torch.equal(again.vae.posterior(x).mean, rates)
    assert again.preprocessing == small_patches.preprocessing
    assert Preprocessing(**data2["preprocessing"]) == small_patches.preprocessing
    assert data2["provenance"]["packages"]["torch"].startswith("2.13")


def test_missing(tmp_path):
    with pytest.raises(C.CheckpointError, match="does not exist"):
        C.load_checkpoint(tmp_path / "nope.pt")


def test_truncated(tmp_path, tiny_checkpoint):
    p = tmp_path / "trunc.pt"
    p.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(C.CheckpointError, match="is truncated: a torch file .* whose end is missing"):
        C.load_checkpoint(p)


@pytest.mark.parametrize("obj", [{"a": torch.zeros(3)}, torch.zeros(2), [1, 2, 3]])
def test_foreign_torch_file(tmp_path, obj):
    p = tmp_path / "foreign.pt"
    torch.save(obj, p)
    with pytest.raises(C.CheckpointError, match="not a spikevae checkpoint"):
        C.load_checkpoint(p)


@pytest.mark.parametrize("kind", ["text", "png", "npy", "empty", "truncated", "foreign", "hostile"])
def test_each_kind_of_wrong_file_gets_its_own_message(tmp_path, tiny_checkpoint, hostile_file, kind):
    """A file that is not a checkpoint is named for what it is: not a torch file (and which format), truncated,
    a foreign torch file, or one whose unpickling would run code; only the last says so."""
    import numpy as np

    p = tmp_path / "model.pt"
    if kind == "text":
        p.write_text("step,loss\n1,0.5\n")
    elif kind == "png":
        p.write_bytes((Path(__file__).resolve().parents[1] / "docs" / "figures" / "basis.png").read_bytes())
    elif kind == "npy":
        np.save(tmp_path / "a.npy", np.zeros(3))
        p.write_bytes((tmp_path / "a.npy").read_bytes())
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "truncated":
        p.write_bytes(tiny_checkpoint.read_bytes()[:-200])
    elif kind == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, p)
    else:
        p = hostile_file[0]
    expect = {"text": "is a text file, not a torch file", "png": "is a PNG image, not a torch file",
              "npy": "is a NumPy .npy array, not a torch file", "empty": "is empty, not a torch file",
              "truncated": "is truncated", "foreign": "is a torch file but not a spikevae checkpoint",
              "hostile": "would run code when unpickled"}
    with pytest.raises(C.CheckpointError) as err:
        C.load_checkpoint(p)
    msg = str(err.value)
    assert expect[kind] in msg and "\n" not in msg, msg
    assert ("would run code" in msg) == (kind == "hostile")


def test_hostile_file_never_runs(hostile_file):
    path, marker = hostile_file
    with pytest.raises(C.CheckpointError, match="refused without running them"):
        C.load_checkpoint(path)
    assert not marker.exists()


def test_weights_that_do_not_match_config(tmp_path, tiny_checkpoint):
    data = C.load_checkpoint(tiny_checkpoint)
    data["model_config"] = {**data["model_config"], "n_latents": 17}
    p = tmp_path / "mismatch.pt"
    torch.save(data, p)
    with pytest.raises(C.CheckpointError, match="do not match the model config"):
        C.model_from_checkpoint(C.load_checkpoint(p), p)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def boom(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.pt", boom)
    assert list(tmp_path.iterdir()) == []


def test_shipped_checkpoint_loads():
    loaded = load_model()
    model, data = loaded.vae, loaded.checkpoint
    assert data["family"] == "poisson" and model.config.n_latents == 512
    assert C.default_checkpoint_path().stat().st_size < 4_000_000
    assert "train_state" not in data


def test_a_linear_checkpoint_is_read_without_torch_into_the_same_rates(tmp_path, tiny_checkpoint, small_patches):
    """The torch-free reader gives the weights torch reads, bit for bit, and the same λ as the torch model (one
    computation); a checkpoint of another model is left to torch (None)."""
    import numpy as np

    from spikevae.io.torchfile import read_torch_file
    from spikevae.models.linear import load_linear
    from spikevae.models.training import TrainConfig, fit
    from spikevae.models.vae import VAEConfig

    raw, ref = read_torch_file(tiny_checkpoint), torch.load(tiny_checkpoint, weights_only=True)
    assert raw["model_config"] == ref["model_config"] and raw["train_config"] == ref["train_config"]
    for k, v in ref["state_dict"].items():
        assert raw["state_dict"][k].dtype == np.float32 and np.array_equal(raw["state_dict"][k], v.numpy())
    fast, slow = load_linear(tiny_checkpoint), load_model(tiny_checkpoint)
    x = small_patches.val[:300]
    np.testing.assert_array_equal(fast.rates(x), slow.rates(x))
    # the rates are the torch posterior's, to float32 rounding
    from spikevae.models.vae import posterior_array

    np.testing.assert_allclose(fast.rates(x), posterior_array(slow.vae, x, "mean"), rtol=2e-5)
    np.testing.assert_allclose(fast.decode(fast.rates(x)), slow.decode(slow.rates(x)), rtol=1e-5, atol=1e-6)
    assert fast.name == slow.name and np.allclose(fast.prior_rates, slow.prior_rates)
    gauss = tmp_path / "g.pt"
    fit(VAEConfig(family="gaussian", n_latents=4, patch_size=8), TrainConfig(epochs=1, batch_size=500),
        small_patches, gauss, progress=False)
    assert load_linear(gauss) is None


@pytest.mark.slow
def test_simulate_runs_a_linear_checkpoint_without_importing_torch(tmp_path):
    """`simulate` on a lin|lin checkpoint (the shipped one) never imports torch (it is made unimportable here) and
    writes the spikes the torch path writes for the same seed."""
    import subprocess
    import sys

    import numpy as np

    from spikevae.io import read_nwb
    from spikevae.spikes import PoissonLayerConfig
    from spikevae.workflows.simulate import run_simulation

    argv = ["--out", str(tmp_path / "run"), "--n-stimuli", "6", "--repeats", "2",
            "--window", "20", "--target", "numpy", "--no-neo", "--quiet", "--seed", "4"]
    code = ("import sys\nsys.modules['torch'] = None  # any import of torch fails\n"
            "from spikevae.cli.simulate import main\nraise SystemExit(main(sys.argv[1:]))\n")
    res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    quick = read_nwb(tmp_path / "run" / "spikes.nwb")
    ref = run_simulation(load_model(), n_stimuli=6, repeats=2, seed=4,
                         layer=PoissonLayerConfig(window=0.02, target="numpy")).spikes
    assert quick.n_spikes == ref.n_spikes > 0
    np.testing.assert_array_equal(quick.unit, ref.unit)
    np.testing.assert_array_equal(quick.time, ref.time)
