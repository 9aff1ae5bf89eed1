"""Receptive-field mapping of model units: white noise (STA), sparse noise (ON/OFF maps), gratings, Gabor fits,
and the standard V1 property battery (orientation, spatial frequency, size, F1/F0, subregion overlap).

P-VAE units respond with real spikes: frames → posterior rates λ → Brian2 Poisson neurons
(:func:`spikevae.spikes.simulate_poisson`) → counts per frame window. LCA units respond with their converged
sparse code (:func:`spikevae.lca.lca_fixed_point`), which is signed: each LCA unit is mapped as the two channels a
recording would see, its ON (a > 0) and OFF (a < 0) rectified responses (channel k is unit k's ON half, channel
K + k its OFF half, whose STA is then −atom k).
``simulations/rf_mapping.py`` writes a mapping's files and figures; the comparison scripts call
:func:`map_receptive_fields` directly.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..analysis.battery import (  # noqa: F401 - the battery's names, beside the mapping they read
    MIN_RATE_HZ,
    PROPERTIES,
    grid_from_trials,
    grid_properties,
    rf_summary,
    v1_properties,
    v1_summary,
)
from ..analysis.geometry import R2_GOOD
from ..analysis.receptive_fields import STA_SNR_MIN, GratingTuning, fit_gabor, frames_for_snr, grating_tuning, sta, sta_snr
from ..errors import ArgumentError
from ..records import SpikeTrains
from ..spikes.producers import repeat_major

log = logging.getLogger(__name__)

__all__ = ["RFConfig", "RFMapping", "V1Battery", "map_receptive_fields", "map_producer", "rf_producer", "is_ipvae",
           "sparse_noise", "DIAMETERS"]


class RFMapping(NamedTuple):
    """Everything one receptive-field mapping measured (unit k is latent k of the model)."""

    model: str  # pvae | lca | ipvae
    sta: np.ndarray  # (C, P, P) white-noise spike-triggered (or code-weighted) averages per channel, image space
    counts: np.ndarray  # (n_frames, C) white-noise responses (spike counts, or rectified LCA codes)
    on: np.ndarray  # (C, P, P) mean response to a bright pixel at each position (sparse noise)
    off: np.ndarray  # (C, P, P) mean response to a dark pixel
    tuning: GratingTuning  # grating responses per orientation and frequency (mean over phases and repeats)
    order: np.ndarray  # (n_fit,) fitted channels, most active first
    fits: list  # one dict per fitted channel: Gabor fit, OSI, preferred grating, corr(STA, encoder/decoder)
    encoder: np.ndarray | None  # (C, P, P) linear encoder filters (P-VAE, linear encoder)
    decoder: np.ndarray | None  # (C, P, P) decoder atoms (normalised for the LCA; −atom for an OFF channel)
    white_noise: np.ndarray  # (n_frames, P, P) the white-noise frames (image space)
    shown: np.ndarray  # (n_frames, P, P) what the model saw (whitened frames in pixel space)
    white_noise_spikes: SpikeTrains | None  # the P-VAE's white-noise spike trains
    n_gratings: int  # grating presentations
    latent: np.ndarray  # (C,) the model unit of each channel
    sign: np.ndarray  # (C,) +1: the unit's response (P-VAE spikes, LCA ON half), −1: the LCA unit's OFF half
    battery: V1Battery | None  # the V1 property protocols (None when not run)
    grating_spikes: SpikeTrains | None  # the P-VAE's spikes to the grating grid (protocol in .battery.grid_params)
    size_spikes: SpikeTrains | None  # the P-VAE's spikes to the aperture gratings
    sta_lags: np.ndarray | None  # (T + 1, C, P, P) iP-VAE: the STA of the spikes of each inference iteration
    lag_spikes: np.ndarray | None  # (T + 1, C) iP-VAE: white-noise spikes of each iteration (t = 0: the prior)


class V1Battery(NamedTuple):
    """Responses to the V1 property protocols, per channel (mean over repeats)."""

    orientations: np.ndarray  # (O,) rad in [0, π)
    frequencies: np.ndarray  # (F,) cycles/pixel
    n_phases: int  # frames per drifting-grating cycle
    grid: np.ndarray  # (C, O, F, n_phases) response to each frame of the grating grid
    grid_params: dict  # per-frame parameters of the grid (orientation, spatial_frequency, phase)
    diameters: np.ndarray  # (S,) aperture diameters, pixels
    size: np.ndarray  # (C, S) mean response over phases at each diameter (NaN: channel not measured)
    size_params: dict  # per-frame parameters of the aperture gratings (unit, diameter, centre, ...)
    centre: np.ndarray  # (C, 2) aperture centre used (column x, row y, pixels)
    window: float | None  # frame duration, s (spiking models; None for the LCA's analog code)
    grid_repeats: np.ndarray | None = None  # (R, C, O, F, n_phases) the grid per repeat (None: one presentation)
    size_repeats: np.ndarray | None = None  # (R, C, S) the size responses per repeat (NaN: channel not measured)


#: aperture diameters of the size protocol, pixels (for P = 16; scaled with the patch): 10 sizes up to a field
#: that covers the whole patch from any centre
DIAMETERS = tuple(float(d) for d in np.geomspace(1.0, 2.0 * np.sqrt(2.0) * 16, 10))


def sparse_noise(n: int, P: int, rng: np.random.Generator, amplitude: float = 4.0):
    """One pixel at ±amplitude on a zero background per frame → (frames (n, P, P), pixel index, sign)."""
    pix = rng.integers(0, P * P, n)
    sign = rng.choice([-1.0, 1.0], n)
    frames = np.zeros((n, P * P), np.float32)
    frames[np.arange(n), pix] = amplitude * sign
    return frames.reshape(n, P, P), pix, sign


def _fork_map(fn, items: list, workers: int | None, min_per_worker: int = 4, desc: str | None = None) -> list:
    """``[fn(x) for x in items]``, in ``workers`` forked processes (default: every core this process may use)
    when there are at least ``min_per_worker`` items per worker; the results are those of the serial loop. A
    progress bar named ``desc`` when given."""
    from tqdm.auto import tqdm

    from .._resources import bounded_workers, die_with_parent, usable_cores

    n = bounded_workers(workers or usable_cores(), len(items))
    bar = dict(total=len(items), disable=desc is None, desc=desc)
    import multiprocessing

    if n <= 1 or len(items) < min_per_worker * n or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(x) for x in tqdm(items, **bar)]
    import concurrent.futures

    with concurrent.futures.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"),
                                                initializer=die_with_parent) as pool:
        return list(tqdm(pool.map(fn, items, chunksize=max(1, len(items) // (8 * n))), **bar))


def _fit_gabors(images: list, workers: int | None, progress: bool = False) -> list:
    """:func:`fit_gabor` of each image, in forked workers (:func:`_fork_map`)."""
    return _fork_map(fit_gabor, images, workers, desc="Gabor fits" if progress else None)


@dataclass(frozen=True)
class RFConfig:
    """The receptive-field protocols: white noise, sparse noise, the grating grid and the size protocol."""

    frames: int = 20_000  # white-noise frames (STA)
    sparse_frames: int = 5_000  # sparse-noise frames (ON/OFF maps)
    grating_repeats: int = 4  # presentations of every frame of the grating grid (1 for a deterministic code)
    space: str = "pixel"  # pixel: noise through the checkpoint's whitening filter (a retina), model: in model space
    fit_units: int = 512  # Gabor fits (and the size protocol) for this many channels, most active first
    seed: int = 0  # root seed of the stimuli and of each protocol's spikes
    battery: bool = True  # run the V1 property protocols (else the grid alone at 8 x 4 x 4)
    n_orientations: int = 24  # orientations of the grating grid over [0, π) (7.5° apart)
    frequencies: tuple | None = None  # spatial frequencies of the grid, cycles/pixel (default DEFAULT_FREQUENCIES)
    n_phases: int = 8  # frames per drifting-grating cycle
    diameters: tuple | None = None  # aperture diameters, pixels (default DIAMETERS scaled to the patch)
    size_repeats: int = 2  # presentations of every aperture grating
    workers: int | None = None  # processes for each protocol's chunks and the fits (default: every core)
    progress: bool = False  # progress bars

    def validate(self) -> RFConfig:
        if min(self.frames, self.sparse_frames, self.grating_repeats, self.fit_units, self.size_repeats) < 1:
            raise ArgumentError("frames, sparse_frames, grating_repeats, size_repeats and fit_units must be >= 1")
        if self.n_orientations < 4 or self.n_phases < 4:
            raise ArgumentError("the grating grid needs >= 4 orientations and >= 4 phases per cycle")
        if self.space not in ("pixel", "model"):
            raise ArgumentError(f"space must be 'pixel' or 'model', got {self.space!r}")
        return self


class _Responder:
    """What the protocols ask of a producer: its response to frames, per channel, and the filters an STA is
    compared with. ``respond(x, seed, meta, repeats, against)`` → (mean over repeats (n, C), spike trains or None,
    responses per repeat (repeats, n, C) or None)."""

    kind: str  # pvae | lca | ipvae
    window: float | None  # frame duration, s (None: an analog code)

    def __init__(self, producer, cfg: RFConfig):
        self.producer, self.cfg = producer, cfg
        self.prep = producer.preprocessing
        self.P = self.prep.patch_size
        C = producer.n_units
        self.latent, self.sign = np.arange(C), np.ones(C, np.int64)
        self.encoder = self.decoder = None
        self.lag_sums: dict = {}

    @property
    def deterministic(self) -> bool:
        return self.window is None


class _SpikeResponder(_Responder):
    """A P-VAE: frames → λ → Brian2 Poisson neurons → counts per frame window."""

    kind = "pvae"

    def __init__(self, producer, cfg):
        super().__init__(producer, cfg)
        m, K, P = producer.model, producer.n_units, self.P
        self.window = producer.layer.window
        self.encoder = m.encoder_filters
        self.decoder = m.dictionary.T.reshape(K, P, P) if m.config.decoder == "lin" else None

    def respond(self, x, seed, meta=None, repeats=1, against=None):
        from ..spikes import default_workers, simulate_poisson

        lam, n = self.producer.rates(x), len(x)
        layer = self.producer.layer_for(lam)
        index, rep = repeat_major(n, repeats)
        st = simulate_poisson(lam, layer, seed=seed, progress=self.cfg.progress, meta=meta,
                              index=index, repeat=rep,
                              workers=self.cfg.workers or default_workers(n * repeats, layer.chunk))
        per = st.counts().reshape(repeats, n, -1)
        return per.mean(0), st, per


def _lca_rates(producer, xf: np.ndarray) -> np.ndarray:
    """The LCA producer's λ of one batch of frames (run in a forked worker)."""
    return producer.rates(xf)


class _CodeResponder(_Responder):
    """An LCA: its converged code, rectified into ON and OFF channels, is the response (deterministic: no spikes
    are drawn); channel k is atom k's ON half, channel K + k its OFF half, whose STA is then −atom k."""

    kind, window = "lca", None

    def __init__(self, producer, cfg):
        super().__init__(producer, cfg)
        phi, P = producer.phi, self.P
        K = phi.shape[1]
        self.decoder = np.concatenate([phi.T, -phi.T]).reshape(2 * K, P, P)
        self.latent, self.sign = np.tile(np.arange(K), 2), np.repeat([1, -1], K)

    def respond(self, x, seed, meta=None, repeats=1, against=None):
        xf = x.reshape(len(x), -1).astype(np.float64)
        desc = (meta or {}).get("protocol", "LCA codes") if self.cfg.progress else None
        a = _fork_map(functools.partial(_lca_rates, self.producer), [xf[i:i + 250] for i in range(0, len(xf), 250)],
                      self.cfg.workers, 2, desc)
        return np.concatenate(a), None, None


#: patches per Brian2 run of the iP-VAE circuit (its neurons are patches x latents)
IPVAE_BATCH = 1024


class _CircuitResponder(_Responder):
    """An iP-VAE: each frame is one presentation of ``n_iter`` inference iterations of its Brian2 circuit (after the
    prior period); the response is the spike count over those iterations, and with ``against`` (the frames an STA is
    taken against) each iteration's spike-weighted frame sums are kept for the STA over iteration lags."""

    kind = "ipvae"

    def __init__(self, producer, cfg):
        super().__init__(producer, cfg)
        K, P = producer.n_units, self.P
        self.window = producer.n_iter * producer.circuit.period
        self.decoder = producer.params.phi.T.reshape(K, P, P)

    def respond(self, x, seed, meta=None, repeats=1, against=None):
        """Counts per repeat (repeats, n, K); frames run in batches of :data:`IPVAE_BATCH`, each with its own seed
        drawn from ``seed``."""
        from tqdm.auto import tqdm

        from ..brian.ipvae import ipvae_brian

        prod, n = self.producer, len(x)
        n_iter, K = prod.n_iter, prod.n_units
        xf = np.asarray(x, dtype=np.float64).reshape(n, -1)
        out = np.zeros((repeats, n, K))
        seeds = np.random.SeedSequence(seed).generate_state(repeats * ((n + IPVAE_BATCH - 1) // IPVAE_BATCH))
        label = self.cfg.progress and (meta or {}).get("protocol", "iP-VAE circuit")
        bar = tqdm(total=repeats * n, disable=not label, desc=str(label), unit="frame")
        j = 0
        for r in range(repeats):
            for i in range(0, n, IPVAE_BATCH):
                bar.update(min(IPVAE_BATCH, n - i))
                res = ipvae_brian(prod.params, xf[i:i + IPVAE_BATCH], n_iter, prod.circuit, seed=int(seeds[j]),
                                  record=False)
                j += 1
                c = res.counts.astype(np.float64)  # (n_iter + 1, B, K)
                out[r, i:i + IPVAE_BATCH] = c[1:].sum(0)
                if against is not None:
                    a = np.asarray(against[i:i + IPVAE_BATCH], dtype=np.float64).reshape(len(c[0]), -1)
                    self.lag_sums.setdefault("sum", np.zeros((n_iter + 1, K, a.shape[1])))
                    self.lag_sums.setdefault("n", np.zeros((n_iter + 1, K)))
                    self.lag_sums["sum"] += np.matmul(c.transpose(0, 2, 1), a)  # (n_iter + 1, K, pixels)
                    self.lag_sums["n"] += c.sum(1)
        bar.close()
        return out.mean(0), None, out


def _responder(producer, cfg: RFConfig) -> _Responder:
    """The protocols' view of a producer (the one place that asks which model it is)."""
    from ..spikes.producers import IPVAEProducer, LCAProducer, PoissonProducer

    for kind, cls in ((PoissonProducer, _SpikeResponder), (LCAProducer, _CodeResponder),
                      (IPVAEProducer, _CircuitResponder)):
        if isinstance(producer, kind):
            return cls(producer, cfg)
    raise ArgumentError(f"receptive-field mapping takes a P-VAE, LCA or iP-VAE producer, got {type(producer).__name__}")


#: a P-VAE mapping's largest step, s; each protocol runs at the largest step up to it that keeps every rate·dt <= 0.05
RF_DT = 2.5e-4


def rf_producer(model=None, *, dictionary: np.ndarray | None = None, preprocessing=None, lam: float = 0.5,
                window: float = 0.05, dt: float | None = None, target: str = "auto", n_iter: int = 16, circuit=None):
    """The producer a mapping runs on: the LCA on ``dictionary`` (normalised here) at threshold ``lam`` with signed
    codes; else an iP-VAE (a model or checkpoint) through its circuit (default 20 Brian2 steps per iteration, the
    cython target); else a P-VAE (None: the shipped one) through Poisson neurons of ``window`` s frames at ``dt``
    (None: each protocol at the largest step <= :data:`RF_DT` that keeps every rate·dt <= 0.05, so that one
    Bernoulli draw per step never under-disperses the counts)."""
    from ..spikes import PoissonLayerConfig
    from ..spikes.producers import IPVAEProducer, LCAProducer, PoissonProducer

    if dictionary is not None:
        from ..lca import LCAConfig, normalise_atoms

        if preprocessing is None:
            raise ArgumentError("an LCA mapping needs the dictionary's preprocessing (for the patch size)")
        return LCAProducer(normalise_atoms(np.asarray(dictionary, dtype=np.float64)), preprocessing, LCAConfig(lam=lam))
    if is_ipvae(model):
        from ..brian.ipvae import IPVAECircuitConfig
        from ..models.ipvae import IPVAE, load

        if n_iter < 1:
            raise ArgumentError(f"the number of iterations must be >= 1, got {n_iter}")
        model = model if isinstance(model, IPVAE) else load(model)
        return IPVAEProducer(model, n_iter, circuit or IPVAECircuitConfig(substeps=20, target="cython"))
    from ..models.trained import TrainedModel, load_model

    model = model if isinstance(model, TrainedModel) else load_model(model)
    model._need_poisson("RF mapping through spikes")
    return PoissonProducer(model, PoissonLayerConfig(window=window, dt=RF_DT if dt is None else dt, target=target,
                                                     chunk=20_000), auto_dt=dt is None)


def map_receptive_fields(model=None, *, dictionary: np.ndarray | None = None, preprocessing=None, lam: float = 0.5,
                         window: float = 0.05, dt: float | None = None, target: str = "auto", n_iter: int = 16,
                         circuit=None, **protocol) -> RFMapping:
    """Map the receptive fields of a P-VAE's spiking units, of an iP-VAE's circuit neurons, or of LCA units.

    The model (``model``, ``dictionary``, ``preprocessing``, ``lam``, ``window``, ``dt``, ``target``, ``n_iter``,
    ``circuit``) becomes a producer (:func:`rf_producer`) and the keyword arguments ``protocol`` an
    :class:`RFConfig`; :func:`map_producer` does the mapping. An iP-VAE's frame is one presentation of ``n_iter``
    inference iterations after the prior period, its response the spike count over those iterations, and
    ``sta_lags`` holds the STA of each iteration's spikes.
    """
    cfg = RFConfig(**protocol).validate()
    return map_producer(rf_producer(model, dictionary=dictionary, preprocessing=preprocessing, lam=lam, window=window,
                                    dt=dt, target=target, n_iter=n_iter, circuit=circuit), cfg)


def map_producer(producer, cfg: RFConfig = RFConfig()) -> RFMapping:
    """Map the receptive fields of a producer's units (:mod:`spikevae.spikes.producers`) with the protocols of
    ``cfg``: white noise → STA, sparse noise → ON/OFF maps, the grating grid → tuning, Gabor fits of the most active
    channels, and (``cfg.battery``) the size protocol."""
    from .._resources import check_memory

    cfg = cfg.validate()
    resp = _responder(producer, cfg)
    P, C = resp.P, len(resp.latent)
    # white noise → STA: frames (float32, twice), rates, counts and the STA's work arrays (float64)
    check_memory(max(cfg.frames, cfg.sparse_frames) * (8.0 * P * P + 8.0 * 3 * C),
                 f"{cfg.frames} white-noise frames for {C} units")
    rng = np.random.default_rng(cfg.seed)
    wn, shown, counts, st, maps, lags = _white_noise(resp, cfg, rng)
    on, off = _on_off(resp, cfg, rng)
    g, c_g, g_st, reps, tun, g_rep = _grating_grid(resp, cfg)
    order, rows, enc = _gabor_fits(resp, cfg, wn, counts, maps, tun)
    bat = s_st = None
    if cfg.battery:
        bat, s_st = _size_protocol(resp, cfg, g, c_g, tun, maps, rows, order, g_rep)
    return RFMapping(resp.kind, maps, counts, on, off, tun, order, rows, enc, resp.decoder, wn, shown, st,
                     len(g.images) * reps, resp.latent, resp.sign, bat, g_st, s_st, lags, resp.lag_sums.get("n"))


def _meta(resp: _Responder, cfg: RFConfig, protocol: str) -> dict:
    return {"protocol": protocol, "seed": cfg.seed, "model": resp.kind}


def _white_noise(resp: _Responder, cfg: RFConfig, rng: np.random.Generator):
    """White-noise frames, what the model saw, the responses and their STA (and the iP-VAE's STA per lag)."""
    P, prep = resp.P, resp.prep
    wn = rng.standard_normal((cfg.frames, P, P)).astype(np.float32)
    shown = wn
    if cfg.space == "pixel" and resp.kind in ("pvae", "ipvae") and prep.kind == "natural":
        from ..data import whitening_filter

        # the checkpoint's whitening filter, frame by frame; unit variance per pixel, like the training data
        shown = np.fft.irfft2(np.fft.rfft2(wn) * whitening_filter((P, P), prep.whiten_f0, prep.whiten_n), s=(P, P))
        shown = (shown / shown.std()).astype(np.float32)
    counts, st, _ = resp.respond(shown, cfg.seed + 1, _meta(resp, cfg, "white-noise RF mapping"), against=wn)
    maps = sta(wn, counts)
    lags = None
    if resp.lag_sums:
        with np.errstate(invalid="ignore", divide="ignore"):
            lags = (resp.lag_sums["sum"] / resp.lag_sums["n"][:, :, None]).reshape(-1, len(resp.latent), P, P)
    return wn, shown, counts, st, maps, lags


def _on_off(resp: _Responder, cfg: RFConfig, rng: np.random.Generator):
    """Sparse noise → ON and OFF maps (C, P, P): the mean response when a pixel is bright, and when it is dark."""
    P, C = resp.P, len(resp.latent)
    sp, pix, sgn = sparse_noise(cfg.sparse_frames, P, rng)
    c_sp, _, _ = resp.respond(sp, cfg.seed + 2, _meta(resp, cfg, "sparse noise"))
    maps = []
    for s in (1.0, -1.0):
        sel = sgn == s
        tot = np.zeros((P * P, C))
        np.add.at(tot, pix[sel], c_sp[sel])
        n_pix = np.bincount(pix[sel], minlength=P * P)[:, None]
        maps.append((tot / np.maximum(n_pix, 1)).T.reshape(C, P, P))
    return maps[0], maps[1]


def _grating_grid(resp: _Responder, cfg: RFConfig):
    """Every orientation x frequency as one drifting cycle, repeated → the grid, its responses and the tuning."""
    from ..stimuli import DEFAULT_FREQUENCIES, grating_grid

    if cfg.battery:
        freqs = DEFAULT_FREQUENCIES if cfg.frequencies is None else cfg.frequencies
        g = grating_grid(resp.P, cfg.n_orientations, freqs, cfg.n_phases)
    else:
        g = grating_grid(resp.P, 8, (0.0625, 0.125, 0.25, 0.375), 4)
    reps = 1 if resp.deterministic else cfg.grating_repeats  # a deterministic code needs one presentation
    c_g, g_st, per_rep = resp.respond(g.images, cfg.seed + 3, _meta(resp, cfg, "grating grid"), reps)
    tun = grating_tuning(c_g, g.params["orientation"], g.params["spatial_frequency"], per_rep if reps >= 2 else None)
    return g, c_g, g_st, reps, tun, per_rep if reps >= 2 else None


def _gabor_fits(resp: _Responder, cfg: RFConfig, wn, counts, maps, tun):
    """Gabor fits of the most active channels' STAs, with their tuning and the STA's agreement with the encoder
    filter and the decoder atom."""
    latent, sign, P = resp.latent, resp.sign, resp.P
    order = [k for k in np.argsort(-counts.sum(0), kind="stable")[:cfg.fit_units] if np.all(np.isfinite(maps[k]))]
    enc = None if resp.encoder is None else resp.encoder[latent]
    snr = sta_snr(wn, counts, maps)
    if order and np.median(snr[order]) < STA_SNR_MIN:  # noise-dominated STAs: say how much longer the noise must be
        need = frames_for_snr(cfg.frames, float(np.median(snr[order])), P * P)
        advice = (f"use frames >= {int(np.ceil(need / 5000) * 5000)} (--frames)" if need is not None else
                  f"no signal is measurable above the noise at {cfg.frames} frames: use many more (--frames)")
        log.warning("the white-noise STAs are noise-dominated (median peak %.1f noise s.d. over the %d mapped channels, "
                    "below %g): Gabor fits and RF centres will be unreliable; %s",
                    float(np.median(snr[order])), len(order), STA_SNR_MIN, advice)
    rows = []
    for k, f in zip(order, _fit_gabors([maps[k] for k in order], cfg.workers, cfg.progress)):
        row = {"unit": int(k), "latent": int(latent[k]), "sign": int(sign[k]), "spikes": float(counts[:, k].sum()),
               "sta_snr": float(snr[k]),
               **f._asdict(), "osi": float(tun.osi[k]), "preferred_orientation": float(tun.preferred_orientation[k]),
               "preferred_frequency": float(tun.preferred_frequency[k])}
        for name, ref in (("corr_sta_encoder", enc), ("corr_sta_decoder", resp.decoder)):
            row[name] = float(np.corrcoef(maps[k].ravel(), ref[k].ravel())[0, 1]) if ref is not None else np.nan
        rows.append(row)
    return order, rows, enc


def _size_protocol(resp: _Responder, cfg: RFConfig, g, c_g, tun, maps, rows, order, g_rep=None):
    """Each fitted channel's preferred grating in apertures of growing diameter centred on its RF (4 phases).
    ``g_rep``: the grid's responses per repeat (R, frames, C), kept for intervals over repeats."""
    from ..stimuli import aperture_gratings

    P, C = resp.P, len(resp.latent)
    n_o, n_ph = cfg.n_orientations, cfg.n_phases
    F = len(g.params["spatial_frequency"]) // (n_o * n_ph)
    grid = c_g.T.reshape(C, n_o, F, n_ph)
    centre = _rf_centres(maps, rows, P)
    d = np.asarray(DIAMETERS if cfg.diameters is None else cfg.diameters, dtype=np.float64) * (
        P / 16 if cfg.diameters is None else 1)
    f0 = grid.mean(-1).reshape(C, -1).argmax(1)  # preferred (orientation, frequency) cell
    oi, fi = np.unravel_index(f0, (n_o, F))
    measured = np.asarray(order, np.int64)
    # one aperture set per distinct (preferred grating, centre to 0.5 px): channels that share them (an LCA
    # unit's ON and OFF halves) share the stimuli
    centre[measured] = np.round(centre[measured] * 2) / 2
    key = np.column_stack([oi[measured], fi[measured], centre[measured]])
    _, first, which = np.unique(key, axis=0, return_index=True, return_inverse=True)
    first = measured[first]
    ag = aperture_gratings(P, tun.orientations[oi[first]], tun.frequencies[fi[first]], centre[first], d)
    c_s, s_st, s_rep = resp.respond(ag.images, cfg.seed + 4, _meta(resp, cfg, "size tuning"),
                                    1 if resp.deterministic else cfg.size_repeats)

    def per_channel(c):  # (frames, C) → (C, diameters), mean over phases; NaN for channels not measured
        per_set = c.reshape(len(first), len(d), 4, C).mean(2)  # (sets, diameters, channels)
        out = np.full((C, len(d)), np.nan)
        out[measured] = per_set[which.ravel(), :, measured]
        return out

    size = per_channel(c_s)
    size_rep = None if s_rep is None or len(s_rep) < 2 else np.stack([per_channel(c) for c in s_rep])
    grid_rep = None if g_rep is None else g_rep.transpose(0, 2, 1).reshape(len(g_rep), C, n_o, F, n_ph)
    ag.params["unit"] = first[ag.params["unit"]]  # the channel whose preferred grating and centre the set uses
    return V1Battery(tun.orientations, tun.frequencies, n_ph, grid, g.params, d, size, ag.params, centre,
                     resp.window, grid_rep, size_rep), s_st


def is_ipvae(model) -> bool:
    """Whether ``model`` is an iP-VAE or the path of an iP-VAE checkpoint."""
    if model is None:
        return False
    from ..models.ipvae import IPVAE

    if isinstance(model, IPVAE):
        return True
    if isinstance(model, (str, os.PathLike)):
        from ..models.checkpoint import IPVAE_FAMILY, load_checkpoint

        return load_checkpoint(model).get("family") == IPVAE_FAMILY
    return False


def _rf_centres(maps: np.ndarray, rows: list, P: int) -> np.ndarray:
    """Each channel's RF centre (x, y): its Gabor fit's when good, else the centroid of the STA's energy, else
    the patch centre."""

    C = len(maps)
    yy, xx = np.mgrid[0:P, 0:P]
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.nan_to_num(maps.reshape(C, -1) ** 2)
        tot = e.sum(1)
        c = np.stack([e @ xx.ravel(), e @ yy.ravel()], 1) / tot[:, None]
    c[~(tot > 0)] = (P - 1) / 2
    for r in rows:
        if r["r2"] >= R2_GOOD and 0 <= r["x0"] <= P - 1 and 0 <= r["y0"] <= P - 1:
            c[r["unit"]] = (r["x0"], r["y0"])
    return c













