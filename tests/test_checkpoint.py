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
