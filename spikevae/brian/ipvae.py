"""The iP-VAE's inference as a Brian2 spiking circuit.

One neuron per (patch, latent). Time is cut into iteration periods of ``period`` seconds, each of
``substeps`` Brian2 time steps. During period m neuron k emits a Poisson number of spikes with mean
``e^{u_k}`` (its membrane potential u is the log of the expected spikes per period): at the period's
first step it draws ``n ~ Pois(e^u)`` with Brian2's ``poisson()``, and spikes at a uniformly random
subset of ``n`` of the period's steps (at each step with probability ``n_left / steps_left``), which
is how a Poisson process places a given number of spikes. A count above ``substeps`` cannot be emitted
in one period; such spikes are dropped and counted (``clipped_spikes``).

Spikes carry the recurrent input: each spike of neuron j adds ``W_kj`` to ``rec_k`` of every neuron k
of its patch, ``W = Φᵀ Σ⁻¹ Φ`` (Brian2 ``Synapses``, or for large K a ``network_operation`` that
multiplies the period's spike counts by W once per period). At the end of the period every neuron
updates its potential with the iP-VAE's rule (:meth:`spikevae.models.ipvae.IPVAE.step`)::

    u ← SCU(max(u + SCU(max(η (ff − rec), −8), c_du), −8), c_u),   ff = Φᵀ Σ⁻¹ x − b

and ``rec`` is cleared. So the spikes of period m are drawn at rate ``e^{u_m}``, drive the update to
``u_{m+1}``, and are the circuit's read-out of iteration m, exactly as in the torch iteration
(:meth:`spikevae.models.ipvae.IPVAE.infer`). Period 0 spikes at the prior rates ``e^{u0}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import ArgumentError
from ..records import Presentations, SpikeTrains
from ._state import quiet_brian, run_checked, runtime_build

__all__ = ["IPVAECircuitConfig", "CircuitResult", "CircuitParameters", "ipvae_brian", "iteration_counts"]


@dataclass(frozen=True)
class IPVAECircuitConfig:
    """How the iP-VAE's iterations map onto time."""

    period: float = 0.01  # s per inference iteration (10 ms: 1 spike per iteration = 100 Hz)
    substeps: int = 50  # Brian2 time steps per iteration (at most this many spikes per neuron per iteration)
    inhibition: str = "dense"  # dense (network operation, any K) | synapses (Brian2 Synapses, B·K² of them)
    target: str = "numpy"  # Brian2 runtime target: numpy | cython

    def validate(self) -> IPVAECircuitConfig:
        if not (1e-4 <= self.period <= 10.0):
            raise ArgumentError(f"period must be between 0.1 ms and 10 s per iteration, got {self.period!r} s")
        if not 1 <= self.substeps <= 10_000:
            raise ArgumentError(f"substeps must be between 1 and 10,000, got {self.substeps}")
        if self.period / self.substeps < 1e-7:
            raise ArgumentError(f"period / substeps = {self.period / self.substeps:.3g} s is below Brian2's 0.1 µs "
                                "resolution: fewer substeps or a longer period")
        if self.inhibition not in ("dense", "synapses"):
            raise ArgumentError(f"inhibition must be 'dense' or 'synapses', got {self.inhibition!r}")
        if self.target not in ("numpy", "cython"):
            raise ArgumentError(f"the iP-VAE circuit runs on Brian2's runtime targets numpy or cython, got {self.target!r}")
        return self

    @property
    def dt(self) -> float:
        return self.period / self.substeps


@dataclass
class CircuitResult:
    """Spikes of an iP-VAE circuit run and their counts per iteration."""

    spikes: SpikeTrains | None  # None unless recorded; patch b is shown during [b·D, (b+1)·D), D = (n_iter + 1)·period
    counts: np.ndarray  # (n_iter + 1, B, K) spikes per period; period 0 at the prior rates, period t the read-out of t
    u: np.ndarray  # (B, K) membrane potentials after the last update
    clipped_spikes: int  # drawn spikes that did not fit in their period (0 unless a count exceeded ``substeps``)
    config: IPVAECircuitConfig


class CircuitParameters(NamedTuple):
    """An iP-VAE's parameters as the circuit needs them (float64 numpy; what
    :meth:`spikevae.models.ipvae.IPVAE.circuit_parameters` returns)."""

    phi: np.ndarray  # (M, K) dictionary Φ
    inv_var: np.ndarray  # (M,) 1/σ², the pixel precisions
    bias: np.ndarray  # (K,) b, the drive's bias
    eta: float  # η, the potential's learning rate per iteration
    u0: np.ndarray  # (K,) initial potentials (log of the prior's expected spikes per period)
    c_u: float  # soft ceiling of u
    c_du: float  # soft ceiling of one update of u
    u_floor: float  # floor of u and of one update


@quiet_brian
def ipvae_brian(model, x: np.ndarray, n_iter: int, config: IPVAECircuitConfig = IPVAECircuitConfig(),
                seed: int = 0, meta: dict | None = None, record: bool = True) -> CircuitResult:
    """Run an iP-VAE's inference on patches ``x`` (B, M) as a Brian2 spiking circuit for ``n_iter``
    iterations (``n_iter + 1`` periods, the first at the prior rates). ``record=False``: no spike monitor, only
    the counts per period (the spikes are the same; receptive-field mapping needs only the counts)."""
    cfg = config.validate()
    if n_iter < 1:
        raise ArgumentError(f"the number of iterations T must be >= 1, got {n_iter}")
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    params = model if isinstance(model, CircuitParameters) else model.circuit_parameters()
    phi, inv_var, bias, eta, u0, c_u, c_du, u_floor = params
    if x.shape[1] != phi.shape[0]:
        raise ArgumentError(f"inputs have {x.shape[1]} pixels, the model {phi.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ArgumentError("inputs hold NaN or infinite values")
    B, K = len(x), phi.shape[1]
    if cfg.inhibition == "synapses" and B * K * K > 2e7:
        raise ArgumentError(f"{B} patches x {K}^2 synapses is too many (limit 2e7); use inhibition='dense'")
    W = (phi * inv_var[:, None]).T @ phi  # (K, K) ΦᵀΣ⁻¹Φ
    ff = (x * inv_var) @ phi - bias  # (B, K)
    with runtime_build(cfg.target) as b2:
        unit, time, counts, u, clipped = _run(b2, cfg, W, ff, u0, eta, c_u, c_du, u_floor, B, K, n_iter, seed, record)
    if not record:
        return CircuitResult(None, counts, u, clipped, cfg)
    D = (n_iter + 1) * cfg.period
    t = time + (unit // K) * D  # patch b during [b·D, (b+1)·D)
    order = np.lexsort((unit % K, t))
    pres = Presentations(np.arange(B), np.zeros(B, np.int64), np.arange(B) * D, np.arange(1, B + 1) * D,
                         np.full((B, K), np.nan))
    info = {"model": "ipvae-circuit", "period_s": cfg.period, "substeps": cfg.substeps, "n_iter": n_iter,
            "seed": seed, "inhibition": cfg.inhibition, **(meta or {})}
    st = SpikeTrains((unit % K)[order], t[order], K, B * D, cfg.dt, pres, info)
    return CircuitResult(st, counts, u, clipped, cfg)


def _run(b2, cfg, W, ff, u0, eta, c_u, c_du, u_floor, B, K, n_iter, seed, record=True):
    b2.seed(seed)
    S = cfg.substeps
    dt = cfg.dt * b2.second
    ns = {"S": S, "eta": eta, "c_u": c_u, "c_du": c_du, "u_floor": u_floor}
    grp = b2.NeuronGroup(B * K, """u : 1
ff : 1 (constant)
rec : 1
n_left : 1
count : 1
started : 1""", threshold="rand() < n_left / (S - (int(t / dt + 0.5) % S))", reset="n_left -= 1\ncount += 1",
                         dt=dt, namespace=ns, name="ipvae_units")
    grp.u = np.tile(u0, B)
    grp.ff = ff.ravel()
    objs = [grp]
    if cfg.inhibition == "synapses":
        syn = b2.Synapses(grp, grp, "w : 1 (constant)", on_pre="rec_post += w", dt=dt, name="ipvae_recurrent")
        off = (np.arange(B) * K)[:, None]
        jj, kk = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")  # pre j → post k carries W[k, j]
        syn.connect(i=(off + jj.ravel()[None, :]).ravel(), j=(off + kk.ravel()[None, :]).ravel())
        syn.w = np.tile(W.T.ravel(), B)
        objs.append(syn)
    else:
        count_arr = grp.variables["count"].get_value()
        rec_arr = grp.variables["rec"].get_value()

        @b2.network_operation(when="start", order=0, dt=S * dt, name="ipvae_recurrent")
        def _recurrent():
            rec_arr[:] = (count_arr.reshape(B, K) @ W.T).ravel()  # rec_k = Σ_j W_kj count_j

        objs.append(_recurrent)
    # the period boundary: record the closing period's counts, update u from its spikes, draw the next counts
    counts = np.zeros((n_iter + 1, B, K), dtype=np.int32)
    count_view = grp.variables["count"].get_value()
    n_view = grp.variables["n_left"].get_value()
    clipped = {"n": 0}

    @b2.network_operation(when="start", order=-1, dt=S * dt, name="ipvae_readout")
    def _readout(t):
        m = int(round(float(np.asarray(t).ravel()[0]) / float(S * dt)))  # periods completed
        if m >= 1:
            counts[m - 1] = count_view.reshape(B, K)
            clipped["n"] += int(np.rint(n_view).sum())  # spikes drawn but not emitted in the closing period

    grp.run_regularly("""du = clip(eta * (ff - rec), u_floor, inf)
du = c_du - log(1 + exp(c_du - du))
u_new = clip(u + du, u_floor, inf)
u = started * (c_u - log(1 + exp(c_u - u_new))) + (1 - started) * u
started = 1
rec = 0
count = 0
n_left = poisson(exp(u))""", dt=S * dt, when="start", order=1, name="ipvae_update")
    objs.append(_readout)
    mon = b2.SpikeMonitor(grp, name="ipvae_spikes") if record else None
    net = b2.Network(*objs, *([mon] if record else []))
    run_checked(net, (n_iter + 1) * S * dt, namespace=ns)
    counts[n_iter] = count_view.reshape(B, K)
    clipped["n"] += int(np.rint(n_view).sum())
    unit = np.asarray(mon.i[:], dtype=np.int64) if record else None
    time = np.asarray(mon.t_[:], dtype=np.float64) if record else None
    u = np.array(grp.u[:]).reshape(B, K)
    del net, objs, grp, mon
    return unit, time, counts, u, clipped["n"]


def iteration_counts(spikes: SpikeTrains, n_iter: int) -> np.ndarray:
    """Spike counts per iteration period (n_iter + 1, B, K) of an iP-VAE circuit's :class:`SpikeTrains`."""
    S = int(spikes.meta["substeps"])
    B, K = len(spikes.presentations), spikes.n_units
    step = np.rint(spikes.time / spikes.dt).astype(np.int64)  # spike times are on the dt grid
    b, m = np.divmod(step, (n_iter + 1) * S)
    m //= S
    if len(step) and (b.max() >= B or m.max() > n_iter):
        raise ArgumentError(f"spikes run past {B} patches x {n_iter + 1} periods; wrong n_iter?")
    out = np.zeros((n_iter + 1, B, K), dtype=np.int32)
    np.add.at(out, (m, b, spikes.unit), 1)
    return out

