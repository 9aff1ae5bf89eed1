"""Evaluation: KNN, shattering, PCA and sparsity measures against known answers; the command end to end."""
import csv
import json

import numpy as np
import pytest
from conftest import run_cli

from spikevae.analysis import (
    gabor_likeness,
    knn_accuracy,
    pca_alignment,
    population_sparsity,
    principal_components,
    shattering_dimensionality,
    treves_rolls,
)
from spikevae.cli.evaluate import main

CENTRES = np.random.default_rng(0).standard_normal((10, 20)) * 10  # ten classes, far apart


def _clusters(n_per, seed, spread=0.05):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(CENTRES)), n_per)
    return CENTRES[y] + spread * rng.standard_normal((len(y), CENTRES.shape[1])), y


def test_knn_separable_clusters_are_perfect_and_shuffled_labels_are_chance():
    px, py = _clusters(30, seed=1)
    tx, ty = _clusters(20, seed=2)
    res = knn_accuracy(px, py, tx, ty, n_labels=[300], n_draws=3)
    assert res.mean == (1.0,)  # every labelled point is used: all 5 neighbours share the class
    noise = knn_accuracy(px, np.random.default_rng(3).permutation(py), tx, ty, n_labels=[300], n_draws=3)
    assert abs(noise.mean[0] - 0.1) < 0.08  # labels carry no information: chance (1/10), 200 test points


def test_knn_rejects_impossible_label_counts():
    x, y = _clusters(3, seed=1)
    with pytest.raises(ValueError, match="N = 100"):
        knn_accuracy(x, y, x, y, n_labels=[100])


@pytest.mark.slow
def test_shattering_of_one_hot_classes_is_one_and_of_noise_is_chance():
    rng = np.random.default_rng(0)
    ytr, yte = np.repeat(np.arange(10), 40), np.repeat(np.arange(10), 20)
    eye = np.eye(10)
    mean, _, n = shattering_dimensionality(eye[ytr] + 0.01 * rng.standard_normal((400, 10)), ytr,
                                           eye[yte] + 0.01 * rng.standard_normal((200, 10)), yte)
    assert n == 126  # C(10, 5) / 2 distinct balanced dichotomies
    assert mean == 1.0  # every dichotomy of one-hot class codes is linearly separable
    mean_noise, _, _ = shattering_dimensionality(rng.standard_normal((400, 10)), ytr,
                                                 rng.standard_normal((200, 10)), yte)
    assert abs(mean_noise - 0.5) < 0.06


def test_treves_rolls_closed_forms():
    one_hot = np.eye(6)[[0, 3, 5]]
    np.testing.assert_allclose(population_sparsity(one_hot), 1.0)
    np.testing.assert_allclose(population_sparsity(np.ones((3, 6))), 0.0, atol=1e-12)
    z = np.array([[1.0, 2.0, 0.0, 0.0]])  # (Σz)²/(mΣz²) = 9/20; S = (1 − 0.45)/(1 − 1/4)
    np.testing.assert_allclose(treves_rolls(z, axis=1), (1 - 9 / 20) / 0.75)


def test_principal_components_match_the_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 4, 4)) * np.linspace(3, 0.5, 16).reshape(4, 4)
    pcs, var = principal_components(x)
    w, v = np.linalg.eigh(np.cov(x.reshape(2000, -1), rowvar=False))
    np.testing.assert_allclose(var, w[::-1], rtol=1e-10)
    cos = np.abs(np.sum(pcs.reshape(16, -1)[:4] * v[:, ::-1].T[:4], axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-8)
    assert pca_alignment(pcs, pcs) == pytest.approx(1.0)
    rand = rng.standard_normal((50, 4, 4))
    assert pca_alignment(rand, pcs) < 0.9  # random directions are not principal components


def test_gabor_likeness_separates_gabors_from_noise():
    from spikevae.analysis.receptive_fields import gabor

    rng = np.random.default_rng(0)
    gab = np.stack([gabor((12, 12), 5.5, 6.0, th, 0.2, 0.3, 2.0, 3.0) for th in (0.2, 1.0, 2.0)])
    frac, r2 = gabor_likeness(np.concatenate([gab, rng.standard_normal((3, 12, 12))]))
    assert frac == pytest.approx(0.5)
    assert np.all(r2[:3] > 0.99) and np.all(r2[3:] < 0.5)


@pytest.fixture(scope="module")
def digit_models(tmp_path_factory):
    from spikevae.cli.train import main as train

    d = tmp_path_factory.mktemp("digits")
    paths = []
    for fam in ("poisson", "gaussian"):
        p = d / f"{fam}.pt"
        assert train(["--out", str(p), "--dataset", "digits", "--model", fam, "--latents", "10", "--epochs", "3",
                      "--batch-size", "100", "--quiet", "--device", "cpu"]) == 0
        paths.append(p)
    return paths


@pytest.mark.slow
def test_evaluate_command_writes_table_and_figures(digit_models, tmp_path, capsys):
    out = tmp_path / "ev"
    argv = ["--checkpoint", *map(str, digit_models), "--out", str(out), "--knn-draws", "3"]
    assert main(argv) == 0
    err = capsys.readouterr().err  # one display: a line per finished stage of each model, no nested bars
    assert err.count(": validation metrics (") == 2 and err.count(": Gabor fits of the PCs (") == 2
    assert "gabor fits:" not in err
    with open(out / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["family"] for r in rows] == ["poisson", "gaussian"]
    for r in rows:
        assert r["same_validation_set"] == "True"  # rebuilt data match the fingerprint in the checkpoint
        for n in (40, 200, 1000):
            assert 0.0 <= float(r[f"knn_{n}"]) <= 1.0
        assert 0.5 <= float(r["shattering"]) <= 1.0 and r["n_splits"] == "126"
        assert float(r["nelbo"]) > float(r["kl"]) > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics[0]["K"] == 10
    for f in ("basis_poisson.png", "basis_gaussian.png", "knn.png", "sparsity.png", "table.md"):
        assert (out / f).stat().st_size > 0
    assert "| poisson | poisson | lin\\|lin |" in (out / "table.md").read_text()


def test_evaluate_bad_input_is_one_line(tmp_path, capsys, hostile_file):
    path, marker = hostile_file
    assert run_cli(main, ["--checkpoint", str(path), "--out", str(tmp_path / "o")]) == 2
    assert not marker.exists()
    assert run_cli(main, ["--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert run_cli(main, ["--checkpoint", str(path), "--knn-draws", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("python -m spikevae.evaluate: error:") for line in err)


def test_group_over_seeds_averages_rows_that_differ_only_by_seed():
    from spikevae.workflows.evaluation import group_over_seeds

    base = {"family": "poisson", "arch": "lin|lin", "K": 10, "beta": 1.0, "method": "mc", "dataset": "digits",
            "epochs": 3}
    rows = [{**base, "name": "a", "seed_note": "x", "knn_40": 0.5, "knn_40_sd": 0.1, "kl": 1.0},
            {**base, "name": "b", "seed_note": "y", "knn_40": 0.7, "knn_40_sd": 0.2, "kl": 3.0},
            {**base, "K": 50, "name": "c", "knn_40": 0.9, "knn_40_sd": 0.0, "kl": 2.0}]
    g = group_over_seeds(rows)
    assert [r["n_seeds"] for r in g] == [2, 1]
    assert g[0]["knn_40"] == pytest.approx(0.6) and g[0]["knn_40_sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert g[0]["kl"] == pytest.approx(2.0) and g[1]["kl"] == 2.0 and g[0]["name"] == "poisson K=10 β=1"


def test_spatial_spread_closed_forms():
    from spikevae.analysis import spatial_spread

    delta = np.zeros((1, 8, 8))
    delta[0, 3, 4] = 2.0
    flat = np.full((1, 8, 8), -0.5)
    two = np.zeros((1, 8, 8))
    two[0, 0, :2] = [1.0, 1.0]  # energy on 2 of 64 pixels: (2)²/(64·2) = 1/32
    np.testing.assert_allclose(spatial_spread(np.concatenate([delta, flat, two])), [1 / 64, 1.0, 1 / 32])


def test_a_checkpoint_is_evaluated_on_the_data_of_its_own_preprocessing(tmp_path):
    """A checkpoint trained with another preprocessing than today's defaults (no downsampling, f0 0.3, the
    recipe of an earlier shipped model): its own recipe (stored in the checkpoint) rebuilds its validation
    set, fingerprint and all."""
    from conftest import run_cli

    from spikevae.cli.train import main
    from spikevae.data import Preprocessing
    from spikevae.models.trained import load_model
    from spikevae.workflows.evaluation import evaluate_checkpoint

    path = tmp_path / "old_recipe.pt"
    assert run_cli(main, ["--out", str(path), "--latents", "16", "--patch-size", "8", "--epochs", "1", "--n-train", "2000",
                          "--n-val", "400", "--downsample", "1", "--whiten-f0", "0.3", "--method", "exact",
                          "--device", "cpu", "--quiet"]) == 0
    shipped = load_model(path)
    assert shipped.preprocessing != Preprocessing(patch_size=shipped.preprocessing.patch_size)
    ev = evaluate_checkpoint(shipped, n_val=200, gabor=False)
    assert ev.metrics["same_validation_set"] is True
