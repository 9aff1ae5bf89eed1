"""LCA: planted recovery and KKT, Brian2 agreement, energy descent, spiking convergence, dictionary learning."""
import numpy as np
import pytest
from conftest import assert_dandi_clean

from spikevae.brian.lca import lca_brian, spiking_lca
from spikevae.lca import (
    THRESHOLDS,
    LCAConfig,
    energy,
    fista,
    ista,
    lca,
    lca_dense,
    lca_fixed_point,
    learn_dictionary,
    normalise_atoms,
    threshold,
)


@pytest.fixture
def planted():
    rng = np.random.default_rng(0)
    D, K, B = 64, 128, 20
    phi = normalise_atoms(rng.standard_normal((D, K)))
    s = np.zeros((B, K))
    for b in range(B):
        s[b, rng.choice(K, 4, replace=False)] = rng.uniform(1.0, 2.0, 4) * rng.choice([-1, 1], 4)
    return phi, s, s @ phi.T


def test_planted_support_recovery_and_kkt(planted):
    phi, s, x = planted
    lam = 0.05
    res = lca(x, phi, LCAConfig(lam=lam, threshold="soft", tol=1e-8))  # a tight certificate: KKT to 1e-6
    assert res.converged.all()
    true = s != 0
    found = res.codes != 0
    assert (true & found).sum() / true.sum() >= 0.95  # recall
    # LASSO KKT: Φᵀ(x − Φa) = λ sign(a) on the support, |Φᵀ(x − Φa)| ≤ λ off it
    corr = (x - res.codes @ phi.T) @ phi
    on = found
    assert np.max(np.abs(corr[on] - lam * np.sign(res.codes[on]))) < 1e-6
    assert np.max(np.abs(corr[~on])) <= lam + 1e-6


@pytest.mark.parametrize("kind", THRESHOLDS)
@pytest.mark.parametrize("inhibition", ["synapses", "dense"])
def test_brian_network_matches_reference(planted, kind, inhibition):
    phi, _, x = planted
    phi, x = phi[:32, :40], x[:3, :32]
    phi = normalise_atoms(phi)
    cfg = LCAConfig(lam=0.1, n_steps=200, threshold=kind, tol=0)  # a fixed-length transient
    ref = lca(x, phi, cfg)
    br = lca_brian(x, phi, cfg, inhibition=inhibition)
    assert np.max(np.abs(br.states - ref.states)) <= 1e-9
    np.testing.assert_allclose(br.codes, ref.codes, atol=1e-9)


def test_sparse_inhibition_equals_dense(planted):
    phi, _, x = planted
    cfg = LCAConfig(lam=0.1, n_steps=300, tol=0)
    np.testing.assert_allclose(lca(x, phi, cfg).states, lca_dense(x, phi, cfg).states, rtol=0, atol=1e-12)
    from spikevae.lca.solvers import _inhibition

    rng = np.random.default_rng(1)
    G = rng.standard_normal((128, 128))
    for B in (10, 200):  # single-thread and two-thread CSR paths (1 % active)
        a = rng.standard_normal((B, 128)) * (rng.random((B, 128)) < 0.01)
        np.testing.assert_allclose(_inhibition(a, G), a @ G, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["soft", "nonneg"])
def test_energy_non_increasing_for_small_dt(planted, kind):
    phi, _, x = planted
    res = lca(x, phi, LCAConfig(lam=0.1, dt=1e-5, tau=0.01, n_steps=3000, threshold=kind, record_every=10, tol=0))
    d = np.diff(res.energy)
    assert np.all(d <= 1e-9 * np.abs(res.energy[:-1]).max()), d.max()


def test_lca_reaches_the_fista_optimum(planted):
    phi, _, x = planted
    a = lca(x, phi, LCAConfig(lam=0.1, n_steps=8000)).codes
    f = fista(x, phi, 0.1, n_iter=3000)
    i = ista(x, phi, 0.1, n_iter=3000)
    e_lca, e_f, e_i = (energy(x, phi, c, 0.1).mean() for c in (a, f.codes, i.codes))
    assert e_lca == pytest.approx(e_f, rel=1e-6)
    assert e_i >= e_f - 1e-9 and e_i == pytest.approx(e_f, rel=1e-4)


@pytest.mark.parametrize("kind", ["nonneg", pytest.param("soft", marks=pytest.mark.slow)])
def test_spiking_rates_approach_the_analog_solution(planted, kind):
    phi, _, x = planted
    phi = normalise_atoms(phi[:16, :24])
    x = x[:3, :16]
    cfg = LCAConfig(lam=0.05, threshold=kind, n_steps=5000)
    analog = lca(x, phi, cfg).codes
    errs = [np.abs(spiking_lca(x, phi, cfg, duration=T).codes - analog).mean() for T in (0.1, 0.8)]
    # the start-up transient costs a fixed number of spikes: error ~ 1/T (8x longer: ≥ 3x smaller)
    assert errs[1] < errs[0] / 3, errs
    assert errs[1] < 0.05 * np.abs(analog).mean() + 0.01


def test_dictionary_learning_lowers_heldout_energy(small_patches):
    rng = np.random.default_rng(0)
    x = small_patches.train.reshape(len(small_patches.train), -1)
    xv = small_patches.val.reshape(len(small_patches.val), -1)[:300]
    cfg = LCAConfig(lam=0.5, n_steps=200, tol=0)
    phi0 = normalise_atoms(rng.standard_normal((64, 96)))
    phi, trace = learn_dictionary(x, 96, cfg, n_updates=60, batch_size=200, eta=0.1, rng=rng, phi0=phi0)
    np.testing.assert_allclose(np.linalg.norm(phi, axis=0), 1.0, atol=1e-12)
    before = lca(xv, phi0, cfg).energy[-1]
    after = lca(xv, phi, cfg).energy[-1]
    assert after < 0.85 * before, (before, after)


@pytest.mark.parametrize("change,match", [
    ({"x": np.zeros((2, 10))}, "pixels"),
    ({"cfg": LCAConfig(lam=-0.1)}, "lambda"),
    ({"cfg": LCAConfig(tau=0)}, "tau"),
    ({"x": np.full((2, 64), np.nan)}, "non-finite"),
    ({"phi": np.ones((64, 8))}, "unit norm"),
])
def test_bad_input(planted, change, match):
    phi, _, x = planted
    args = {"x": x, "phi": phi, "cfg": LCAConfig()}
    args.update(change)
    with pytest.raises(ValueError, match=match):
        lca(args["x"], args["phi"], args["cfg"])


def test_threshold_functions():
    u = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(threshold(u, 1.0, "soft"), [-1, 0, 0, 0, 1])
    np.testing.assert_allclose(threshold(u, 1.0, "hard"), [-2, 0, 0, 0, 2])
    np.testing.assert_allclose(threshold(u, 1.0, "nonneg"), [0, 0, 0, 0, 1])


@pytest.mark.slow
def test_lca_command_learn_and_infer(tmp_path, capsys):
    import json

    from conftest import run_cli

    from spikevae.cli.lca import main
    from spikevae.io import load_dictionary

    d = tmp_path / "dict.npz"
    assert run_cli(main, ["learn", "--out", str(d), "--atoms", "16", "--updates", "3", "--batch", "50",
                          "--steps", "50", "--n-train", "500", "--quiet"]) == 0
    phi, prep, meta = load_dictionary(d)
    assert phi.shape == (256, 16) and np.allclose(np.linalg.norm(phi, axis=0), 1)
    assert (tmp_path / "dict_basis.png").stat().st_size > 1000 and meta["atoms"] == 16
    # a figure-like --out would have been overwritten by the figure: refused, nothing written
    assert run_cli(main, ["learn", "--out", str(tmp_path / "x.png"), "--quiet"]) == 2
    assert "must end in .npz" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    for sim in ("reference", "brian", "spiking"):
        out = tmp_path / sim
        assert run_cli(main, ["infer", "--dictionary", str(d), "--out", str(out), "--n-patches", "3", "--steps", "100",
                              "--simulator", sim, "--duration", "50", "--quiet"]) == 0
        summary = json.loads((out / "summary.json").read_text())
        with np.load(out / "codes.npz") as z:
            codes, patches = z["codes"], z["patches"]
        assert codes.shape == (3, 16) and summary["simulator"] == sim
        assert summary["lca_config"]["lam"] == 0.5  # the lambda the dictionary was learned with, not 0.1
        if sim == "reference":  # the full squared error, the convention of every command's MSE
            r = patches - codes @ phi.T
            assert summary["mse"] == pytest.approx(float(np.mean((r**2).sum(1))), rel=1e-12)
    assert "lambda 0.5: the lambda" in capsys.readouterr().out
    assert run_cli(main, ["infer", "--dictionary", str(d), "--out", str(tmp_path / "l"), "--n-patches", "3",
                          "--lam", "0.1", "--quiet"]) == 0
    assert "warning: lambda 0.1 differs from the 0.5" in capsys.readouterr().err
    from spikevae.io import read_nwb

    st = read_nwb(tmp_path / "spiking" / "spikes.nwb")
    assert_dandi_clean(tmp_path / "spiking" / "spikes.nwb")
    assert st.n_units == 32 and st.n_spikes == json.loads((tmp_path / "spiking" / "summary.json").read_text())["n_spikes"]
    capsys.readouterr()


@pytest.mark.parametrize("argv,msg", [
    (["--lam", "-1"], "--lam: must be >= 0"),
    (["--tau", "0"], "--tau: must be > 0"),
    (["--simulator", "gpu"], "--simulator: invalid choice"),
    (["--tol", "1e-14"], "cannot be met"),
    (["--threshold", "hard"], "no unique fixed point"),
])
def test_lca_command_bad_input(tmp_path, capsys, tiny_checkpoint, argv, msg):
    from conftest import run_cli

    from spikevae.cli.lca import main

    code = run_cli(main, ["infer", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o")] + argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and msg in err, err


def test_lca_command_dictionary_patch_mismatch(tmp_path, capsys):
    from conftest import run_cli

    from spikevae.cli.lca import main
    from spikevae.data import Preprocessing
    from spikevae.io import save_dictionary

    bad = tmp_path / "bad.npz"
    save_dictionary(bad, normalise_atoms(np.ones((100, 4)) + np.eye(100, 4)), Preprocessing(patch_size=16), {})
    code = run_cli(main, ["infer", "--dictionary", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "does not match" in err and err.count("\n") == 1


@pytest.mark.parametrize("kind", ["soft", "nonneg", "hard"])
def test_compiled_kernel_equals_numpy_and_dense(kind):
    """The compiled Euler loop follows the same trajectory as the numpy paths (rounding only)."""
    from spikevae.lca import lca_dense
    from spikevae.lca.solvers import _kernel

    assert _kernel() is not None  # gcc and Cython are part of this project's stack (Brian2 needs them)
    rng = np.random.default_rng(7)
    phi = normalise_atoms(rng.standard_normal((36, 90)))
    x = rng.standard_normal((23, 36))
    cfg = LCAConfig(lam=0.3, n_steps=250, threshold=kind, tol=0)
    a = lca(x, phi, cfg)
    b = lca(x, phi, cfg, compiled=False)
    c = lca_dense(x, phi, cfg)
    np.testing.assert_allclose(a.states, b.states, rtol=0, atol=1e-11)
    np.testing.assert_allclose(a.states, c.states, rtol=0, atol=1e-11)
    assert a.n_steps == 250 and a.fraction_active == b.fraction_active


def test_compiled_kernel_keeps_early_stop_and_energy_records():
    rng = np.random.default_rng(8)
    phi = normalise_atoms(rng.standard_normal((25, 50)))
    x = rng.standard_normal((9, 25))
    cfg = LCAConfig(lam=0.2, n_steps=20_000, tol=1e-4, record_every=30)
    a, b = lca(x, phi, cfg), lca(x, phi, cfg, compiled=False)
    np.testing.assert_array_equal(a.steps, b.steps)  # same stopping step, input by input
    assert a.steps.min() < 20_000 and a.n_steps == b.n_steps
    np.testing.assert_array_equal(a.energy_steps, b.energy_steps)
    np.testing.assert_allclose(a.energy, b.energy, rtol=1e-12)


def test_lca_falls_back_to_numpy_without_a_compiler(monkeypatch):
    import spikevae.brian._build as build

    monkeypatch.setattr(build, "_CACHE", {"_lca_kernel": ImportError("no compiler here")})
    rng = np.random.default_rng(9)
    phi = normalise_atoms(rng.standard_normal((16, 24)))
    x = rng.standard_normal((5, 16))
    from spikevae.lca import lca_dense
    from spikevae.lca.solvers import _kernel

    assert _kernel() is None
    np.testing.assert_allclose(lca(x, phi, LCAConfig(n_steps=100, tol=0)).states,
                               lca_dense(x, phi, LCAConfig(n_steps=100, tol=0)).states, atol=1e-12)


def test_energy_records_fall_on_their_steps_with_early_stop_checks():
    rng = np.random.default_rng(10)
    phi = normalise_atoms(rng.standard_normal((16, 30)))
    x = rng.standard_normal((4, 16))
    cfg = LCAConfig(lam=0.2, n_steps=75, tol=1e-11, record_every=15)  # 15 is not a multiple of the check interval
    for compiled in (True, False):
        res = lca(x, phi, cfg, compiled=compiled)
        np.testing.assert_array_equal(res.energy_steps, [15, 30, 45, 60, 75])


@pytest.mark.parametrize("kind", ["soft", "nonneg"])
def test_default_lca_stops_converged_and_matches_sklearn_lasso(planted, kind):
    """The default run stops on its certificate; codes and energy agree with scikit-learn's Lasso."""
    from sklearn.linear_model import Lasso

    phi, _, x = planted
    lam = 0.05
    res = lca(x, phi, LCAConfig(lam=lam, threshold=kind))
    assert res.converged.all() and res.residual.max() <= 1e-4 and res.n_steps < LCAConfig().n_steps
    D = phi.shape[0]
    sk = np.stack([Lasso(alpha=lam / D, fit_intercept=False, positive=kind == "nonneg", tol=1e-12, max_iter=100_000)
                   .fit(phi, xi).coef_ for xi in x])
    e, e_sk = energy(x, phi, res.codes, lam), energy(x, phi, sk, lam)
    assert np.all(e - e_sk <= 1e-4 * e_sk)  # the target: within 1e-4 of the optimal energy, input by input
    np.testing.assert_allclose(res.codes, sk, atol=1e-3)
    fp = lca_fixed_point(x, phi, LCAConfig(lam=lam, threshold=kind))
    assert fp.converged.all() and fp.residual.max() <= 1e-9
    ref = fista(x, phi, lam, 5_000, kind)
    assert ref.residual.max() <= 1e-8  # FISTA itself certified
    np.testing.assert_allclose(energy(x, phi, fp.codes, lam), energy(x, phi, ref.codes, lam), rtol=1e-8)
    # the fixed point is a fixed point of the dynamics: one more Euler step does not move it
    np.testing.assert_allclose(threshold(fp.states, lam, kind), fp.codes, atol=1e-7)


def test_lca_on_real_patches_matches_sklearn_lasso(small_patches):
    from sklearn.linear_model import Lasso

    rng = np.random.default_rng(3)
    x = small_patches.val.reshape(len(small_patches.val), -1)[:12].astype(np.float64)
    phi = normalise_atoms(rng.standard_normal((64, 96)))
    lam = 0.5
    res = lca(x, phi, LCAConfig(lam=lam))
    sk = np.stack([Lasso(alpha=lam / 64, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(phi, xi).coef_
                   for xi in x])
    e, e_sk = energy(x, phi, res.codes, lam), energy(x, phi, sk, lam)
    assert res.converged.all() and np.all(e - e_sk <= 1e-4 * e_sk) and np.all(e_sk - e <= 1e-9 * e_sk)
    # the old default (900 steps, 9 tau) is a transient, not the code
    early = lca(x, phi, LCAConfig(lam=lam, n_steps=100, tol=0))
    assert energy(x, phi, early.codes, lam).mean() > (1 + 1e-3) * e_sk.mean()


def test_step_cap_is_reported(planted, caplog):
    phi, _, x = planted
    with caplog.at_level("WARNING", logger="spikevae.lca"):
        res = lca(x, phi, LCAConfig(lam=0.05, n_steps=100))
    assert not res.converged.any() and np.all(res.residual > 1e-4)
    msgs = [r.getMessage() for r in caplog.records if r.name.startswith("spikevae.lca")]
    assert len(msgs) == 1 and "20 of 20 inputs did not converge within 100 steps" in msgs[0]


def test_brian_network_stops_where_the_reference_stops(planted):
    phi, _, x = planted
    phi, x = normalise_atoms(phi[:32, :40]), x[:3, :32]
    cfg = LCAConfig(lam=0.1, tol=1e-6)
    ref = lca(x, phi, cfg)
    br = lca_brian(x, phi, cfg, inhibition="dense")
    np.testing.assert_array_equal(br.steps, ref.steps)
    assert br.converged.all() and np.max(np.abs(br.states - ref.states)) <= 1e-9


@pytest.mark.parametrize("tol", [-1e-3, 1e-14, 1.0])
def test_a_tolerance_that_cannot_be_met_is_refused(planted, tol):
    phi, _, x = planted
    with pytest.raises(ValueError, match="cannot be met"):
        lca(x, phi, LCAConfig(tol=tol))


def test_fixed_point_refuses_the_hard_threshold(planted):
    phi, _, x = planted
    with pytest.raises(ValueError, match="no unique fixed point"):
        lca_fixed_point(x, phi, LCAConfig(threshold="hard"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["soft", "nonneg"])
def test_every_solver_returns_the_same_record_on_one_problem(planted, kind):
    """Converged on one problem, every solver's record means the same thing: the codes agree, ``recon_error`` is the
    full squared error ‖x − Φa‖² of its own codes (the energy has half of it), the last energy record is the energy of
    its codes, ``fraction_active`` counts its nonzeros, and ``converged`` holds where the residual is within tol."""
    phi, _, x = planted
    phi, x = normalise_atoms(phi[:32, :48]), x[:6, :32]
    lam, tol = 0.1, 1e-8
    cfg = LCAConfig(lam=lam, threshold=kind, tol=tol, n_steps=40_000)
    records = {"lca": lca(x, phi, cfg), "fixed point": lca_fixed_point(x, phi, cfg), "dense": lca_dense(x, phi, cfg),
               "brian": lca_brian(x, phi, cfg, target="numpy"), "ista": ista(x, phi, lam, 20_000, kind, tol=tol),
               "fista": fista(x, phi, lam, 5_000, kind, tol=tol)}
    ref = records["fixed point"].codes
    for name, r in records.items():
        r_full = np.square(x - r.codes @ phi.T).sum(1)
        np.testing.assert_allclose(r.recon_error, r_full, rtol=1e-12, err_msg=name)
        assert r.energy[-1] == pytest.approx(energy(x, phi, r.codes, lam, kind).mean(), rel=1e-12), name
        assert r.fraction_active == np.count_nonzero(r.codes) / r.codes.size, name
        assert r.converged is not None and r.converged.all() and r.residual.max() <= tol, name
        np.testing.assert_allclose(r.codes, ref, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(r.recon_error, records["fixed point"].recon_error, rtol=1e-3, err_msg=name)
