"""Locally Competitive Algorithm (Rozell et al. 2008): the reference solvers in numpy.

Dynamics ``τ du/dt = b − u − (ΦᵀΦ − I)·a``, ``b = Φᵀx``, ``a = T_λ(u)`` with unit-norm
atoms (columns of Φ). Thresholds: ``soft`` (ℓ1, the LASSO), ``hard`` (ℓ0-like) and
``nonneg`` (soft, a ≥ 0). Energy ``E = ½‖x − Φa‖² + λ Σ C(a)`` with ``C = |a|``
(soft, nonneg) or ``C = λ/2 · 1[a ≠ 0]`` (hard; Rozell et al.'s ℓ0 cost).

- :func:`lca` is the reference: forward Euler, batched over inputs (numpy, float64).
  Inhibition ``G·a`` is computed from the active units only (a sparse product: only
  active units inhibit), and integration can stop early on ``‖Δu‖/‖u‖``.
- :func:`ista`, :func:`fista`: proximal-gradient comparators on the same objective.
- :func:`lca_fixed_point`: the converged code, certified by the relative duality gap.

Every solver returns one :class:`LCAResult` with the same meaning in every field. The Brian2 networks are
:mod:`spikevae.brian.lca`'s; dictionary learning is :mod:`spikevae.lca.dictionary`'s.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from ..errors import ArgumentError

__all__ = ["THRESHOLDS", "LCAConfig", "MIN_TOL", "LCAResult", "threshold", "energy", "optimality", "duality_gap",
           "normalise_atoms", "check_problem", "threshold_into", "lca", "lca_fixed_point", "lca_dense", "ista",
           "fista"]

THRESHOLDS = ("soft", "hard", "nonneg")


@dataclass(frozen=True)
class LCAConfig:
    """LCA inference settings (time in seconds; τ/dt steps per time constant).

    Integration stops, input by input, on an optimality certificate: for the convex thresholds
    (soft, nonneg) the relative duality gap ``(E(a) − D(ν)) / E(a) ≤ tol``, which bounds the energy's
    distance from the optimum, ``E(a) − E* ≤ tol·E(a)``; for the hard threshold (not convex) the
    fixed-point residual ``‖b − G·a − u‖ / ‖u‖ ≤ tol``. ``n_steps`` is a cap: inputs still above
    ``tol`` when it is reached are reported (``LCAResult.converged``) and a warning is logged.
    ``tol = 0`` runs exactly ``n_steps`` steps (fixed-length transients, benchmarks).
    """

    lam: float = 0.1  # threshold λ (same units as b = Φᵀx)
    tau: float = 0.010  # membrane time constant, s
    dt: float = 0.0001  # Euler step, s (τ/dt = 100 steps per time constant, the lcapt default)
    n_steps: int = 200_000  # cap on the Euler steps (2,000 τ)
    threshold: str = "soft"  # soft | hard | nonneg
    tol: float = 1e-4  # relative duality gap (soft, nonneg) or fixed-point residual (hard) to stop at; 0: never stop
    record_every: int = 0  # record the energy every this many steps (0: only at the end)
    check_every: int = 0  # test the stopping rule every this many steps (0: every τ/4, then every ~5 % of the steps)

    def validate(self) -> LCAConfig:
        """Raise ``ValueError`` naming the bad field; return self."""
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ArgumentError(f"lambda must be finite and >= 0, got {self.lam!r}")
        if not (self.tau > 0 and math.isfinite(self.tau)):
            raise ArgumentError(f"tau must be > 0, got {self.tau!r}")
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ArgumentError(f"dt must be > 0, got {self.dt!r}")
        if self.dt > self.tau:
            raise ArgumentError(f"dt ({self.dt}) must not exceed tau ({self.tau}): Euler is unstable")
        if self.n_steps < 1:
            raise ArgumentError(f"n_steps must be >= 1, got {self.n_steps}")
        if self.threshold not in THRESHOLDS:
            raise ArgumentError(f"threshold must be one of {', '.join(THRESHOLDS)}, got {self.threshold!r}")
        if not (self.tol == 0 or MIN_TOL <= self.tol < 1):
            raise ArgumentError(f"tolerance {self.tol!r} cannot be met: use 0 (fixed steps) or a value in "
                                f"[{MIN_TOL:g}, 1) (float64 energies resolve about 1e-13 of their size)")
        if self.check_every < 0 or self.record_every < 0:
            raise ArgumentError("check_every and record_every must be >= 0")
        return self

    @property
    def check_interval(self) -> int:
        """Steps between two tests of the stopping rule (the grid every test lies on)."""
        return self.check_every or max(1, round(0.25 * self.tau / self.dt))

    def next_check(self, n: int) -> int:
        """The step of the next test of the stopping rule after step ``n``: every ``check_every`` steps when
        set; by default every τ/4 for the first 20 tests and then every ~5 % of the steps taken (on the τ/4
        grid), so an input stops at most 5 % of its steps late and a run of 2,000 τ tests about 200 times
        instead of 8,000 (each test costs two products with Φ)."""
        c = self.check_interval
        if self.check_every:
            return n + c
        return n + c * max(1, n // (20 * c))


MIN_TOL = 1e-11


class LCAResult(NamedTuple):
    """Outcome of an LCA (or ISTA/FISTA) run on a batch."""

    codes: np.ndarray  # a, (B, K) sparse codes
    states: np.ndarray  # u, (B, K) final membrane states (for ISTA/FISTA: the pre-threshold iterate)
    energy: np.ndarray  # (n_records,) batch-mean energy, recorded every `record_every` steps and at the end
    energy_steps: np.ndarray  # (n_records,) step index of each energy record
    recon_error: np.ndarray  # (B,) squared error ‖x − Φa‖² (full, as every command's MSE; the energy has ½ of it)
    fraction_active: float  # mean of a ≠ 0
    n_steps: int  # steps taken by the slowest input (early stopping may end before the cap)
    steps: np.ndarray | None = None  # (B,) steps each input took
    residual: np.ndarray | None = None  # (B,) relative duality gap (soft, nonneg) or fixed-point residual (hard)
    converged: np.ndarray | None = None  # (B,) residual <= tol


def threshold(u: np.ndarray, lam: float, kind: str = "soft") -> np.ndarray:
    """``T_λ(u)``: soft ``sign(u)·max(|u|−λ, 0)``, hard ``u·1[|u|>λ]`` or nonneg ``max(u−λ, 0)``."""
    if kind not in THRESHOLDS:
        raise ArgumentError(f"threshold must be one of {', '.join(THRESHOLDS)}, got {kind!r}")
    u = np.asarray(u, dtype=np.float64)
    return threshold_into(u, lam, kind, np.empty_like(u), np.empty_like(u))


def energy(x: np.ndarray, phi: np.ndarray, a: np.ndarray, lam: float, kind: str = "soft") -> np.ndarray:
    """Per-input energy ``½‖x − Φa‖² + λ Σ C(a)`` (B,)."""
    r = x - a @ phi.T
    rec = 0.5 * np.einsum("bd,bd->b", r, r)
    if kind == "hard":
        return rec + 0.5 * lam**2 * np.count_nonzero(a, axis=1)
    return rec + lam * np.abs(a).sum(1)


def optimality(x: np.ndarray, phi: np.ndarray, u: np.ndarray, lam: float, kind: str = "soft") -> np.ndarray:
    """Per-input stopping residual of the state ``u`` (B,), the quantity ``LCAConfig.tol`` bounds.

    Soft and nonneg (convex): the relative duality gap ``(E(a) − D(ν)) / E(a)`` with ``a = T_λ(u)``,
    ``r = x − Φa`` and the dual point ``ν = s·r`` scaled into the dual feasible set
    (``‖Φᵀν‖∞ ≤ λ`` for soft, ``Φᵀν ≤ λ`` for nonneg); ``D(ν) = ½‖x‖² − ½‖x − ν‖²``. Since
    ``D(ν) ≤ E* ≤ E(a)``, the energy is within ``gap·E(a)`` of the optimum. Hard (not convex): the
    fixed-point residual ``‖b − G·a − u‖ / ‖u‖ = ‖Φᵀr + a − u‖ / ‖u‖`` of the dynamics.
    """
    a = threshold(u, lam, kind)
    if kind == "hard":
        c = (x - a @ phi.T) @ phi  # Φᵀ(x − Φa), (B, K)
        return np.linalg.norm(c + a - u, axis=1) / np.maximum(np.linalg.norm(u, axis=1), 1e-300)
    return duality_gap(x, phi, a, lam, kind)


def duality_gap(x: np.ndarray, phi: np.ndarray, a: np.ndarray, lam: float, kind: str = "soft") -> np.ndarray:
    """Relative duality gap (B,) of codes ``a`` for ``½‖x − Φa‖² + λ‖a‖₁`` (soft; nonneg adds ``a ≥ 0``).

    An upper bound on ``(E(a) − E*) / E(a)``, with a dual point scaled from the residual (see :func:`optimality`)."""
    if kind not in ("soft", "nonneg"):
        raise ArgumentError("the duality gap is defined for the convex thresholds soft and nonneg")
    r = x - a @ phi.T
    c = r @ phi  # Φᵀ(x − Φa), (B, K)
    rr = np.einsum("bd,bd->b", r, r)
    primal = 0.5 * rr + lam * np.abs(a).sum(1)
    top = np.abs(c).max(1) if kind == "soft" else np.maximum(c.max(1), 0.0)
    s = np.where(top > lam, lam / np.maximum(top, 1e-300), 1.0)
    # ½‖x‖² − ½‖x − s r‖² = s⟨x, r⟩ − ½ s²‖r‖²
    dual = s * np.einsum("bd,bd->b", x, r) - 0.5 * s * s * rr
    gap = np.maximum(primal - dual, 0.0)
    return np.where(primal > 0, gap / np.where(primal > 0, primal, 1.0), 0.0)


def normalise_atoms(phi: np.ndarray) -> np.ndarray:
    """Columns scaled to unit norm (all-zero columns are left at zero)."""
    n = np.linalg.norm(phi, axis=0, keepdims=True)
    return phi / np.where(n > 0, n, 1.0)


def check_problem(x: np.ndarray, phi: np.ndarray, cfg: LCAConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs (B, D) and dictionary (D, K); return float64 copies. One clear ``ValueError`` otherwise."""
    x = np.asarray(x, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    if phi.ndim != 2:
        raise ArgumentError(f"dictionary must be (D, K), got shape {phi.shape}")
    if x.shape[1] != phi.shape[0]:
        raise ArgumentError(f"patches have {x.shape[1]} pixels but the dictionary atoms have {phi.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ArgumentError("inputs contain non-finite values")
    if not np.all(np.isfinite(phi)):
        raise ArgumentError("dictionary contains non-finite values")
    norms = np.linalg.norm(phi, axis=0)
    if not np.allclose(norms, 1.0, atol=1e-6):
        raise ArgumentError(f"dictionary atoms must have unit norm (norms range {norms.min():.4g}..{norms.max():.4g}); "
                         "use normalise_atoms")
    if cfg is not None:
        cfg.validate()
    return x, phi


_POOL = None


log = logging.getLogger(__name__)


def threshold_into(u: np.ndarray, lam: float, kind: str, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """``T_λ(u)`` written into ``out`` (two passes, no temporaries)."""
    if kind == "soft":  # sign(u)·max(|u| − λ, 0) = u − clip(u, −λ, λ)
        np.clip(u, -lam, lam, out=tmp)
        return np.subtract(u, tmp, out=out)
    if kind == "nonneg":
        np.subtract(u, lam, out=out)
        return np.maximum(out, 0.0, out=out)
    np.abs(u, out=tmp)
    np.greater(tmp, lam, out=tmp)
    return np.multiply(u, tmp, out=out)


def _inhibition(a: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``a @ G`` from the active units only: cost ∝ nnz(a)·K instead of B·K².

    Rows are split over two threads (scipy's sparse product releases the GIL). Measured on 2
    cores (B = 1000, K = 512): two-thread BLAS does the dense product in about 5 ms, scipy's CSR
    kernel needs about 5 ms at 3 % active units and 10 ms at 10 %, so above 3 % dense BLAS is used.
    """
    global _POOL
    if np.count_nonzero(a) > 0.03 * a.size:
        return a @ G
    from concurrent.futures import ThreadPoolExecutor  # only the sparse path needs these

    from scipy import sparse

    B = a.shape[0]
    if B < 64:
        return np.asarray(sparse.csr_matrix(a) @ G)
    if _POOL is None:
        _POOL = ThreadPoolExecutor(2)
    h = B // 2
    parts = [_POOL.submit(lambda s: np.asarray(sparse.csr_matrix(a[s]) @ G), s) for s in (slice(0, h), slice(h, B))]
    return np.vstack([p.result() for p in parts])


_KINDS = {"soft": 0, "nonneg": 1, "hard": 2}


def _kernel():
    """The compiled Euler loop (spikevae/_lca_kernel.pyx), or None when it cannot be built here."""
    from ..brian._build import load_kernel

    try:
        return load_kernel("_lca_kernel")
    except ImportError as exc:
        import logging

        logging.getLogger(__name__).info("LCA: compiled kernel unavailable (%s); using numpy", exc)
        return None


def _kernel_steps(kern, kb: np.ndarray, Gk: np.ndarray, u: np.ndarray, lam: float, k: float, n: int,
                  kind: str) -> None:
    """``n`` Euler steps of every row of ``u`` in place, rows split over the cores (the kernel
    releases the GIL)."""
    import os

    global _POOL
    B = u.shape[0]
    n_threads = max(1, min(os.cpu_count() or 1, 8, B))
    if n_threads == 1:
        kern.lca_rows(kb, Gk, u, lam, k, n, _KINDS[kind], 0, B)
        return
    from concurrent.futures import ThreadPoolExecutor

    if _POOL is None or _POOL._max_workers < n_threads:
        _POOL = ThreadPoolExecutor(n_threads)
    edges = np.linspace(0, B, n_threads + 1).astype(int)
    futs = [_POOL.submit(kern.lca_rows, kb, Gk, u, lam, k, n, _KINDS[kind], int(r0), int(r1))
            for r0, r1 in zip(edges[:-1], edges[1:]) if r1 > r0]
    for f in futs:
        f.result()


def lca(x: np.ndarray, phi: np.ndarray, cfg: LCAConfig = LCAConfig(), u0: np.ndarray | None = None,
        sparse: bool = True, progress: bool = False, compiled: bool = True) -> LCAResult:
    """Reference LCA: forward Euler ``u += dt/τ (b − u − G·a)``, batched, run to convergence.

    Each input stops when its :func:`optimality` residual is at most ``cfg.tol`` (tested at the steps of
    ``cfg.next_check``; converged inputs are frozen while the others go on), or at the
    cap ``cfg.n_steps``, where the inputs still above ``tol`` are logged as a warning.

    Parameters
    ----------
    x : ndarray (B, D) or (B, P, P)
    phi : ndarray (D, K), unit-norm columns
    cfg : LCAConfig
    u0 : ndarray (B, K), optional
        Initial states (default 0).
    sparse : bool
        Compute the inhibition from active units only (same numbers up to rounding, less work).
    progress : bool
        tqdm bar over steps.
    compiled : bool
        With ``sparse``: run the steps in the compiled kernel (built on first use, once per
        machine; numpy when it cannot be built). Each input's state stays in cache for a whole
        block of steps and only its active units' rows of G are read.
    """
    x, phi = check_problem(x, phi, cfg)
    B, K = x.shape[0], phi.shape[1]
    k = cfg.dt / cfg.tau
    Gk = k * (phi.T @ phi - np.eye(K))  # (K, K) lateral inhibition, times dt/τ
    kb = k * (x @ phi)  # (B, K) feed-forward drive Φᵀx, times dt/τ
    u = np.zeros_like(kb) if u0 is None else np.array(u0, dtype=np.float64)
    kern = _kernel() if (sparse and compiled) else None

    def advance(ul: np.ndarray, kbl: np.ndarray, m: int) -> None:
        """``m`` Euler steps of the rows of ``ul`` in place."""
        if kern is not None:
            _kernel_steps(kern, kbl, Gk, ul, cfg.lam, k, m, cfg.threshold)
            return
        a, tmp, du = np.empty_like(ul), np.empty_like(ul), np.empty_like(ul)
        for _ in range(m):
            threshold_into(ul, cfg.lam, cfg.threshold, a, tmp)
            inh = _inhibition(a, Gk) if sparse else a @ Gk
            np.subtract(kbl, inh, out=du)  # du = dt/τ (b − G a − u)
            np.multiply(ul, k, out=tmp)
            np.subtract(du, tmp, out=du)
            np.add(ul, du, out=ul)

    # steps run in blocks that end on every energy record and stopping test
    next_check = cfg.next_check(0) if cfg.tol > 0 else cfg.n_steps + 1
    live = np.arange(B)  # inputs still integrating
    ul, kbl = np.ascontiguousarray(u), np.ascontiguousarray(kb)
    steps = np.full(B, cfg.n_steps, dtype=np.int64)
    residual = np.full(B, np.inf)
    energies, rec_steps = [], []
    n = 0
    bar = tqdm(total=cfg.n_steps, disable=not progress, desc="lca", unit="step")
    while n < cfg.n_steps and live.size:
        stop = min(cfg.n_steps, next_check)
        if cfg.record_every:
            stop = min(stop, (n // cfg.record_every + 1) * cfg.record_every)
        m = stop - n
        advance(ul, kbl, m)
        n += m
        bar.update(m)
        if cfg.record_every and n % cfg.record_every == 0:
            u[live] = ul
            energies.append(energy(x, phi, threshold(u, cfg.lam, cfg.threshold), cfg.lam, cfg.threshold).mean())
            rec_steps.append(n)
        if n == next_check:
            next_check = cfg.next_check(n)
            res = optimality(x[live], phi, ul, cfg.lam, cfg.threshold)
            residual[live] = res
            done = res <= cfg.tol
            if done.any():
                u[live] = ul
                steps[live[done]] = n
                live, ul, kbl = live[~done], np.ascontiguousarray(ul[~done]), np.ascontiguousarray(kbl[~done])
    bar.close()
    u[live] = ul
    if live.size:
        steps[live] = n
        residual[live] = optimality(x[live], phi, ul, cfg.lam, cfg.threshold)
    return _result(x, phi, u, cfg, energies, rec_steps, steps, residual)


def _result(x, phi, u, cfg, energies, rec_steps, steps, residual, codes=None, tol=None, budget=None) -> LCAResult:
    """The :class:`LCAResult` of final states ``u`` (codes ``T_λ(u)`` unless given); logs the inputs that did not
    converge to ``tol`` (default ``cfg.tol``) within ``budget`` (default: ``cfg.n_steps`` Euler steps)."""
    tol = cfg.tol if tol is None else tol
    budget = budget or f"{cfg.n_steps} steps ({cfg.n_steps * cfg.dt / cfg.tau:.0f} tau)"
    a = threshold(u, cfg.lam, cfg.threshold) if codes is None else codes
    e = energy(x, phi, a, cfg.lam, cfg.threshold)
    n = int(steps.max()) if steps.size else 0
    if not rec_steps or rec_steps[-1] != n:
        energies, rec_steps = [*energies, e.mean()], [*rec_steps, n]
    converged = residual <= tol if tol > 0 else np.ones(len(u), bool)
    if not converged.all():
        log.warning("LCA: %d of %d inputs did not converge within %s: %s up to %.3g > tol %g; raise the cap",
                    int((~converged).sum()), len(u), budget,
                    "fixed-point residual" if cfg.threshold == "hard" else "relative duality gap",
                    float(residual[~converged].max()), tol)
    r = x - a @ phi.T
    return LCAResult(a, u, np.array(energies), np.array(rec_steps), np.einsum("bd,bd->b", r, r),
                     float(np.count_nonzero(a) / a.size), n, steps, residual, converged)


def lca_fixed_point(x: np.ndarray, phi: np.ndarray, cfg: LCAConfig = LCAConfig(), tol: float = 1e-9) -> LCAResult:
    """The LCA's limit, computed directly: the state ``u* = b − G·a*`` with ``a* = T_λ(u*)`` that the dynamics
    of :func:`lca` converge to (Rozell et al. 2008; Balavoine et al. 2012), for the convex thresholds.

    ``a*`` minimises the energy: for ``soft`` the LASSO, for ``nonneg`` the non-negative LASSO. It is found by
    coordinate descent (scikit-learn's ``Lasso`` on the Gram matrix, ``α = λ/D``) and certified input by input:
    its :func:`optimality` residual (relative duality gap) must be at most ``tol`` (default 1e-9, far below
    ``cfg.tol``); inputs above are reported in ``converged`` and logged. ``steps`` are coordinate-descent epochs
    (``cfg.dt``/``cfg.tau`` play no part). Use it where only the converged code matters (receptive fields,
    comparisons, sweeps): on coherent dictionaries the dynamics need thousands of τ to get there.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    x, phi = check_problem(x, phi, cfg)
    if cfg.threshold == "hard":
        raise ArgumentError("the hard threshold has no unique fixed point (its energy is not convex); "
                            "run the dynamics (lca(), or --simulator reference) instead")
    D, K = phi.shape
    B = x.shape[0]
    gram = phi.T @ phi
    a = np.zeros((B, K))
    epochs = np.zeros(B, dtype=np.int64)
    if cfg.lam == 0:
        raise ArgumentError("lambda = 0 has no sparse fixed point (the energy is the least-squares error); use lam > 0")

    def solve(rows):  # one model per thread; scikit-learn's coordinate descent releases the GIL
        model = Lasso(alpha=cfg.lam / D, fit_intercept=False, precompute=gram, positive=cfg.threshold == "nonneg",
                      tol=1e-12, max_iter=100_000, selection="cyclic")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the certificate below decides
            for i in rows:
                model.fit(phi, x[i])
                a[i] = model.coef_
                epochs[i] = model.n_iter_

    import os

    n_threads = max(1, min(os.cpu_count() or 1, 8, B // 16))
    if n_threads == 1:
        solve(range(B))
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(solve, np.array_split(np.arange(B), n_threads)))
    u = x @ phi - a @ (gram - np.eye(K))  # u* = b − G a*
    residual = duality_gap(x, phi, a, cfg.lam, cfg.threshold)
    return _result(x, phi, u, cfg, [], [], epochs, residual, codes=a, tol=tol,
                   budget="100000 coordinate-descent epochs")


def lca_dense(x: np.ndarray, phi: np.ndarray, cfg: LCAConfig = LCAConfig()) -> LCAResult:
    """The plain dense formulation (lca-pytorch's way): ``u += dt/τ (b − u − G·T(u))`` with ``G·a`` over all
    units every step, stopped when every input meets ``cfg.tol`` (same test and interval as :func:`lca`) or at
    the cap. The baseline of ``benchmarks/lca.py``."""
    x, phi = check_problem(x, phi, cfg)
    K = phi.shape[1]
    G = phi.T @ phi - np.eye(K)
    b = x @ phi
    u = np.zeros_like(b)
    k = cfg.dt / cfg.tau
    next_check, checked = cfg.next_check(0), 0
    n = 0
    residual = np.full(len(u), np.inf)
    while n < cfg.n_steps:
        u = u + k * (b - u - threshold(u, cfg.lam, cfg.threshold) @ G)
        n += 1
        if cfg.tol > 0 and n == next_check:
            next_check, checked = cfg.next_check(n), n
            residual = optimality(x, phi, u, cfg.lam, cfg.threshold)
            if residual.max() <= cfg.tol:
                break
    if cfg.tol > 0 and checked != n:
        residual = optimality(x, phi, u, cfg.lam, cfg.threshold)
    return _result(x, phi, u, cfg, [], [], np.full(len(u), n), residual)


def ista(x: np.ndarray, phi: np.ndarray, lam: float, n_iter: int = 500, kind: str = "soft",
         accelerate: bool = False, tol: float = LCAConfig().tol) -> LCAResult:
    """ISTA (``accelerate=False``) or FISTA on ``½‖x − Φa‖² + λ‖a‖₁`` (kind soft or nonneg), step 1/L.

    Returns the record every solver returns: ``recon_error`` the full squared error ‖x − Φa‖², ``states`` the last
    pre-threshold iterate, ``residual`` the relative duality gap and ``converged`` where it is at most ``tol``.
    """
    if kind not in ("soft", "nonneg"):
        raise ArgumentError("ISTA/FISTA here solve the soft (l1) and nonneg problems")
    x, phi = check_problem(x, phi)
    L = np.linalg.norm(phi, 2) ** 2  # Lipschitz constant of the gradient
    a = np.zeros((x.shape[0], phi.shape[1]))
    u = a.copy()
    y, t = a.copy(), 1.0
    energies = []
    for _ in range(n_iter):
        u = y - (y @ phi.T - x) @ phi / L  # gradient step; its threshold is the next iterate
        a_new = threshold(u, lam / L, kind)
        if accelerate:
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            y = a_new + ((t - 1) / t_new) * (a_new - a)
            t = t_new
        else:
            y = a_new
        a = a_new
        energies.append(energy(x, phi, a, lam, kind).mean())
    r = x - a @ phi.T
    gap = duality_gap(x, phi, a, lam, kind)
    return LCAResult(a, u, np.array(energies), np.arange(1, n_iter + 1), np.einsum("bd,bd->b", r, r),
                     float(np.count_nonzero(a) / a.size), n_iter, np.full(len(a), n_iter), gap, gap <= tol)


def fista(x: np.ndarray, phi: np.ndarray, lam: float, n_iter: int = 500, kind: str = "soft",
          tol: float = LCAConfig().tol) -> LCAResult:
    """FISTA (Beck & Teboulle 2009) on the same objective as :func:`ista`."""
    return ista(x, phi, lam, n_iter, kind, accelerate=True, tol=tol)

