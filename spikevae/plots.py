"""Figures. The only module that imports matplotlib; functions take arrays/records and return figures."""
from __future__ import annotations

import numpy as np

__all__ = ["basis_grid", "rf_agreement", "raster", "counts_vs_expected", "nx_ny_scatter", "tuning_curves", "histograms",
           "recon_vs_sparsity", "knn_curves", "metric_bars", "rf_mapping_figures", "v1_property", "sta_lags", "spike_generation",
           "patch_statistics", "save_figure"]


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def basis_grid(atoms: np.ndarray, order: np.ndarray | None = None, n_show: int = 256, ncols: int = 16,
               title: str = "", labels: np.ndarray | None = None):
    """Grid of dictionary atoms, each scaled to its own max |value| (grey = 0).

    Parameters
    ----------
    atoms : ndarray (K, P, P)
    order : ndarray (K,), optional
        Display order (e.g. by decreasing KL).
    n_show : int
        Number of atoms shown.
    labels : ndarray (K,), optional
        A number printed above each atom (e.g. its KL).
    """
    plt = _mpl()
    atoms = np.asarray(atoms)
    order = np.arange(len(atoms)) if order is None else np.asarray(order)
    shown = f"{min(n_show, len(order))} of {len(atoms)} shown" if n_show < len(atoms) else ""
    if shown:  # never a partial grid without saying so
        title = f"{title} ({shown})" if title else shown
    order = order[:n_show]
    nrows = int(np.ceil(len(order) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.62, nrows * 0.62 + (0.4 if title else 0)))
    axes = np.atleast_2d(axes)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, k in zip(axes.flat, order):
        a = atoms[k]
        m = np.abs(a).max() or 1.0
        ax.imshow(a, cmap="gray", vmin=-m, vmax=m, interpolation="nearest")
        if labels is not None:
            ax.set_title(f"{labels[k]:.2g}", fontsize=5, pad=1)
    h = fig.get_figheight()
    if title:  # a band of 0.4 inch for the title, whatever the number of rows
        fig.suptitle(title, fontsize=9, y=1 - 0.06 / h, va="top")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - (0.4 if title else 0.03) / h, wspace=0.08,
                        hspace=0.25)
    return fig


def rf_agreement(maps: dict, units: np.ndarray, n_show: int = 16, title: str = ""):
    """Each unit's spike-triggered average next to its encoder filter and decoder atom, and the
    distributions of their pairwise correlations over all units.

    ``maps``: row name -> (K, P, P) images (e.g. STA, encoder filter, decoder atom); rows whose
    value is None are skipped. ``units``: the units to show first (e.g. most active).
    """
    plt = _mpl()
    rows = {k: np.asarray(v) for k, v in maps.items() if v is not None}
    names = list(rows)
    units = np.asarray(units)[:n_show]
    fig = plt.figure(figsize=(max(8.0, 0.62 * len(units)), 0.7 * len(names) + 2.9))
    gs = fig.add_gridspec(len(names) + 1, len(units), height_ratios=[1] * len(names) + [3.2], hspace=0.35)
    for r, name in enumerate(names):
        for c, k in enumerate(units):
            ax = fig.add_subplot(gs[r, c])
            a = rows[name][k]
            m = np.abs(a).max() or 1.0
            ax.imshow(a, cmap="gray", vmin=-m, vmax=m, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
            if r == 0:
                ax.set_title(str(int(k)), fontsize=6, pad=1)
    ax = fig.add_subplot(gs[len(names), :])
    bins = np.linspace(-1, 1, 41)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        if j < len(names):
            a, b = rows[names[i]], rows[names[j]]
            cc = [np.corrcoef(a[k].ravel(), b[k].ravel())[0, 1] for k in range(len(a))]
            cc = np.asarray(cc)[np.isfinite(cc)]
            ax.hist(cc, bins, histtype="step", lw=1.5,
                    label=f"corr({names[i]}, {names[j]}): median {np.median(cc):.2f}, n = {len(cc)}")
    ax.set_xlabel("correlation per unit")
    ax.set_ylabel("units")
    ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def raster(st, max_units: int = 128, max_presentations: int = 20, order: np.ndarray | None = None,
           title: str | None = None):
    """Spike raster of the first presentations: windows shaded in alternating tones (so adjacent windows stay
    apart when there is no gap between them), each labelled with its stimulus; rows are named by unit index.

    Parameters
    ----------
    st : SpikeTrains
    max_units : int
        Units shown (the most active ones when ``order`` is None).
    max_presentations : int
        Presentations shown (from the start of the run).
    order : ndarray, optional
        The units to show, top row first.
    title : str, optional
        What the units are (default: Brian2 Poisson units).
    """
    plt = _mpl()
    p = st.presentations
    n_p = min(max_presentations, len(p))
    t_end = p.offset[n_p - 1] if n_p else st.t_stop
    ranked = order is None
    if ranked:
        order = np.argsort(-np.bincount(st.unit, minlength=st.n_units), kind="stable")
    order = np.asarray(order)[:max_units]
    row = np.full(st.n_units, -1)
    row[order] = len(order) - 1 - np.arange(len(order))  # the first unit on top
    keep = (st.time < t_end) & (row[st.unit] >= 0)
    fig, ax = plt.subplots(figsize=(10, 5.2))
    for k in range(n_p):
        ax.axvspan(p.onset[k], p.offset[k], color=("0.86", "0.94")[k % 2], lw=0, zorder=0)
        ax.text(p.onset[k], len(order) + 0.3, f"s{p.stimulus[k]}", fontsize=6, va="bottom")
    ax.scatter(st.time[keep], row[st.unit[keep]], s=2, c="k", marker="|", linewidths=0.6, zorder=2)
    ax.set_xlim(0, t_end)
    ax.set_ylim(-1, len(order) + 3)
    step = max(1, int(np.ceil(len(order) / 16)))
    ticks = np.arange(0, len(order), step)
    ax.set_yticks(len(order) - 1 - ticks, [str(int(u)) for u in order[ticks]], fontsize=6)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"unit index ({len(order)} most active, by spike count)" if ranked else "unit index")
    gap = float(np.median(p.onset[1:n_p] - p.offset[: n_p - 1])) if n_p > 1 else 0.0
    windows = (f"shaded: presentation windows ({1e3 * float(np.median(p.offset - p.onset)):.0f} ms"
               + (f", {1e3 * gap:.0f} ms gaps" if gap > 0 else ", back to back") + "; label = stimulus)")
    what = title or "Brian2 Poisson units"
    ax.set_title(f"{int(keep.sum())} spikes shown: {len(order)} of {st.n_units} {what}, {n_p} presentations\n{windows}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def counts_vs_expected(counts: np.ndarray, expected: np.ndarray):
    """Emitted spike counts per (presentation, unit) against the expected count λ, with a ±2 sd Poisson band."""
    plt = _mpl()
    c, lam = np.asarray(counts, float).ravel(), np.asarray(expected, float).ravel()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    ax = axes[0]
    rng = np.random.default_rng(0)
    idx = rng.choice(len(c), min(len(c), 20000), replace=False)
    # the axes cover 99.9 % of the pairs, so one outlier cannot squash the rest; the rest are counted
    top = max(1.0, float(np.quantile(lam, 0.999)))
    ymax = top + 4 * np.sqrt(top) + 1
    beyond = int(((lam > top) | (c > ymax)).sum())
    ax.scatter(lam[idx], c[idx] + rng.uniform(-0.15, 0.15, len(idx)), s=2, alpha=0.3, c="k", linewidths=0)
    xs = np.linspace(0, top, 200)
    ax.plot(xs, xs, color="tab:red", lw=1, label="count = λ")
    ax.fill_between(xs, np.maximum(0, xs - 2 * np.sqrt(xs)), xs + 2 * np.sqrt(xs), color="tab:red", alpha=0.15,
                    label="λ ± 2√λ (Poisson)")
    ax.set_xlabel("expected count λ per window")
    ax.set_ylabel("emitted spikes per window (jittered)")
    ax.set_xlim(-0.02 * top, top)
    ax.set_ylim(-0.5, ymax)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"each (presentation, unit): {min(len(c), 20000)} of {len(c)} drawn"
                 + (f"\n{beyond} beyond the axes (λ > {top:.3g}, the 99.9th percentile)" if beyond else ""), fontsize=8)
    ax = axes[1]
    edges = np.quantile(lam, np.linspace(0, 1, 21))
    edges = np.unique(edges)
    b = np.clip(np.searchsorted(edges, lam, side="right") - 1, 0, len(edges) - 2)
    m_l = np.array([lam[b == j].mean() for j in range(len(edges) - 1) if np.any(b == j)])
    m_c = np.array([c[b == j].mean() for j in range(len(edges) - 1) if np.any(b == j)])
    v_c = np.array([c[b == j].var() for j in range(len(edges) - 1) if np.any(b == j)])
    ax.loglog(m_l, m_c, "o", ms=4, label="mean count")
    ax.loglog(m_l, v_c, "s", ms=4, mfc="none", label="variance of count")
    lo = max(1e-4, m_l.min())
    ax.plot([lo, m_l.max()], [lo, m_l.max()], color="tab:red", lw=1, label="Poisson: mean = var = λ")
    ax.set_xlabel("λ (bin mean, 20 quantile bins)")
    ax.set_ylabel("spikes per window")
    ax.legend(fontsize=8)
    ax.set_title("mean and variance of emitted counts", fontsize=9)
    fig.tight_layout()
    return fig


def nx_ny_scatter(nx: np.ndarray, ny: np.ndarray, r2: np.ndarray, r2_min: float = 0.5, title: str = ""):
    """Envelope sizes (nx, ny) = (σx·f, σy·f) of the Gabor fits (Ringach 2002 axes), good fits only."""
    plt = _mpl()
    good = np.asarray(r2) >= r2_min
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    x, y = np.asarray(nx)[good], np.asarray(ny)[good]
    top = float(np.clip(1.05 * max(x.max(initial=0), y.max(initial=0)), 1.5, 4.0))  # every point up to 4
    out = int(((x > top) | (y > top)).sum())
    ax.scatter(np.minimum(x, top), np.minimum(y, top), s=10, c="k", alpha=0.6,
               label=f"units with fit R² ≥ {r2_min} ({good.sum()} of {len(good)})"
               + (f"; {out} beyond {top:g}, drawn on the edge" if out else ""))
    ax.plot([0, top], [0, top], color="0.6", lw=0.8, ls="--")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("nx = σx · f (across stripes)")
    ax.set_ylabel("ny = σy · f (along stripes)")
    ax.set_title(title or "Gabor envelope sizes (compare Ringach 2002, macaque V1)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def sta_lags(lags: np.ndarray, units, iterations=(0, 1, 2, 4, 8, 16)):
    """The iP-VAE's spatiotemporal STA: one row per unit, one column per inference iteration, each row on one
    grey scale (grey = 0) so the field's growth over iterations is visible."""
    plt = _mpl()
    its = [t for t in iterations if t < len(lags)]
    units = list(units)
    fig, axes = plt.subplots(len(units), len(its), figsize=(0.9 * len(its) + 0.6, 0.9 * len(units) + 0.5),
                             squeeze=False)
    for i, k in enumerate(units):
        m = np.nanmax(np.abs(lags[its, k])) or 1.0
        for j, t in enumerate(its):
            ax = axes[i, j]
            ax.imshow(np.nan_to_num(lags[t, k]), cmap="gray", vmin=-m, vmax=m, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t = {t}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"unit {k}", fontsize=6)
    fig.suptitle("STA of the spikes of each inference iteration (t = 0: prior)", fontsize=8)
    fig.tight_layout()
    return fig


def v1_property(values: np.ndarray, label: str, unit: str, model_label: str, reference=None, note: str = ""):
    """A model's distribution of one V1 property beside V1's published one (a
    :class:`~spikevae.analysis.v1_reference.V1Distribution`, drawn on its own bins), both as fractions of units.
    Without a reference, the model's histogram alone, saying that no V1 distribution ships for this property."""
    plt = _mpl()
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    fig, ax = plt.subplots(figsize=(5.4, 4.0))
    if reference is not None:
        e = reference.edges
        x = np.log2(e) if reference.log_bins else e
        ax.bar(x[:-1], reference.counts / reference.n, width=np.diff(x), align="edge", color="0.75", edgecolor="0.4",
               label=f"V1: {reference.source} (n = {reference.n}, median {reference.median():.3g})")
        vv = np.log2(np.clip(v, e[0] / 2, None)) if reference.log_bins else v
        lo, hi = min(x[0], vv.min(initial=x[0])), max(x[-1], vv.max(initial=x[-1]))
        bins = np.concatenate([[lo] if lo < x[0] else [], x, [hi] if hi > x[-1] else []])
        if reference.log_bins:
            ticks = x[:: max(1, len(x) // 6)]
            ax.set_xticks(ticks, [f"{2**t:.3g}" for t in ticks])
    else:
        vv = v
        bins = np.linspace(v.min(initial=0.0), v.max(initial=1.0), 21) if len(v) else np.linspace(0, 1, 21)
        ax.text(0.98, 0.95, "no V1 distribution ships for this property", transform=ax.transAxes, ha="right",
                va="top", fontsize=7, color="0.3")
    if len(vv):
        ax.hist(vv, bins=bins, weights=np.full(len(vv), 1 / len(vv)), histtype="step", lw=1.8, color="C3",
                label=f"{model_label} (n = {len(v)}, median {np.median(v):.3g})")
    ax.set_xlabel(f"{label} ({unit})" if unit else label)
    ax.set_ylabel("fraction of units")
    ax.set_title(note or label, fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.tight_layout()
    return fig


def tuning_curves(tuning, units: np.ndarray, max_units: int = 8, response: str = "spikes per window"):
    """Orientation tuning (at the preferred frequency) and frequency tuning (at the preferred orientation) of
    selected units, with error bars of ± 1 s.e.m. over repeats when ``tuning.sem`` holds them.

    ``response`` names what is plotted (e.g. "spikes per window", or "code (analog)" for the LCA)."""
    plt = _mpl()
    units = np.asarray(units)[:max_units]
    sem = getattr(tuning, "sem", None)
    from matplotlib.ticker import FixedLocator, NullFormatter
    fig, axes = plt.subplots(2, len(units), figsize=(1.9 * len(units), 4.1), squeeze=False)
    for j, k in enumerate(units):
        pf = int(np.searchsorted(tuning.frequencies, tuning.preferred_frequency[k]))
        po = int(np.argmin(np.abs(tuning.orientations - tuning.preferred_orientation[k])))
        for ax, x, y, e, style, color in (
                (axes[0, j], np.degrees(tuning.orientations), tuning.response[k, :, pf],
                 None if sem is None else sem[k, :, pf], "o-", "C0"),
                (axes[1, j], tuning.frequencies, tuning.response[k, po, :],
                 None if sem is None else sem[k, po, :], "s-", "C1")):
            ax.errorbar(x, y, yerr=e, fmt=style, ms=3, lw=1, capsize=1.5, color=color)
            ax.tick_params(labelsize=6)
        axes[0, j].set_title(f"unit {k}, OSI {tuning.osi[k]:.2f}", fontsize=7)
        axes[0, j].set_xlabel("orientation (deg)", fontsize=7)
        axes[1, j].set_xscale("log")  # the frequencies are log-spaced: three labelled ticks, no minor labels
        lo, hi = float(np.min(tuning.frequencies)), float(np.max(tuning.frequencies))
        axes[1, j].xaxis.set_major_locator(FixedLocator([t for t in (0.03, 0.1, 0.3) if lo / 1.5 <= t <= hi * 1.5]))
        axes[1, j].xaxis.set_major_formatter(lambda v, _: f"{v:g}")
        axes[1, j].xaxis.set_minor_formatter(NullFormatter())
        axes[1, j].set_xlabel("cycles/pixel", fontsize=7)
    axes[0, 0].set_ylabel(f"{response}\n(at preferred SF)", fontsize=7)
    axes[1, 0].set_ylabel(f"{response}\n(at preferred orientation)", fontsize=7)
    bars = (f"error bars: ± 1 s.e.m. over {tuning.n_repeats} repeats of the phase-averaged response" if sem is not None
            else "no error bars: one repeat, or a deterministic code")
    fig.suptitle(f"grating tuning, mean over the phases of a drifting cycle; {bars}", fontsize=7.5)
    fig.tight_layout()
    return fig


def _median_text(v: np.ndarray) -> str:
    """The median as printed on a figure: values within float rounding of 0 (relative to the data's scale) are 0."""
    if not len(v):
        return "nan"
    m = float(np.median(v))
    scale = float(np.max(np.abs(v))) or 1.0
    return f"{0.0 if abs(m) < 1e-9 * scale else m:.3g}"


def histograms(panels: dict, title: str = "", bins: int = 40, ylabel: str = "count", psth=None):
    """One histogram per named array (NaNs dropped), side by side, each titled with its n and median.

    ``ylabel`` names what is counted (e.g. "units", "presentations", "unit pairs"); a dict maps a panel
    name to its own label. ``psth``, optional ``(t (s), rate (Hz), window (s))``: a last panel with the
    population PSTH aligned to presentation onset.
    """
    plt = _mpl()
    n = len(panels) + (psth is not None)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.1), squeeze=False)
    for ax, (name, v) in zip(axes[0], panels.items()):
        v = np.asarray(v, dtype=float).ravel()
        v = v[np.isfinite(v)]
        lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 1.0)
        # (nearly) constant values: numpy cannot cut a range narrower than float spacing into bins
        span = (lo - 0.5, hi + 0.5) if hi - lo <= 1e-9 * max(1.0, abs(lo), abs(hi)) else None
        ax.hist(v, bins=bins, range=span, color="0.3")
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel(ylabel.get(name, "count") if isinstance(ylabel, dict) else ylabel, fontsize=8)
        ax.set_title(f"n = {len(v)}, median {_median_text(v)}", fontsize=8)
        ax.tick_params(labelsize=7)
    if psth is not None:
        t, hz, window = psth
        ax = axes[0, -1]
        bin_ms = 1e3 * float(t[1] - t[0]) if len(t) > 1 else 0.0
        ax.step(np.append(t, t[-1] + (t[1] - t[0] if len(t) > 1 else 0)) * 1e3, np.append(hz, hz[-1] if len(hz) else 0),
                where="post", color="k", lw=1.2)
        ax.axvspan(0, window * 1e3, color="0.9", zorder=0, label="stimulus window")
        ax.set_xlabel("time after onset (ms)", fontsize=8)
        ax.set_ylabel("population mean rate (Hz)", fontsize=8)
        ax.set_title(f"PSTH ({bin_ms:.3g} ms bins, all units and presentations)", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def recon_vs_sparsity(points: dict, curves: dict, title: str = ""):
    """Reconstruction error against lifetime sparsity: single models as points, sweeps as labelled curves.

    ``points``: name -> (sparsity, mse); ``curves``: name -> (sparsities, mses, labels).
    """
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for name, (sp, err, labels) in curves.items():
        ax.plot(sp, err, "o-", ms=4, label=name)
        for x, y, lab in zip(sp, err, labels):
            ax.annotate(str(lab), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    for name, (sp, err) in points.items():
        ax.plot([sp], [err], "*", ms=12, label=name)
    ax.set_xlabel("lifetime sparsity (Treves-Rolls)")
    ax.set_ylabel("squared error per patch (sum over pixels)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def convergence(runs: dict, r2_key: str = "r2", title: str = "iterative inference: read-out against iterations"):
    """R² and fraction of zero counts of a read-out against inference iterations (log axis), one line per run.

    ``runs``: name -> rows with ``t``, ``r2`` (the reference's: the mean over patches of each patch's R²) and
    ``zeros``; a row without ``zeros`` (a rate read-out) is drawn in the R² panel only. ``r2_key``: another R² of
    the rows (``"r2_rates"``), named in the axis label.
    """
    plt = _mpl()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    for name, rows in runs.items():
        t = [r["t"] for r in rows]
        line, = a1.plot(t, [r[r2_key] for r in rows], "o-", ms=3, label=name)
        if all("zeros" in r for r in rows):
            a2.plot(t, [r["zeros"] for r in rows], "o-", ms=3, color=line.get_color(), label=name)
    r2_label = "R² (mean over patches of each patch's R²)" if r2_key == "r2" else f"R² ({r2_key})"
    for ax, lab in ((a1, r2_label), (a2, "fraction of zero counts")):
        ax.set_xscale("log")
        ax.set_xlabel("inference iteration t")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    a1.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def rate_distortion(rows: list[dict], title: str = "every code: variance explained against fraction of zeros"):
    """R² against the fraction of zero entries, one marker per (model, read-out), iterations labelled; the
    reference's ideal is the corner (1, 1) and its distance is the distance to that corner."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(9.6, 4.8))
    groups: dict = {}  # one line per code family, read-out, dictionary and patch set: never across patch sets
    for r in rows:
        atoms = f", {r['dictionary']} atoms" if r.get("dictionary") else ""
        patches = f", {r['n_patches']} patches" if r.get("n_patches") else ""
        groups.setdefault(f"{r['model'].split(' λ=')[0].split(' (the')[0]} ({r['readout']}{atoms}{patches})",
                          []).append(r)
    for name, rs in groups.items():
        rs = sorted((r for r in rs if r["r2"] is not None), key=lambda r: r["zeros"])
        if not rs:
            continue
        line, = ax.plot([r["zeros"] for r in rs], [r["r2"] for r in rs], "o-" if len(rs) > 1 else "*",
                        ms=4 if len(rs) > 1 else 11, label=name, alpha=0.85)
        for r in rs:
            lab = r["iterations"] if r["model"].startswith("iP-VAE") else r["model"].split("λ=")[-1] if "λ=" in r["model"] else ""
            if lab not in ("", None):
                ax.annotate(str(lab), (r["zeros"], r["r2"]), fontsize=6, xytext=(3, 3), textcoords="offset points",
                            color=line.get_color())
    ax.plot([1], [1], "k+", ms=12)
    ax.set_xlabel("fraction of zero entries in the code")
    ax.set_ylabel("R² (mean over patches of each patch's R²)")
    lo = min(0.0, min(r["r2"] for r in rows if r["r2"] is not None))
    ax.set_ylim(max(lo, -0.5), 1.02)
    ax.set_xlim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title + "\n(labels: iterations for the iP-VAE, λ for the LCA)", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plane: no point hidden
    fig.tight_layout()
    fig.subplots_adjust(right=0.69)  # the legend to the right of the plane
    return fig


def knn_curves(rows: list[dict], over_seeds: bool = False):
    """KNN accuracy against the number of labels, one panel per K, one line per model (mean ± s.d.)."""
    plt = _mpl()
    labelled = [r for r in rows if any(k.startswith("knn_") for k in r)]
    ks = sorted({r["K"] for r in labelled})
    fig, axes = plt.subplots(1, len(ks), figsize=(5.0 * len(ks), 4.0), squeeze=False, sharey=True)
    for ax, k in zip(axes[0], ks):
        sub = [r for r in labelled if r["K"] == k]
        for j, r in enumerate(sub):
            ns = np.array(sorted(int(c[4:]) for c in r if c.startswith("knn_") and c[4:].isdigit()))
            shift = 1.0 + 0.03 * (j - (len(sub) - 1) / 2)  # side by side on the log axis
            ax.errorbar(ns * shift, [r[f"knn_{n}"] for n in ns], yerr=[r[f"knn_{n}_sd"] for n in ns],
                        marker="o", ms=4, capsize=3, label=r["name"] if over_seeds else f"{r['name']} ({r['family']})")
        ax.set_xscale("log")
        ax.set_xlabel("labelled samples N")
        ax.set_title(f"K = {k}" + (" (mean ± s.d. over seeds)" if over_seeds else ""), fontsize=9)
        ax.legend(fontsize=6)
    axes[0, 0].set_ylabel("KNN accuracy (k = 5)")
    fig.suptitle("sample efficiency", fontsize=10)
    fig.tight_layout()
    return fig


def metric_bars(rows: list[dict], metrics: dict):
    """One bar panel per metric (``{key: label}``), one bar per model (``row['name']``), y from 0 to 1."""
    plt = _mpl()
    fig, axes = plt.subplots(1, len(metrics), figsize=(11 / 3 * len(metrics), 3.4), squeeze=False)
    names = [r["name"] for r in rows]
    for ax, (key, label) in zip(axes[0], metrics.items()):
        ax.bar(range(len(rows)), [r.get(key, np.nan) for r in rows], color="0.4")
        ax.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    return fig


def _most_selective(osi: np.ndarray, units: np.ndarray, n: int = 8) -> np.ndarray:
    """The ``n`` of ``units`` with the largest OSI (units without one last)."""
    units = np.asarray(units)
    key = np.where(np.isfinite(osi[units]), -osi[units], np.inf)
    return units[np.argsort(key, kind="stable")[:n]]


def rf_mapping_figures(m, label: str) -> dict:
    """The figures of one :class:`~spikevae.workflows.rf_mapping.RFMapping`, by file stem: ``rf_grid`` (STAs), ``nx_ny``,
    ``tuning``, ``on_off`` (sparse-noise maps) and ``agreement`` (STA beside encoder filter and decoder atom)."""
    rows, order = m.fits, m.order
    P = m.sta.shape[-1]
    onoff = np.concatenate([m.on[order[:32]], m.off[order[:32]]]).reshape(-1, P, P)
    onoff = onoff - np.median(onoff.reshape(len(onoff), -1), axis=1)[:, None, None]  # the response above baseline
    n_on = len(order[:32])
    rows_on = int(np.ceil(n_on / 16))
    if m.model == "lca":  # an analog code, not spikes: say so on every figure
        avg, resp, act = "code-weighted averages (white noise)", "code (analog)", "largest summed code first"
        short = "CWA"
    else:
        avg, resp, act = "spike-triggered averages (white noise)", "spikes per window", "most active units first"
        short = "STA"
    return {
        "rf_grid": basis_grid(m.sta, order, n_show=min(128, len(order)), title=f"{avg}, {act}"),
        "nx_ny": nx_ny_scatter(np.array([r["nx"] for r in rows]), np.array([r["ny"] for r in rows]),
                               np.array([r["r2"] for r in rows])),
        # the most orientation-selective of the most active units (their tuning is what the panel is for)
        "tuning": tuning_curves(m.tuning, _most_selective(m.tuning.osi, order[:64]), response=resp),
        "on_off": basis_grid(onoff, n_show=len(onoff), ncols=16,
                             title=f"sparse noise: ON maps (rows 1-{rows_on}), OFF maps (rows {rows_on + 1}-{2 * rows_on}); "
                                   f"{resp} minus each map's median, {act}"),
        "agreement": rf_agreement({short: m.sta, "encoder": m.encoder, "decoder": m.decoder}, order,
                                  title=f"{label}: {short} against encoder filter and decoder atom, {act}"),
    }


def spike_generation(runs: dict, window: float):
    """Spike layers side by side: population PSTH, inter-spike-interval histogram, Fano factor against mean count.

    ``runs`` maps a label to ``(psth_t (s), psth_hz (bins,), isis (s), mean_count (m,), fano (m,))``.
    """
    plt = _mpl()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for j, (label, (t, hz, isi, mc, ff)) in enumerate(runs.items()):
        color = f"C{j}"
        axes[0].step(t * 1e3, hz, where="post", color=color, label=label)
        bins = np.linspace(0, 50, 101)
        if len(isi):
            axes[1].hist(isi * 1e3, bins=bins, histtype="step", density=True, color=color, label=label)
        ok = np.isfinite(ff) & (mc > 0)
        # each layer in its own marker, later layers on top (the plain layer first, the grounded ones over it)
        axes[2].scatter(mc[ok], ff[ok], s=6, alpha=0.45, color=color, marker="os^dv"[j % 5], linewidths=0, zorder=2 + j,
                        label=f"{label} (median {np.median(ff[ok]) if ok.any() else float('nan'):.2f})")
    axes[0].axvspan(0, window * 1e3, color="0.9", zorder=0, label="stimulus")
    axes[0].set_xlabel("time after stimulus onset (ms)")
    axes[0].set_ylabel("population mean rate (Hz)")
    axes[0].set_title("PSTH (all units, all presentations)", fontsize=9)
    axes[1].set_xlabel("inter-spike interval (ms), first 50 ms")
    axes[1].set_ylabel("density (1/ms)")
    axes[1].set_title("ISI distribution (all units)", fontsize=9)
    axes[2].axhline(1.0, color="k", lw=0.8, ls="--", label="Poisson (1)")
    axes[2].set_xscale("log")
    axes[2].set_xlabel("mean count per window (unit x stimulus)")
    axes[2].set_ylabel("Fano factor across repeats (ddof 1)")
    axes[2].set_title("count variability", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def patch_statistics(stats: dict):
    """Radially averaged power spectra and covariance eigenvalue spectra of patch sets, side by side.

    Parameters
    ----------
    stats : dict
        name → :func:`spikevae.data.patch_statistics` result.
    """
    plt = _mpl()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, s in stats.items():
        a.plot(s["spectrum_f"], s["spectrum"], "o-", ms=3, label=name)
    for f in (0.125, 0.25):
        a.axvline(f, color="0.8", lw=0.8, zorder=0)
    a.set(xlabel="spatial frequency (cycles/pixel)", ylabel="power (mean 1)", yscale="log",
          title="power spectrum of the patches (JPEG blocks would add 1/8, 1/4)")
    a.legend(fontsize=8)
    for name, s in stats.items():
        ev = np.asarray(s["eigenvalues"])
        b.plot(np.arange(1, len(ev) + 1), ev / ev.sum(), label=f"{name}: PR {s['participation_ratio']:.0f}, "
               f"{s['pcs_for_90']} PCs for 90 %")
    b.set(xlabel="principal component", ylabel="fraction of variance", xscale="log", yscale="log",
          title="covariance eigenvalues")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_figure(fig, path, dpi: int = 130):
    """Save atomically (temporary name, then rename) and close the figure; return the path."""
    from .io.files import atomic_write

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
    finally:
        _mpl().close(fig)
