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

import logging
import os
from typing import NamedTuple

import numpy as np

from ..analysis.geometry import R2_GOOD
from ..analysis.receptive_fields import STA_SNR_MIN, GratingTuning, fit_gabor, frames_for_snr, grating_tuning, sta, sta_snr
from ..errors import ArgumentError
from ..records import SpikeTrains

log = logging.getLogger(__name__)

__all__ = ["RFMapping", "V1Battery", "map_receptive_fields", "sparse_noise", "rf_summary", "v1_properties",
           "v1_summary", "PROPERTIES", "DIAMETERS"]


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

    from .._resources import usable_cores

    n = workers or usable_cores()
    bar = dict(total=len(items), disable=desc is None, desc=desc)
    import multiprocessing

    if n <= 1 or len(items) < min_per_worker * n or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(x) for x in tqdm(items, **bar)]
    import concurrent.futures

    with concurrent.futures.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(tqdm(pool.map(fn, items, chunksize=max(1, len(items) // (8 * n))), **bar))


def _fit_gabors(images: list, workers: int | None, progress: bool = False) -> list:
    """:func:`fit_gabor` of each image, in forked workers (:func:`_fork_map`)."""
    return _fork_map(fit_gabor, images, workers, desc="Gabor fits" if progress else None)


_LCA_JOB: dict = {}


def _lca_codes(xf: np.ndarray) -> np.ndarray:
    """The converged LCA codes of one batch (the dictionary and λ are set in :data:`_LCA_JOB` before forking)."""
    from ..lca import LCAConfig, lca_fixed_point

    return lca_fixed_point(xf, _LCA_JOB["phi"], LCAConfig(lam=_LCA_JOB["lam"])).codes


def map_receptive_fields(model=None, *, dictionary: np.ndarray | None = None, preprocessing=None,
                         lam: float = 0.5, frames: int = 20_000, sparse_frames: int = 5_000,
                         grating_repeats: int = 4, window: float = 0.05, dt: float = 2.5e-4, target: str = "auto",
                         space: str = "pixel", fit_units: int = 512, seed: int = 0,
                         progress: bool = False, workers: int | None = None, battery: bool = True,
                         n_orientations: int = 16, frequencies=None, n_phases: int = 8, diameters=None,
                         size_repeats: int = 2, n_iter: int = 16, circuit=None) -> RFMapping:
    """Map the receptive fields of a P-VAE's spiking units, or of LCA units on a dictionary.

    Parameters
    ----------
    model : TrainedModel, IPVAE, path or None
        The P-VAE whose units are mapped through spikes (None: the shipped model), or an iP-VAE, whose units
        are mapped through its Brian2 inference circuit (:func:`spikevae.brian.ipvae.ipvae_brian`): each frame
        is one presentation of ``n_iter`` inference iterations (after the prior period), the response is the
        spike count over those iterations, and ``sta_lags`` holds the STA of each iteration's spikes (the
        spatiotemporal STA over iteration lags). Ignored when ``dictionary`` is given.
    dictionary : ndarray (D, K), optional
        Map LCA units on these atoms instead (normalised here), at threshold ``lam``, by their converged codes
        rectified into ON and OFF channels; needs ``preprocessing`` (for the patch size).
    window, dt, target : P-VAE frame duration (s), Brian2 step (s) and code-generation target.
    space : {'pixel', 'model'}
        pixel: white noise is an image passed through the checkpoint's whitening filter R(f) (a
        retina-like stage; P-VAE and iP-VAE) and the STA is taken against the image; model: white noise
        directly in model-input space.
    fit_units : int
        Gabor fits (and the size protocol) for this many channels, most active first.
    workers : int, optional
        Processes running each protocol's Brian2 chunks (default: every core for a protocol of more than one
        chunk; the spikes do not change).
    battery : bool
        Run the V1 property protocols: the grating grid (``n_orientations`` × ``frequencies`` × one drifting
        cycle of ``n_phases`` frames, ``grating_repeats`` times) and the size protocol (each fitted channel's
        preferred grating in apertures of ``diameters`` pixels centred on its RF, 4 phases, ``size_repeats``
        times). Without it the gratings are the grid alone at 8 orientations x 4 frequencies x 4 phases.
    """
    from ..lca import normalise_atoms
    from ..stimuli import DEFAULT_FREQUENCIES, aperture_gratings, grating_grid

    if min(frames, sparse_frames, grating_repeats, fit_units, size_repeats) < 1:
        raise ArgumentError("frames, sparse_frames, grating_repeats, size_repeats and fit_units must be >= 1")
    if n_orientations < 4 or n_phases < 4:
        raise ArgumentError("the grating grid needs >= 4 orientations and >= 4 phases per cycle")
    if space not in ("pixel", "model"):
        raise ArgumentError(f"space must be 'pixel' or 'model', got {space!r}")
    from .._resources import check_memory

    rng = np.random.default_rng(seed)
    if dictionary is not None:
        if preprocessing is None:
            raise ArgumentError("an LCA mapping needs the dictionary's preprocessing (for the patch size)")
        kind, prep = "lca", preprocessing
        phi = normalise_atoms(np.asarray(dictionary, dtype=np.float64))
        P, K = prep.patch_size, phi.shape[1]
        encoder, decoder = None, np.concatenate([phi.T, -phi.T]).reshape(2 * K, P, P)
        latent, sign = np.tile(np.arange(K), 2), np.repeat([1, -1], K)
    elif _is_ipvae(model):
        from ..brian.ipvae import IPVAECircuitConfig
        from ..models.ipvae import IPVAE, load

        kind = "ipvae"
        model = model if isinstance(model, IPVAE) else load(model)
        circuit = (circuit or IPVAECircuitConfig(substeps=20, target="cython")).validate()
        if n_iter < 1:
            raise ArgumentError(f"the number of iterations must be >= 1, got {n_iter}")
        prep = model.preprocessing
        P, K = prep.patch_size, model.config.n_latents
        encoder, decoder = None, model.phi.detach().double().cpu().numpy().T.reshape(K, P, P)
        latent, sign = np.arange(K), np.ones(K, np.int64)
        window = n_iter * circuit.period
    else:
        from ..models.trained import TrainedModel, load_model
        from ..spikes import PoissonLayerConfig

        kind = "pvae"
        model = model if isinstance(model, TrainedModel) else load_model(model)
        model._need_poisson("RF mapping through spikes")
        layer = PoissonLayerConfig(window=window, dt=dt, target=target, chunk=20_000).validate()
        prep = model.preprocessing
        P, K = model.config.patch_size, model.config.n_latents
        encoder = model.encoder_filters
        decoder = model.dictionary.T.reshape(K, P, P) if model.config.decoder == "lin" else None
        latent, sign = np.arange(K), np.ones(K, np.int64)
    C = len(latent)
    lag_sums = {}

    def respond(x, s, meta=None, repeats=1, against=None):
        """(mean response per stimulus over ``repeats`` (n, C), spike trains or None, the responses of each repeat
        (repeats, n, C) or None for the LCA's deterministic code). iP-VAE with ``against``
        (the frames an STA is taken against): also accumulate each iteration's spike-weighted frame sums."""
        if kind == "lca":
            xf = x.reshape(len(x), -1).astype(np.float64)  # the converged codes (the LCA's fixed point)
            _LCA_JOB.update(phi=phi, lam=lam)
            a = np.concatenate(_fork_map(_lca_codes, [xf[i:i + 250] for i in range(0, len(xf), 250)], workers, 2,
                                         (meta or {}).get("protocol", "LCA codes") if progress else None))
            codes = np.concatenate([np.clip(a, 0, None), np.clip(-a, 0, None)], axis=1)  # ON, OFF channels
            return codes, None, None
        if kind == "ipvae":
            per = _ipvae_respond(model, x, s, repeats, n_iter, circuit, against, lag_sums,
                                 progress and (meta or {}).get("protocol", "iP-VAE circuit"))
            return per.mean(0), None, per
        from ..spikes import simulate_poisson
        from ..spikes.plan import default_workers

        n = len(x)
        index = np.tile(np.arange(n), repeats)
        st = simulate_poisson(model.rates(x), layer, seed=s, progress=progress, meta=meta, index=index,
                              repeat=np.repeat(np.arange(repeats), n),
                              workers=workers or default_workers(n * repeats, layer.chunk))
        per = st.counts().reshape(repeats, n, -1)
        return per.mean(0), st, per

    # white noise → STA: frames (float32, twice), rates, counts and the STA's work arrays (float64)
    check_memory(max(frames, sparse_frames) * (8.0 * P * P + 8.0 * 3 * C), f"{frames} white-noise frames for {C} units")
    wn = rng.standard_normal((frames, P, P)).astype(np.float32)
    shown = wn
    if space == "pixel" and kind in ("pvae", "ipvae") and prep.kind == "natural":
        from ..data import whitening_filter

        # the checkpoint's whitening filter, frame by frame; unit variance per pixel, like the training data
        shown = np.fft.irfft2(np.fft.rfft2(wn) * whitening_filter((P, P), prep.whiten_f0, prep.whiten_n), s=(P, P))
        shown = (shown / shown.std()).astype(np.float32)
    counts, st, _ = respond(shown, seed + 1, {"protocol": "white-noise RF mapping", "seed": seed, "model": kind},
                         against=wn)
    maps = sta(wn, counts)
    lags = None
    if lag_sums:
        with np.errstate(invalid="ignore", divide="ignore"):
            lags = (lag_sums["sum"] / lag_sums["n"][:, :, None]).reshape(n_iter + 1, C, P, P)
    # sparse noise → ON / OFF maps (mean response when the pixel is on, per sign)
    sp, pix, sgn = sparse_noise(sparse_frames, P, rng)
    c_sp, _, _ = respond(sp, seed + 2, {"protocol": "sparse noise", "seed": seed, "model": kind})
    on_off = []
    for s in (1.0, -1.0):
        sel = sgn == s
        tot = np.zeros((P * P, C))
        np.add.at(tot, pix[sel], c_sp[sel])
        n_pix = np.bincount(pix[sel], minlength=P * P)[:, None]
        on_off.append((tot / np.maximum(n_pix, 1)).T.reshape(C, P, P))
    # gratings: every orientation x frequency as one drifting cycle → tuning
    if battery:
        g = grating_grid(P, n_orientations, DEFAULT_FREQUENCIES if frequencies is None else frequencies, n_phases)
    else:
        g = grating_grid(P, 8, (0.0625, 0.125, 0.25, 0.375), 4)
    reps = 1 if kind == "lca" else grating_repeats  # the LCA's code is deterministic
    c_g, g_st, per_rep = respond(g.images, seed + 3, {"protocol": "grating grid", "seed": seed, "model": kind}, reps)
    tun = grating_tuning(c_g, g.params["orientation"], g.params["spatial_frequency"], per_rep if reps >= 2 else None)
    # Gabor fits and agreement of the STA with the encoder filter and the decoder atom
    order = [k for k in np.argsort(-counts.sum(0), kind="stable")[:fit_units] if np.all(np.isfinite(maps[k]))]
    rows = []
    enc = None if encoder is None else encoder[latent]
    snr = sta_snr(wn, counts, maps)
    if order and np.median(snr[order]) < STA_SNR_MIN:  # noise-dominated STAs: say how much longer the noise must be
        need = frames_for_snr(frames, float(np.median(snr[order])), P * P)
        log.warning("the white-noise STAs are noise-dominated (median peak %.1f noise s.d. over the %d mapped channels, "
                    "below %g): Gabor fits and RF centres will be unreliable; use frames >= %d (--frames)",
                    float(np.median(snr[order])), len(order), STA_SNR_MIN, int(np.ceil(need / 5000) * 5000))
    for k, f in zip(order, _fit_gabors([maps[k] for k in order], workers, progress)):
        row = {"unit": int(k), "latent": int(latent[k]), "sign": int(sign[k]), "spikes": float(counts[:, k].sum()),
               "sta_snr": float(snr[k]),
               **f._asdict(), "osi": float(tun.osi[k]), "preferred_orientation": float(tun.preferred_orientation[k]),
               "preferred_frequency": float(tun.preferred_frequency[k])}
        for name, ref in (("corr_sta_encoder", enc), ("corr_sta_decoder", decoder)):
            row[name] = float(np.corrcoef(maps[k].ravel(), ref[k].ravel())[0, 1]) if ref is not None else np.nan
        rows.append(row)
    bat, s_st = None, None
    if battery:
        n_o, F = n_orientations, len(g.params["spatial_frequency"]) // (n_orientations * n_phases)
        grid = c_g.T.reshape(C, n_o, F, n_phases)
        centre = _rf_centres(maps, rows, P)
        d = np.asarray(DIAMETERS if diameters is None else diameters, dtype=np.float64) * (P / 16 if diameters is None else 1)
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
        c_s, s_st, _ = respond(ag.images, seed + 4, {"protocol": "size tuning", "seed": seed, "model": kind},
                            1 if kind == "lca" else size_repeats)
        per_set = c_s.reshape(len(first), len(d), 4, C).mean(2)  # (sets, diameters, channels), mean over phases
        size = np.full((C, len(d)), np.nan)
        size[measured] = per_set[which.ravel(), :, measured]
        ag.params["unit"] = first[ag.params["unit"]]  # the channel whose preferred grating and centre the set uses
        bat = V1Battery(tun.orientations, tun.frequencies, n_phases, grid, g.params, d, size, ag.params, centre,
                        None if kind == "lca" else window)
    return RFMapping(kind, maps, counts, on_off[0], on_off[1], tun, order, rows, enc, decoder, wn, shown, st,
                     len(g.images) * reps, latent, sign, bat, g_st, s_st, lags, lag_sums.get("n"))


def _is_ipvae(model) -> bool:
    if model is None:
        return False
    from ..models.ipvae import IPVAE

    if isinstance(model, IPVAE):
        return True
    if isinstance(model, (str, os.PathLike)):
        from ..models.checkpoint import IPVAE_FAMILY, load_checkpoint

        return load_checkpoint(model).get("family") == IPVAE_FAMILY
    return False


#: patches per Brian2 run of the iP-VAE circuit (its neurons are patches x latents)
IPVAE_BATCH = 1024


def _ipvae_respond(model, x, seed, repeats, n_iter, circuit, against, lag_sums, progress=None) -> np.ndarray:
    """Spike counts over iterations 1..n_iter of the iP-VAE circuit, per repeat (repeats, n, K); frames run in
    batches of :data:`IPVAE_BATCH`, each with its own seed drawn from ``seed``."""
    from ..brian.ipvae import ipvae_brian

    n = len(x)
    xf = np.asarray(x, dtype=np.float64).reshape(n, -1)
    K = model.config.n_latents
    out = np.zeros((repeats, n, K))
    seeds = np.random.SeedSequence(seed).generate_state(repeats * ((n + IPVAE_BATCH - 1) // IPVAE_BATCH))
    from tqdm.auto import tqdm

    j = 0
    bar = tqdm(total=repeats * n, disable=not progress, desc=str(progress), unit="frame")
    for r in range(repeats):
        for i in range(0, n, IPVAE_BATCH):
            bar.update(min(IPVAE_BATCH, n - i))
            res = ipvae_brian(model, xf[i:i + IPVAE_BATCH], n_iter, circuit, seed=int(seeds[j]), record=False)
            j += 1
            c = res.counts.astype(np.float64)  # (n_iter + 1, B, K)
            out[r, i:i + IPVAE_BATCH] = c[1:].sum(0)
            if against is not None:
                a = np.asarray(against[i:i + IPVAE_BATCH], dtype=np.float64).reshape(len(c[0]), -1)
                lag_sums.setdefault("sum", np.zeros((n_iter + 1, K, a.shape[1])))
                lag_sums.setdefault("n", np.zeros((n_iter + 1, K)))
                lag_sums["sum"] += np.matmul(c.transpose(0, 2, 1), a)  # (n_iter + 1, K, pixels)
                lag_sums["n"] += c.sum(1)
    bar.close()
    return out


def _rf_centres(maps: np.ndarray, rows: list, P: int) -> np.ndarray:
    """Each channel's RF centre (x, y): its Gabor fit's when good, else the centroid of the STA's energy, else
    the patch centre."""
    from ..analysis.geometry import R2_GOOD

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


def rf_summary(m: RFMapping) -> dict:
    """Medians over the fitted units (``units_fitted``: Gabor-fit quality, OSI, STA agreement) and, for the shape
    (nx, ny, frequency), over the good fits among them (R² ≥ 0.5, ``n_good_fits``)."""
    col = lambda k: np.array([float(r[k]) for r in m.fits])  # noqa: E731
    r2 = col("r2")
    good = r2 >= R2_GOOD
    med = lambda v: float(np.nanmedian(v)) if np.isfinite(v).any() else None  # noqa: E731
    return {"units_fitted": len(m.fits), "n_good_fits": int(good.sum()), "gabor_fraction": float(good.mean()),
            "median_r2": med(r2),
            "median_osi": med(col("osi")), "median_nx": med(col("nx")[good]) if good.any() else None,
            "median_ny": med(col("ny")[good]) if good.any() else None,
            "median_frequency": med(col("frequency")[good]) if good.any() else None,
            "median_corr_sta_encoder": med(col("corr_sta_encoder")),
            "median_corr_sta_decoder": med(col("corr_sta_decoder"))}


#: the V1 battery's per-channel properties: key → (label, unit, key of the shipped V1 distribution or None).
#: ``*_cpd`` and ``*_deg`` columns exist only with a pixels-per-degree mapping.
PROPERTIES = {
    "circular_variance": ("circular variance (orientation)", "", None),
    "orientation_bandwidth_deg": ("orientation bandwidth (half-width at 1/√2)", "deg", None),
    "orth_pref_ratio": ("orthogonal / preferred response", "", None),
    "osi": ("OSI = 1 − circular variance", "", None),
    "orientation_selective": ("orientation selective (orthogonal / preferred < 0.5)", "fraction", None),
    "peak_sf_cpp": ("peak spatial frequency", "cycles/pixel", None),
    "peak_sf_cpd": ("peak spatial frequency", "cycles/deg", "peak_sf_cpd"),
    "sf_bandwidth_octaves": ("SF bandwidth (full width at 1/√2)", "octaves", None),
    "sf_bandwidth_schiller": ("SF bandwidth (Schiller: 100·f_low/f_high)", "%", "sf_bandwidth_schiller"),
    "sf_selective": ("SF selective (band-pass)", "fraction", "sf_selective"),
    "gsf_px": ("grating summation field", "pixels", None),
    "gsf_deg": ("grating summation field", "deg", "gsf_deg"),
    "ssi": ("surround-suppression index", "", "ssi"),
    "f1_f0": ("modulation ratio F1/F0", "", None),
    "simple": ("simple cells (F1/F0 > 1)", "fraction", None),
    "on_off_overlap": ("ON/OFF overlap index", "", None),
    "nx": ("Gabor nx = σx·f", "", None),
    "ny": ("Gabor ny = σy·f", "", None),
    "aspect_ratio": ("Gabor aspect ratio σy/σx", "", None),
}

#: a spiking channel whose best grating drives it below this rate is flagged weak (Cavanaugh et al. 2002's
#: inclusion criterion, > 5 spikes/s)
MIN_RATE_HZ = 5.0


def v1_properties(m: RFMapping, pixels_per_degree: float | None = None) -> list[dict]:
    """One row per channel of a mapping with the V1 battery: every :data:`PROPERTIES` value (NaN where undefined),
    the response level, the Gabor fit's R², and flags: ``weak`` (best grating below :data:`MIN_RATE_HZ` spikes/s;
    an LCA channel: no response at all), ``poor_fit`` (no Gabor fit with R² ≥ 0.5), ``size_measured``.
    Flagged channels stay in the table; summaries use the channels that are not ``weak``."""
    from ..analysis import v1
    from ..analysis.geometry import R2_GOOD

    b = m.battery
    if b is None:
        raise ArgumentError("this mapping ran without the V1 battery (battery=False)")
    if pixels_per_degree is not None and not (np.isfinite(pixels_per_degree) and pixels_per_degree > 0):
        raise ArgumentError(f"pixels per degree must be a finite number > 0, got {pixels_per_degree}")
    C = b.grid.shape[0]
    gp = grid_properties(b.grid, b.orientations, b.frequencies)
    peak, pref, cv, bw, opr, f1f0 = (gp[k] for k in ("peak", "pref", "cv", "bw", "opr", "f1f0"))
    sf = gp["sf"]
    measured = np.all(np.isfinite(b.size), axis=1)
    size = {"gsf": np.full(C, np.nan), "ssi": np.full(C, np.nan)}
    if measured.any():
        st = v1.size_tuning(b.size[measured], b.diameters)
        for k in size:
            size[k][measured] = st[k]
    oi_idx = v1.on_off_overlap(m.on, m.off)
    fits = {r["unit"]: r for r in m.fits}
    rate = peak / b.window if b.window else peak
    weak = rate < MIN_RATE_HZ if b.window else ~(peak > 0)
    rows = []
    nan = float("nan")
    for c in range(C):
        g = fits.get(c)
        good = g is not None and g["r2"] >= R2_GOOD
        row = {"unit": c, "latent": int(m.latent[c]), "sign": int(m.sign[c]),
               "peak_response": float(rate[c]), "response_unit": "spikes/s" if b.window else "code",
               "weak": bool(weak[c]), "gabor_r2": float(g["r2"]) if g else nan, "poor_fit": not good,
               "size_measured": bool(measured[c]),
               "preferred_orientation_deg": float(np.degrees(pref[c])), "circular_variance": float(cv[c]),
               "orientation_bandwidth_deg": float(bw[c]), "orth_pref_ratio": float(opr[c]), "osi": float(1 - cv[c]),
               "orientation_selective": float(opr[c] < 0.5) if np.isfinite(opr[c]) else nan,
               "peak_sf_cpp": float(sf["peak"][c]), "sf_bandwidth_octaves": float(sf["bandwidth_octaves"][c]),
               "sf_bandwidth_schiller": float(sf["bandwidth_schiller"][c]),
               "sf_selective": float(sf["selective"][c]) if np.isfinite(sf["peak"][c]) else nan,
               "gsf_px": float(size["gsf"][c]), "ssi": float(size["ssi"][c]), "f1_f0": float(f1f0[c]),
               "simple": float(f1f0[c] > 1) if np.isfinite(f1f0[c]) else nan, "on_off_overlap": float(oi_idx[c]),
               "nx": float(g["nx"]) if good else nan, "ny": float(g["ny"]) if good else nan,
               "aspect_ratio": float(g["sigma_y"] / g["sigma_x"]) if good else nan,
               "rf_x": float(b.centre[c, 0]), "rf_y": float(b.centre[c, 1])}
        if pixels_per_degree is not None:
            row["peak_sf_cpd"] = row["peak_sf_cpp"] * pixels_per_degree
            row["gsf_deg"] = row["gsf_px"] / pixels_per_degree
        rows.append(row)
    return rows


def grid_properties(grid: np.ndarray, orientations: np.ndarray, frequencies: np.ndarray) -> dict:
    """Orientation, SF and F1/F0 properties of responses ``grid`` (C, O, F, n_phases) to a drifting grating grid:
    the preferred grating is the peak of the cycle-mean response; orientation tuning is taken at the preferred
    frequency, SF tuning at the preferred orientation, F1/F0 over the cycle at the preferred grating."""
    from ..analysis import v1

    C = grid.shape[0]
    f0 = grid.mean(-1)  # (C, O, F): mean over the drifting cycle
    flat = f0.reshape(C, -1)
    best = flat.argmax(1)
    oi, fi = np.unravel_index(best, f0.shape[1:])
    ori = f0[np.arange(C), :, fi]  # (C, O) at the preferred frequency
    cv, pref = v1.circular_variance(ori, orientations)
    return {"peak": flat[np.arange(C), best], "pref": pref, "cv": cv, "bw": v1.orientation_bandwidth(ori, orientations),
            "opr": v1.orthogonal_preferred_ratio(ori, orientations),
            "sf": v1.sf_tuning(f0[np.arange(C), oi, :], frequencies),
            "f1f0": v1.modulation_ratio(grid[np.arange(C), oi, fi, :])}


def grid_from_trials(responses: np.ndarray, orientation, frequency, phase) -> tuple:
    """Mean responses (C, O, F, n_phases) per grating of a grid from per-presentation ``responses`` (n, C) and each
    presentation's parameters (repeats are averaged; as read from an NWB trials table) → (grid, orientations,
    frequencies)."""
    r = np.asarray(responses, dtype=np.float64)
    keys = [np.unique(np.round(np.asarray(v, dtype=np.float64), 12), return_inverse=True)
            for v in (orientation, frequency, phase)]
    shape = tuple(len(k[0]) for k in keys)
    cell = np.ravel_multi_index(tuple(k[1] for k in keys), shape)
    n = np.bincount(cell, minlength=int(np.prod(shape)))
    if np.any(n == 0):
        raise ArgumentError("the trials do not hold a full orientation x frequency x phase grid")
    tot = np.zeros((int(np.prod(shape)), r.shape[1]))
    np.add.at(tot, cell, r)
    grid = (tot / n[:, None]).T.reshape(r.shape[1], *shape)
    return grid, keys[0][0], keys[1][0]


def v1_summary(rows: list[dict]) -> list[dict]:
    """Per property of :data:`PROPERTIES` present in ``rows``: the model's median and quartiles over the channels
    that are not weak (fractions: the mean), the shipped V1 median and, where V1's distribution is shipped, the
    KS distance at its bin edges (:func:`spikevae.analysis.v1_reference.ks_binned`). The grating summation
    field is compared over channels with SSI > 0.1, the population Cavanaugh et al. report it for."""
    from ..analysis.v1_reference import V1_DATA, ks_binned

    use = [r for r in rows if not r["weak"]]
    out = []
    for key, (label, unit, ref) in PROPERTIES.items():
        if not rows or key not in rows[0]:
            continue
        pop = [r for r in use if r["ssi"] > 0.1] if key.startswith("gsf") else use
        v = np.array([r[key] for r in pop], dtype=np.float64)
        fin = v[np.isfinite(v)]
        frac = unit == "fraction"
        d = V1_DATA.get(ref) if ref else None
        s = {"property": key, "label": label, "unit": unit, "n": int(len(fin)), "of": len(pop),
             "median": float(fin.mean() if frac else np.median(fin)) if len(fin) else float("nan"),
             "q1": float(np.percentile(fin, 25)) if len(fin) and not frac else float("nan"),
             "q3": float(np.percentile(fin, 75)) if len(fin) and not frac else float("nan"),
             "v1_median": float("nan"), "ks": float("nan"), "v1_source": ""}
        if d is not None:
            s["v1_median"] = d.counts[1] / d.n if frac else d.median()
            s["ks"] = float("nan") if frac else ks_binned(fin, d)
            s["v1_source"] = f"{d.source}; {d.population}; n = {d.n}"
        out.append(s)
    return out
