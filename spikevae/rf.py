"""Receptive-field mapping of model units: white noise (STA), sparse noise (ON/OFF maps), gratings, Gabor fits.

P-VAE units respond with real spikes: frames → posterior rates λ → Brian2 Poisson neurons
(:func:`spikevae.spiking.simulate_poisson`) → counts per frame window. LCA units respond with
their sparse-code activity (reference solver :func:`spikevae.lca.lca`).
``simulations/rf_mapping.py`` writes a mapping's files and figures; the comparison scripts call
:func:`map_receptive_fields` directly.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .analysis.geometry import R2_GOOD
from .analysis.receptive_fields import GratingTuning, fit_gabor, grating_tuning, sta
from .errors import ArgumentError
from .records import SpikeTrains

__all__ = ["RFMapping", "map_receptive_fields", "sparse_noise", "rf_summary"]


class RFMapping(NamedTuple):
    """Everything one receptive-field mapping measured (unit k is latent k of the model)."""

    model: str  # pvae | lca
    sta: np.ndarray  # (K, P, P) white-noise spike-triggered (or code-weighted) averages, image space
    counts: np.ndarray  # (n_frames, K) white-noise responses (spike counts, or LCA codes)
    on: np.ndarray  # (K, P, P) mean response to a bright pixel at each position (sparse noise)
    off: np.ndarray  # (K, P, P) mean response to a dark pixel
    tuning: GratingTuning  # grating responses per orientation and frequency
    order: np.ndarray  # (n_fit,) fitted units, most active first
    fits: list  # one dict per fitted unit: Gabor fit, OSI, preferred grating, corr(STA, encoder/decoder)
    encoder: np.ndarray | None  # (K, P, P) linear encoder filters (P-VAE, linear encoder)
    decoder: np.ndarray | None  # (K, P, P) decoder atoms (normalised for the LCA)
    white_noise: np.ndarray  # (n_frames, P, P) the white-noise frames (image space)
    shown: np.ndarray  # (n_frames, P, P) what the model saw (whitened frames in pixel space)
    white_noise_spikes: SpikeTrains | None  # the P-VAE's white-noise spike trains
    n_gratings: int  # grating presentations


def sparse_noise(n: int, P: int, rng: np.random.Generator, amplitude: float = 4.0):
    """One pixel at ±amplitude on a zero background per frame → (frames (n, P, P), pixel index, sign)."""
    pix = rng.integers(0, P * P, n)
    sign = rng.choice([-1.0, 1.0], n)
    frames = np.zeros((n, P * P), np.float32)
    frames[np.arange(n), pix] = amplitude * sign
    return frames.reshape(n, P, P), pix, sign


def _fit_gabors(images: list, workers: int | None) -> list:
    """:func:`fit_gabor` of each image, in ``workers`` forked processes (default: every core) when there are
    enough of them; the fits are those of a serial loop."""
    import os

    n = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if n <= 1 or len(images) < 4 * n:
        return [fit_gabor(im) for im in images]
    import concurrent.futures
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return [fit_gabor(im) for im in images]
    with concurrent.futures.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(fit_gabor, images, chunksize=max(1, len(images) // (8 * n))))


def map_receptive_fields(model=None, *, dictionary: np.ndarray | None = None, preprocessing=None,
                         lam: float = 0.5, frames: int = 20_000, sparse_frames: int = 5_000,
                         grating_repeats: int = 4, window: float = 0.05, dt: float = 2.5e-4, target: str = "auto",
                         space: str = "pixel", fit_units: int = 512, seed: int = 0,
                         progress: bool = False, workers: int | None = None) -> RFMapping:
    """Map the receptive fields of a P-VAE's spiking units, or of LCA units on a dictionary.

    Parameters
    ----------
    model : TrainedModel, path or None
        The P-VAE whose units are mapped through spikes (None: the shipped model). Ignored when
        ``dictionary`` is given.
    dictionary : ndarray (D, K), optional
        Map LCA units on these atoms instead (normalised here), at threshold ``lam``; needs
        ``preprocessing`` (for the patch size).
    window, dt, target : P-VAE frame duration (s), Brian2 step (s) and code-generation target.
    space : {'pixel', 'model'}
        pixel: white noise is an image passed through the checkpoint's whitening filter R(f) (a
        retina-like stage) and the STA is taken against the image; model: white noise directly in
        model-input space.
    fit_units : int
        Gabor fits to this many units, most active first.
    workers : int, optional
        Processes running each protocol's Brian2 chunks (default: every core for a protocol of more than one
        chunk; the spikes do not change).
    """
    from .lca import normalise_atoms

    if min(frames, sparse_frames, grating_repeats, fit_units) < 1:
        raise ArgumentError("frames, sparse_frames, grating_repeats and fit_units must be >= 1")
    if space not in ("pixel", "model"):
        raise ArgumentError(f"space must be 'pixel' or 'model', got {space!r}")
    from ._resources import check_memory

    rng = np.random.default_rng(seed)
    if dictionary is not None:
        if preprocessing is None:
            raise ArgumentError("an LCA mapping needs the dictionary's preprocessing (for the patch size)")
        kind, prep = "lca", preprocessing
        phi = normalise_atoms(np.asarray(dictionary, dtype=np.float64))
        P, K = prep.patch_size, phi.shape[1]
        encoder, decoder = None, phi.T.reshape(K, P, P)
    else:
        from .model import TrainedModel, load_model
        from .spiking import PoissonLayerConfig

        kind = "pvae"
        model = model if isinstance(model, TrainedModel) else load_model(model)
        model._need_poisson("RF mapping through spikes")
        layer = PoissonLayerConfig(window=window, dt=dt, target=target, chunk=20_000).validate()
        prep = model.preprocessing
        P, K = model.config.patch_size, model.config.n_latents
        encoder = model.encoder_filters
        decoder = model.dictionary.T.reshape(K, P, P) if model.config.decoder == "lin" else None

    def respond(x, s, meta=None):
        """(responses (n, K), spike trains or None)."""
        if kind == "lca":
            from .lca import LCAConfig, lca_fixed_point

            xf = x.reshape(len(x), -1).astype(np.float64)  # the converged codes (the LCA's fixed point)
            return np.concatenate([lca_fixed_point(xf[i:i + 500], phi, LCAConfig(lam=lam)).codes
                                   for i in range(0, len(xf), 500)]), None
        from .spiking import default_workers, simulate_poisson

        st = simulate_poisson(model.rates(x), layer, seed=s, progress=progress, meta=meta,
                              workers=workers or default_workers(len(x), layer.chunk))
        return st.counts(), st

    # white noise → STA: frames (float32, twice), rates, counts and the STA's work arrays (float64)
    check_memory(max(frames, sparse_frames) * (8.0 * P * P + 8.0 * 3 * K), f"{frames} white-noise frames for {K} units")
    wn = rng.standard_normal((frames, P, P)).astype(np.float32)
    shown = wn
    if space == "pixel" and kind == "pvae" and prep.kind == "natural":
        from .data import whitening_filter

        # the checkpoint's whitening filter, frame by frame; unit variance per pixel, like the training data
        shown = np.fft.irfft2(np.fft.rfft2(wn) * whitening_filter((P, P), prep.whiten_f0, prep.whiten_n), s=(P, P))
        shown = (shown / shown.std()).astype(np.float32)
    counts, st = respond(shown, seed + 1, {"protocol": "white-noise RF mapping", "seed": seed, "model": kind})
    maps = sta(wn, counts)
    # sparse noise → ON / OFF maps (mean response when the pixel is on, per sign)
    sp, pix, sign = sparse_noise(sparse_frames, P, rng)
    c_sp, _ = respond(sp, seed + 2)
    on_off = []
    for s in (1.0, -1.0):
        sel = sign == s
        tot = np.zeros((P * P, K))
        np.add.at(tot, pix[sel], c_sp[sel])
        n_pix = np.bincount(pix[sel], minlength=P * P)[:, None]
        on_off.append((tot / np.maximum(n_pix, 1)).T.reshape(K, P, P))
    # gratings → tuning
    from .stimuli import gratings

    g = gratings(128 * grating_repeats, P)
    c_g, _ = respond(g.images, seed + 3)
    tun = grating_tuning(c_g, g.params["orientation"], g.params["spatial_frequency"])
    # Gabor fits and agreement of the STA with the encoder filter and the decoder atom
    order = [k for k in np.argsort(-counts.sum(0))[:fit_units] if np.all(np.isfinite(maps[k]))]
    rows = []
    for k, f in zip(order, _fit_gabors([maps[k] for k in order], workers)):
        row = {"unit": int(k), "spikes": float(counts[:, k].sum()), **f._asdict(), "osi": float(tun.osi[k]),
               "preferred_orientation": float(tun.preferred_orientation[k]),
               "preferred_frequency": float(tun.preferred_frequency[k])}
        for name, ref in (("corr_sta_encoder", encoder), ("corr_sta_decoder", decoder)):
            row[name] = float(np.corrcoef(maps[k].ravel(), ref[k].ravel())[0, 1]) if ref is not None else np.nan
        rows.append(row)
    return RFMapping(kind, maps, counts, on_off[0], on_off[1], tun, order, rows, encoder, decoder, wn, shown, st,
                     len(g.images))


def rf_summary(m: RFMapping) -> dict:
    """Medians over the fitted units: Gabor-fit quality, OSI, shape and STA agreement (good fits: R² ≥ 0.5)."""
    col = lambda k: np.array([float(r[k]) for r in m.fits])  # noqa: E731
    r2 = col("r2")
    good = r2 >= R2_GOOD
    med = lambda v: float(np.nanmedian(v)) if np.isfinite(v).any() else None  # noqa: E731
    return {"units_fitted": len(m.fits), "gabor_fraction": float(good.mean()), "median_r2": med(r2),
            "median_osi": med(col("osi")), "median_nx": med(col("nx")[good]) if good.any() else None,
            "median_ny": med(col("ny")[good]) if good.any() else None,
            "median_frequency": med(col("frequency")[good]) if good.any() else None,
            "median_corr_sta_encoder": med(col("corr_sta_encoder")),
            "median_corr_sta_decoder": med(col("corr_sta_decoder"))}
