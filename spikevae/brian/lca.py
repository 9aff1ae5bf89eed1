"""The LCA as Brian2 networks: continuous-time leaky dynamics and integrate-and-fire neurons.

- :func:`lca_brian`: the dynamics ``τ du/dt = b − u − (ΦᵀΦ − I)·a`` of :func:`spikevae.lca.lca` as a Brian2
  network, one neuron per (input, unit); the inhibition through Brian2 ``Synapses`` (small K) or a dense
  ``network_operation`` on Brian2's arrays (K = 512 and batches). Agrees with :func:`spikevae.lca.lca` to ~1e-15
  at equal dt, and stops where it stops.
- :func:`spiking_lca`: integrate-and-fire neurons whose inhibition arrives as spikes (Shapero et al. 2014; Tang,
  Lin & Davies 2017); their rates converge to the non-negative LCA solution; signed codes use ON/OFF pairs
  (dictionary ``[Φ, −Φ]``).

Both take numpy arrays and return the records of :mod:`spikevae.lca` and :mod:`spikevae.records`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import ArgumentError
from ..lca.solvers import LCAConfig, LCAResult, _inhibition, _result, check_problem, optimality, threshold
from ..records import Presentations, SpikeTrains
from ._state import quiet_brian, run_checked, runtime_build

__all__ = ["lca_brian", "SpikingLCAResult", "spiking_lca"]

# ------------------------------------------------------------------ Brian2
_THRESHOLD_EXPR = {
    "soft": "(u - lam)*int(u > lam) + (u + lam)*int(u < -lam)",
    "hard": "u*int(abs(u) > lam)",
    "nonneg": "(u - lam)*int(u > lam)",
}


@quiet_brian
def lca_brian(x: np.ndarray, phi: np.ndarray, cfg: LCAConfig = LCAConfig(), inhibition: str = "dense",
              target: str = "numpy") -> LCAResult:
    """The LCA as a Brian2 network: one neuron per (input, unit), Euler at ``cfg.dt``.

    Parameters
    ----------
    inhibition : str
        ``synapses``: Brian2 ``Synapses`` with a summed variable (B·K² synapses; small problems);
        ``dense``: a ``network_operation`` computing ``a @ G`` on Brian2's state arrays (runtime targets).
    target : str
        Brian2 runtime code generation, ``numpy`` or ``cython``.
    """

    x, phi = check_problem(x, phi, cfg)
    if inhibition not in ("synapses", "dense"):
        raise ArgumentError(f"inhibition must be 'synapses' or 'dense', got {inhibition!r}")
    if target not in ("numpy", "cython"):
        raise ArgumentError("lca_brian runs on Brian2's runtime targets: numpy or cython")
    B, K = x.shape[0], phi.shape[1]
    G = phi.T @ phi - np.eye(K)
    bmat = x @ phi
    with runtime_build(target) as b2:
        u, steps, residual = _lca_brian_run(b2, x, phi, bmat, G, cfg, inhibition, B, K)
    return _result(x, phi, u, cfg, [], [], steps, residual)


def _lca_brian_run(b2, x, phi, bmat, G, cfg, inhibition, B, K):
    """Run the network with the stopping rule of :func:`lca` as a network operation: every
    ``cfg.next_check`` step an input that meets ``cfg.tol`` is frozen (``live = 0``); the run stops when
    all are. Returns the final states (B, K), steps and residuals per input."""
    ns = {"tau": cfg.tau * b2.second, "lam": cfg.lam}
    eqs = f"""du/dt = live * (b - u - inh) / tau : 1
a = {_THRESHOLD_EXPR[cfg.threshold]} : 1
b : 1 (constant)
live : 1
"""
    clock_dt = cfg.dt * b2.second
    objs = []
    if inhibition == "synapses":
        grp = b2.NeuronGroup(B * K, eqs + "inh : 1\n", method="euler", namespace=ns, dt=clock_dt, name="lca_units")
        syn = b2.Synapses(grp, grp, "w : 1 (constant)\ninh_post = w * a_pre : 1 (summed)", dt=clock_dt,
                          name="lca_inhibition")
        ii, jj = np.nonzero(G != 0)
        off = (np.arange(B) * K)[:, None]
        syn.connect(i=(off + ii[None, :]).ravel(), j=(off + jj[None, :]).ravel())
        syn.w = np.tile(G[ii, jj], B)
        objs = [grp, syn]
    else:
        grp = b2.NeuronGroup(B * K, eqs + "inh : 1\n", method="euler", namespace=ns, dt=clock_dt, name="lca_units")
        u_arr = grp.variables["u"].get_value()
        inh_arr = grp.variables["inh"].get_value()
        lam, kind = cfg.lam, cfg.threshold

        @b2.network_operation(when="start", dt=clock_dt, name="lca_dense_inhibition")
        def _inhibit():
            a = threshold(u_arr.reshape(B, K), lam, kind)
            inh_arr[:] = _inhibition(a, G).ravel()

        objs = [grp, _inhibit]
    grp.b = bmat.ravel()
    grp.live = 1.0
    live = np.ones(B, bool)
    steps = np.full(B, cfg.n_steps, dtype=np.int64)
    residual = np.full(B, np.inf)
    check = cfg.check_interval
    state = {"done": False, "next": cfg.next_check(0)}
    net = b2.Network(*objs)
    u_view = grp.variables["u"].get_value()
    live_view = grp.variables["live"].get_value()

    @b2.network_operation(when="start", order=-1, dt=check * clock_dt, name="lca_stopping_rule")
    def _stopping_rule(t):
        n = int(round(float(np.asarray(t).ravel()[0]) / float(clock_dt)))  # steps taken so far
        if n == 0 or n != state["next"]:  # the tests lie on the τ/4 grid, ever sparser (LCAConfig.next_check)
            return
        state["next"] = cfg.next_check(n)
        rows = np.flatnonzero(live)
        u = u_view.reshape(B, K)
        residual[rows] = optimality(x[rows], phi, u[rows], cfg.lam, cfg.threshold)
        done = rows[residual[rows] <= cfg.tol]
        if done.size:
            steps[done] = n
            live[done] = False
            live_view.reshape(B, K)[done] = 0.0
        if not live.any():
            state["done"] = True
            net.stop()

    if cfg.tol > 0:
        net.add(_stopping_rule)
    run_checked(net, cfg.n_steps * clock_dt, finished=lambda: state["done"], namespace=ns)
    u = np.array(grp.u[:]).reshape(B, K)
    if live.any():
        residual[live] = optimality(x[live], phi, u[live], cfg.lam, cfg.threshold)
    del objs, grp  # the network and its stopping rule refer to each other; the collector frees both
    return u, steps, residual


class SpikingLCAResult(NamedTuple):
    """Rate codes and spikes of a spiking LCA run."""

    codes: np.ndarray  # (B, K) rate codes: spikes / duration × τ (ON − OFF for signed codes)
    spikes: SpikeTrains  # input b is presentation b, shown during [b·T, (b+1)·T); unit m = neuron m (ON units first)
    duration: float  # simulated time per input, s


@quiet_brian
def spiking_lca(x: np.ndarray, phi: np.ndarray, cfg: LCAConfig = LCAConfig(threshold="nonneg"), duration: float = 0.5,
                tau_syn: float = 0.005, seed: int = 0, target: str = "numpy", meta: dict | None = None
                ) -> SpikingLCAResult:
    """Spiking LCA: integrate-and-fire neurons with spike-carried inhibition (Tang, Lin & Davies 2017).

    Neuron ``m`` with drive ``b_m = d_mᵀx`` integrates ``τ dv/dt = b_m − λ − I_m``, spikes at
    ``v ≥ 1`` (reset ``v −= 1``), and cannot fall below 0 (a unit whose net drive is below λ
    stays silent). Every spike of unit ``n`` adds ``G_mn τ / τ_syn`` to ``I_m``, which decays
    with ``τ_syn``, so ``I_m`` tracks ``Σ_n G_mn a_n`` with ``a_n = τ × rate_n``. At a fixed point
    ``τ·rate = max(b − G a − λ, 0)``: the non-negative LCA solution. Signed codes (``soft``)
    use ON/OFF pairs, i.e. the non-negative problem on ``D = [Φ, −Φ]``.

    Returns the rate codes ``τ·(spike count)/duration`` and the spikes as one
    :class:`~spikevae.records.SpikeTrains` record (``meta`` is stored in it).
    """

    x, phi = check_problem(x, phi, cfg)
    if cfg.threshold == "hard":
        raise ArgumentError("the spiking LCA implements the soft (ON/OFF pairs) and nonneg thresholds")
    if not duration > 0:
        raise ArgumentError(f"duration must be > 0 s, got {duration!r}")
    if not tau_syn > 0:
        raise ArgumentError(f"tau_syn must be > 0 s, got {tau_syn!r}")
    D = np.hstack([phi, -phi]) if cfg.threshold == "soft" else phi
    B, M = x.shape[0], D.shape[1]
    if B * M * M > 1e7:
        raise ArgumentError(f"{B} inputs x {M}^2 synapses is too large for the spiking LCA "
                         f"(limit 1e7 synapses); use at most {max(1, int(1e7 // (M * M)))} inputs at a time")
    G = D.T @ D - np.eye(M)
    bmat = x @ D
    with runtime_build(target) as b2:
        unit, time = _spiking_lca_run(b2, bmat, G, cfg, B, M, duration, tau_syn, seed)
    counts = np.bincount(unit, minlength=B * M).reshape(B, M)
    rates = counts * cfg.tau / duration
    codes = rates[:, : phi.shape[1]] - rates[:, phi.shape[1]:] if cfg.threshold == "soft" else rates
    t = time + (unit // M) * duration  # input b is shown during [b·T, (b+1)·T)
    order = np.lexsort((unit % M, t))
    T = duration
    pres = Presentations(np.arange(B), np.zeros(B, np.int64), np.arange(B) * T, np.arange(1, B + 1) * T,
                         np.full((B, M), np.nan))
    st = SpikeTrains((unit % M)[order], t[order], M, B * T, cfg.dt, pres, {"model": "spiking-lca", **(meta or {})})
    return SpikingLCAResult(codes, st, duration)


def _spiking_lca_run(b2, bmat, G, cfg, B, M, duration, tau_syn, seed) -> tuple[np.ndarray, np.ndarray]:
    b2.seed(seed)
    ns = {"tau": cfg.tau * b2.second, "lam": cfg.lam, "tau_syn": tau_syn * b2.second}
    grp = b2.NeuronGroup(B * M, """dv/dt = (b - lam - I) / tau : 1
dI/dt = -I / tau_syn : 1
b : 1 (constant)""", threshold="v >= 1", reset="v -= 1", method="euler", namespace=ns,
                         dt=cfg.dt * b2.second, name="slca_units")
    grp.run_regularly("v = clip(v, 0, inf)", when="after_resets", name="slca_floor")
    grp.b = bmat.ravel()
    ii, jj = np.nonzero(G != 0)
    off = (np.arange(B) * M)[:, None]
    syn = b2.Synapses(grp, grp, "w : 1 (constant)", on_pre="I_post += w", dt=cfg.dt * b2.second, name="slca_syn")
    syn.connect(i=(off + jj[None, :]).ravel(), j=(off + ii[None, :]).ravel())  # pre n → post m carries G[m, n]
    syn.w = np.tile(G[ii, jj] * cfg.tau / tau_syn, B)
    mon = b2.SpikeMonitor(grp, name="slca_spikes")
    net = b2.Network(grp, syn, mon)
    run_checked(net, duration * b2.second, namespace=ns)
    unit = np.asarray(mon.i[:], dtype=np.int64)
    time = np.asarray(mon.t_[:], dtype=np.float64)
    del net, syn, grp, mon
    return unit, time

