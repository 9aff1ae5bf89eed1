"""Sweeps on a local Dask cluster: a failing run is recorded, the others finish, a rerun skips finished runs."""
import json

import pytest
from conftest import run_cli

from spikevae.cli.sweep import main
from spikevae.workflows.sweep import expand_grid, run_id, run_job


def test_grid_is_the_product_over_defaults_and_ids_are_stable():
    runs = expand_grid({"beta": [0.5, 1.0], "seed": [0, 1, 2]}, {"epochs": 7})
    assert len(runs) == 6 and {(r["beta"], r["seed"]) for r in runs} == {(b, s) for b in (0.5, 1.0) for s in range(3)}
    assert all(r["epochs"] == 7 and r["family"] == "poisson" for r in runs)
    ids = [run_id(r, ["beta", "seed"]) for r in runs]
    assert len(set(ids)) == 6 and ids == [run_id(r, ["beta", "seed"]) for r in runs]
    assert ids[0].startswith("beta=0.5_seed=0_")


ARGS = ["--grid", "family=poisson,gaussian", "--grid", "dataset=digits,mnist", "--set", "epochs=2",
        "--set", "batch_size=200", "--set", "latents=8", "--quiet"]


@pytest.fixture(scope="module")
def dask_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    status = main(["--out", str(out), "--workers", "2", *ARGS])
    return out, status


@pytest.mark.slow
def test_failed_run_is_recorded_and_the_others_finish(dask_sweep):
    out, status = dask_sweep
    assert status == 1  # some run failed
    runs = {(r["config"]["family"], r["config"]["dataset"]): r
            for r in json.loads((out / "manifest.json").read_text())["runs"]}
    assert len(runs) == 4
    for fam in ("poisson", "gaussian"):
        ok, bad = runs[fam, "digits"], runs[fam, "mnist"]  # mnist without --mnist DIR fails inside the job
        assert ok["status"] == "ok" and ok["metrics"]["nelbo"] > 0
        assert (out / "runs" / ok["id"] / "result.json").exists() and (out / "runs" / ok["id"] / "model.pt").exists()
        assert bad["status"] == "failed" and bad["error"].startswith("DataError: dataset 'mnist' needs")
        assert not (out / "runs" / bad["id"] / "result.json").exists()


@pytest.mark.slow
def test_dask_runs_equal_the_same_runs_done_in_process(dask_sweep, tmp_path):
    out, _ = dask_sweep
    rec = next(r for r in json.loads((out / "manifest.json").read_text())["runs"]
               if r["status"] == "ok" and r["config"]["family"] == "gaussian")
    local = run_job(rec["config"], str(tmp_path / "again"))
    assert local["status"] == "ok"
    assert local["metrics"] == pytest.approx(rec["metrics"], rel=1e-6)  # same seed, one thread: same numbers


@pytest.mark.slow
def test_rerun_skips_finished_runs_and_redoes_unfinished_ones(dask_sweep, tmp_path):
    import shutil

    src, _ = dask_sweep
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    runs = json.loads((out / "manifest.json").read_text())["runs"]
    ok = [r for r in runs if r["status"] == "ok"]
    (out / "runs" / ok[1]["id"] / "result.json").unlink()  # as if interrupted before it finished
    stamp = (out / "runs" / ok[0]["id"] / "result.json").stat().st_mtime_ns
    assert main(["--out", str(out), "--serial", *ARGS]) == 1
    again = {r["id"]: r for r in json.loads((out / "manifest.json").read_text())["runs"]}
    assert again[ok[0]["id"]].get("skipped") is True
    assert (out / "runs" / ok[0]["id"] / "result.json").stat().st_mtime_ns == stamp
    assert not again[ok[1]["id"]].get("skipped") and again[ok[1]["id"]]["status"] == "ok"
    assert again[ok[1]["id"]]["metrics"] == pytest.approx(ok[1]["metrics"], rel=1e-6)


def test_bad_sweep_arguments_are_one_line(tmp_path, capsys):
    for argv in (["--grid", "bogus=1"], ["--grid", "beta=x"], ["--grid", "beta=-1"], ["--grid", "beta"],
                 ["--grid", "beta=1", "--set", "beta=2"], ["--grid", "family=wolf"], ["--grid", "beta=1,nan"],
                 ["--grid", "beta=inf,2"]):
        assert run_cli(main, ["--out", str(tmp_path / "s"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 8 and "must be finite" in err[-1]
    assert all(line.startswith("python -m spikevae.sweep: error:") for line in err)
    assert not (tmp_path / "s").exists()  # nothing written for a rejected sweep


def test_lca_runs_learn_a_dictionary_or_code_on_a_checkpoint(tmp_path, tiny_checkpoint):
    import numpy as np

    from spikevae.data import natural_patches
    from spikevae.io import load_dictionary
    from spikevae.lca import fista, normalise_atoms

    base = {**expand_grid({"lam": [0.3]}, {"family": "lca", "latents": 24, "patch_size": 8, "n_train": 2000,
                                           "updates": 3, "n_code": 40})[0]}
    rec = run_job(base, str(tmp_path / "learn"))
    assert rec["status"] == "ok", rec.get("error")
    phi, prep, meta = load_dictionary(tmp_path / "learn" / "dictionary.npz")
    assert phi.shape == (64, 24) and meta["lam"] == 0.3
    x = natural_patches(1, 40, prep, seed=1).val.reshape(40, -1).astype(np.float64)  # the coded patches
    ref = fista(x, normalise_atoms(phi), 0.3, n_iter=4000)  # an independent solver of the same energy
    assert rec["metrics"]["energy"] == pytest.approx(ref.energy[-1], rel=1e-6)  # the converged code's
    assert rec["metrics"]["max_duality_gap"] <= 1e-9
    on_ck = run_job({**base, "checkpoint": str(tiny_checkpoint)}, str(tmp_path / "on_ck"))
    assert on_ck["status"] == "ok", on_ck.get("error")
    assert not (tmp_path / "on_ck" / "dictionary.npz").exists()  # coded on the P-VAE's atoms, nothing learned
    assert 0 <= on_ck["metrics"]["active_fraction"] <= 1
