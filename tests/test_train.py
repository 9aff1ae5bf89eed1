"""Training: loss goes down, resume is exact, same seed same trajectory, bad input gets one line."""
import numpy as np
import pytest
import torch
from conftest import run_cli

from spikevae.analysis import lifetime_sparsity
from spikevae.cli.train import main
from spikevae.models import checkpoint as C
from spikevae.models.training import TrainConfig, evaluate, extend_config, fit, schedule
from spikevae.models.vae import VAE, VAEConfig

MC = VAEConfig(n_latents=64, patch_size=8, prior_log_high=-2.0)
TC = TrainConfig(epochs=5, batch_size=100, method="mc", lr=0.03, warmup_epochs=0.5)


@pytest.mark.slow
def test_short_run_lowers_validation_loss(small_patches):
    from spikevae.seeds import child_seeds

    s_init, _, s_val = child_seeds(TC.seed, 3)
    xva = torch.as_tensor(small_patches.val).unsqueeze(1)
    before = evaluate(VAE(MC, torch.Generator().manual_seed(s_init)), xva, torch.Generator().manual_seed(s_val))
    res = fit(MC, TC, small_patches, progress=False)
    assert res.metrics["nelbo"] < 0.95 * before["nelbo"]  # measured: 63.4 -> 58.1
    assert [h["epoch"] for h in res.history] == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_resume_continues_the_same_trajectory(tmp_path, small_patches):
    full = fit(MC, TC, small_patches, tmp_path / "full.pt", progress=False)
    part = fit(MC, TC, small_patches, tmp_path / "part.pt", progress=False, stop_after=2)
    assert len(part.history) == 2
    saved = C.load_checkpoint(tmp_path / "part.pt")
    assert saved["train_state"]["epoch"] == 2
    resumed = fit(MC, TC, small_patches, tmp_path / "part.pt", progress=False, resume=saved)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert "train_state" not in C.load_checkpoint(tmp_path / "part.pt")  # finished: resume state dropped


def test_a_finished_run_extends(tmp_path, small_patches, capsys):
    """``--resume --epochs N`` extends a finished run: history and weights carry on, annealing stays done,
    the lr follows an N-epoch cosine; without --epochs a finished run is refused with the fix in one line."""
    done = fit(MC, TC, small_patches, tmp_path / "a.pt", progress=False)
    saved = C.load_checkpoint(tmp_path / "a.pt")
    tc = extend_config(TC, 5, 8)
    n_b = len(small_patches.train) // TC.batch_size
    for step in range(5 * n_b, 8 * n_b):  # annealing ended where it ended before
        assert schedule(step, 8 * n_b, tc)[:2] == pytest.approx(schedule(5 * n_b - 1, 5 * n_b, TC)[:2], abs=1e-12)
    assert schedule(5 * n_b, 8 * n_b, tc)[2] > schedule(5 * n_b - 1, 5 * n_b, TC)[2]  # a warm restart of the lr
    more = fit(MC, tc, small_patches, tmp_path / "b.pt", progress=False, resume=saved)
    assert [h["epoch"] for h in more.history] == list(range(1, 9))
    assert more.history[:5] == done.history
    assert more.metrics["nelbo"] < done.metrics["nelbo"]  # three more epochs still lower the loss
    with pytest.raises(Exception, match="must exceed"):
        extend_config(TC, 5, 5)
    assert run_cli(main, ["--out", str(tmp_path / "c.pt"), "--resume", str(tmp_path / "a.pt"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epochs 10" in err


def test_schedules_match_reference():
    cfg = TrainConfig(epochs=10, temp_start=1.0, temp_stop=0.05, beta=2.0, beta_start=1e-4, anneal_portion=0.5,
                      warmup_epochs=1, lr=0.01, lr_min=1e-5)
    total = 1000
    t0, b0, _, _ = schedule(0, total, cfg)
    t_mid, b_mid, _, _ = schedule(250, total, cfg)
    t_end, b_end, lr_end, _ = schedule(999, total, cfg)
    assert (t0, b0) == (1.0, 1e-4)
    assert t_mid == pytest.approx(0.525) and b_mid == pytest.approx(1.00005)
    assert t_end == pytest.approx(0.05, abs=1e-12) and b_end == pytest.approx(2.0, abs=1e-12)
    assert lr_end * 0.01 == pytest.approx(1e-5, rel=0.01)  # one step before the end
    assert schedule(99, total, cfg)[2] == pytest.approx(1.0)  # end of warm-up


def test_lifetime_sparsity_closed_form():
    z = np.array([[1, 0, 2], [0, 0, 2], [0, 0, 2], [0, 0, 2]], float)
    s = lifetime_sparsity(z)
    np.testing.assert_allclose(s, [1.0, 1.0, 0.0])  # one-hot unit, silent unit, constant unit


def test_cli_trains_and_same_seed_same_trajectory(tmp_path, capsys):
    args = ["--dataset", "digits", "--latents", "12", "--epochs", "2", "--batch-size", "200", "--quiet"]
    assert run_cli(main, args + ["--out", str(tmp_path / "a.pt")]) == 0
    assert run_cli(main, args + ["--out", str(tmp_path / "b.pt")]) == 0
    ha = [h["train_loss"] for h in C.load_checkpoint(tmp_path / "a.pt")["history"]]
    hb = [h["train_loss"] for h in C.load_checkpoint(tmp_path / "b.pt")["history"]]
    assert ha == hb
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv,msg", [
    (["--dataset", "cifar"], "--dataset: invalid choice"),
    (["--latents", "0"], "--latents: must be between 1 and 1e9"),
    (["--latents", "-3"], "--latents: must be between 1 and 1e9"),
    (["--images", "/nonexistent/folder"], "does not exist"),
    (["--patch-size", "600", "--n-train", "10", "--n-val", "10"], "patch_size must be between 2 and 256"),
    (["--patch-size", "200", "--images", "IMAGES", "--n-train", "10", "--n-val", "10"],
     "smaller than a 200-pixel patch"),
    (["--arch", "lin"], "arch must look like"),
    (["--device", "tpu"], "device must be"),
    (["--epochs", "0"], "--epochs: must be between 1 and 1e9"),
    (["--beta", "inf"], "--beta: must be finite"),
    (["--lr", "nan"], "--lr: must be finite"),
    (["--seed", "-1"], "--seed: a seed must be in [0, 2**32)"),
    (["--n-train", "99999999999"], "--n-train: must be between 1 and 1e9"),
    (["--n-train", "90000000"], "would need about"),
])
def test_bad_input_one_clear_line(tmp_path, capsys, argv, msg):
    if "IMAGES" in argv:  # two small photographs: too small for the patch size asked for
        from PIL import Image

        folder = tmp_path / "imgs"
        folder.mkdir()
        for i in range(2):
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (100, 120), dtype=np.uint8)).save(folder / f"{i}.png")
        argv = [str(folder) if a == "IMAGES" else a for a in argv]
    code = run_cli(main, ["--out", str(tmp_path / "x.pt"), "--quiet"] + argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and msg in err, err
    assert not (tmp_path / "x.pt").exists()


def test_hostile_resume_is_refused(tmp_path, capsys, hostile_file):
    path, marker = hostile_file
    code = run_cli(main, ["--out", str(tmp_path / "x.pt"), "--resume", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "refused" in err
    assert not marker.exists()


def test_unreadable_output_folder(capsys):
    code = run_cli(main, ["--out", "/nonexistent/dir/x.pt", "--dataset", "digits"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_cli_family_option(tmp_path):
    out = tmp_path / "c.pt"
    assert run_cli(main, ["--out", str(out), "--dataset", "digits", "--model", "categorical", "--latents", "16",
                          "--epochs", "1", "--batch-size", "200", "--quiet"]) == 0
    ck = C.load_checkpoint(out)
    assert ck["family"] == "categorical" and ck["train_config"]["temp_stop"] == 0.1


@pytest.mark.parametrize("case, match", [
    ("epoch-negative", "train_state epoch must be an integer"),
    ("epoch-string", "train_state epoch must be an integer"),
    ("epoch-past-end", "train_state epoch must be an integer"),
    ("rng-short", "train_state rng must be a generator state"),
    ("optimizer-string", "train_state optimizer does not match the model"),
    ("optimizer-other-model", "train_state optimizer does not match the model"),
])
def test_resume_state_is_validated(tmp_path, capsys, small_patches, case, match):
    """Every field of an unfinished run's resume state is checked before training: one line, exit 2, no file."""
    from spikevae.models.config import make_configs

    part = tmp_path / "part.pt"
    fit(MC, TC, small_patches, part, progress=False, stop_after=1)
    d = torch.load(part, weights_only=True)
    ts = d["train_state"]
    if case == "epoch-negative":
        ts["epoch"] = -5
    elif case == "epoch-string":
        ts["epoch"] = "1"
    elif case == "epoch-past-end":
        ts["epoch"] = TC.epochs
    elif case == "rng-short":
        ts["rng"] = ts["rng"][:10]
    elif case == "optimizer-string":
        ts["optimizer"] = "adam"
    else:
        other = make_configs(latents=MC.n_latents + 3, patch_size=MC.patch_size, epochs=TC.epochs,
                             batch_size=TC.batch_size)
        bigger = fit(other[0], other[1], small_patches, tmp_path / "other.pt", progress=False, stop_after=1)
        del bigger
        ts["optimizer"] = torch.load(tmp_path / "other.pt", weights_only=True)["train_state"]["optimizer"]
    torch.save(d, part)
    out = tmp_path / "resumed.pt"
    assert run_cli(main, ["--out", str(out), "--resume", str(part), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err
    assert not out.exists()
