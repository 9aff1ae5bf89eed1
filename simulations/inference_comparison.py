"""Amortized against iterative inference on the same held-out patches, like for like: every row the metrics of
one code on one dictionary, every comparison frontier against frontier.

    python simulations/inference_comparison.py --out cmp/ [--ipvae ipvae.pt [more.pt ...]] [--checkpoint pvae.pt]

Rows (``comparison.csv``; columns ``model, dictionary, readout, iterations, r2, r2_pooled, zeros, distance,
distance_pooled, spikes_per_patch, window_ms, spikes_per_s`` and more):

- **P-VAE, amortized** (``--checkpoint``, default the shipped model): one encoder pass; read-outs ``counts`` (one
  exact Poisson draw of λ: a window of spikes) and ``rates`` (λ itself). Dictionary: the P-VAE's.
- **iP-VAE** (``--ipvae``, default the shipped ``spikevae/assets/ipvae_default.pt``; several checkpoints, e.g. a
  β sweep, each give their rows): the torch iteration at each of ``--iterations``; read-outs ``spikes`` (one draw
  ``z ~ Pois(e^u)``) and ``rates`` (``e^u``). Dictionary: its own.
- **iP-VAE circuit**: the same model as a Brian2 spiking network (:mod:`spikevae.brian.ipvae`) on the first
  ``--circuit-patches`` patches, read-out ``spikes``.
- **LCA**, converged (:func:`spikevae.lca.lca_fixed_point`, relative duality gap ≤ 1e-9), λ swept, ``signed`` (soft
  threshold) and ``nonneg``, **on each model's own atoms** (normalised; codes rescaled to the atoms' scale): the
  P-VAE is compared with the LCA on the P-VAE's atoms, the iP-VAE with the LCA on the iP-VAE's.
- **Spiking LCA** (integrate-and-fire ON/OFF pairs, or non-negative units), rate code ``τ·rate``, on the P-VAE's
  atoms, beside the converged LCA on the same few patches.

Metrics of one code (:mod:`spikevae.analysis.metrics`): ``r2``, the reference's R² (the mean over patches of each
patch's ``1 − ‖x − x̂‖²/‖x − x̄‖²``), and ``r2_pooled`` (``1 − Σ‖x − x̂‖²/Σ‖x − x̄‖²``); MSE (squared error summed
over a patch's pixels); the fraction of zero entries; the reference's distance ``√((1 − R²)² + (1 − zeros)²)`` from
each R² (``distance``, ``distance_pooled``); lifetime and population sparsity; the code's cost (KL from the prior in
nats for the Poisson models, ℓ1 for the LCA).

One time base: each read-out states the time it spans (``window_ms``: the P-VAE's presentation window, one
iteration period of the iP-VAE circuit, the spiking LCA's run) and the time from the stimulus onset to it
(``elapsed_ms``), and its spikes are given per patch and per second per unit (``spikes_per_s``), as are all the
spikes emitted up to it (``cumulative_spikes``, ``cumulative_spikes_per_s``).

Frontiers (``frontier.csv``): at each of ``--zeros`` the R² of each code family interpolated (linearly in zeros)
along its sweep (the LCA's λ, the iP-VAE's t, over every ``--ipvae`` checkpoint the best), on one dictionary, and
the gap ``LCA − model``; for the amortized P-VAE, at its own zeros. Writes ``comparison.csv``, ``frontier.csv``,
``results.json``, ``report.md`` and ``figures/`` (R² and zeros against iterations; R² against zeros, one line per
code family and patch set).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from spikevae.analysis.metrics import code_metrics
from spikevae.cli.common import Parser, cli_entry, positive_float, positive_int, seed, unit_float
from spikevae.errors import ArgumentError

COLUMNS = ("model", "dictionary", "readout", "iterations", "r2", "r2_pooled", "zeros", "distance", "distance_pooled",
           "mse", "spikes_per_patch", "window_ms", "spikes_per_s", "elapsed_ms", "cumulative_spikes",
           "cumulative_spikes_per_s", "lifetime_sparsity", "population_sparsity", "cost", "cost_unit", "n_patches",
           "wall_s")
FRONTIER_COLUMNS = ("dictionary", "model", "lca", "zeros", "r2_model", "r2_lca", "gap", "r2_pooled_model",
                    "r2_pooled_lca", "gap_pooled")
METRICS = ("r2", "r2_pooled", "mse", "zeros", "distance", "distance_pooled", "lifetime_sparsity", "population_sparsity")


def _row(model, dictionary, readout, iterations, metrics, n, wall, k, **extra) -> dict:
    """One row; spikes per second per unit from the spikes per patch and the read-out's window (and likewise
    for the cumulative spikes over the elapsed time), for a code of ``k`` units."""
    row = {c: None for c in COLUMNS}
    row.update(model=model, dictionary=dictionary, readout=readout, iterations=iterations, n_patches=n, wall_s=wall,
               **{m: metrics[m] for m in METRICS if m in metrics}, **extra)
    if row["spikes_per_patch"] is not None and row["window_ms"]:
        row["spikes_per_s"] = row["spikes_per_patch"] / (k * row["window_ms"] * 1e-3)
    if row["cumulative_spikes"] is not None and row["elapsed_ms"]:
        row["cumulative_spikes_per_s"] = row["cumulative_spikes"] / (k * row["elapsed_ms"] * 1e-3)
    return row


def frontier(points, levels) -> list:
    """R² (and pooled R²) at each zeros level, interpolated linearly in zeros between the two neighbouring points
    of a sweep ``points`` [(zeros, r2, r2_pooled), ...]; None outside the sweep's range (never extrapolated).

    >>> frontier([(0.6, 0.9, 0.92), (0.8, 0.7, 0.75)], [0.7, 0.85])
    [(0.8, 0.835), (None, None)]
    """
    pts = sorted(points)
    out = []
    for z in levels:
        hit = None
        for (z0, a0, p0), (z1, a1, p1) in zip(pts, pts[1:]):
            if z0 <= z <= z1 and z1 > z0:
                w = (z - z0) / (z1 - z0)
                hit = (round(a0 + w * (a1 - a0), 12), round(p0 + w * (p1 - p0), 12))
                break
        if hit is None and any(abs(p[0] - z) < 1e-12 for p in pts):
            p = next(p for p in pts if abs(p[0] - z) < 1e-12)
            hit = (p[1], p[2])
        out.append(hit or (None, None))
    return out


def _pvae_rows(model, x, rng, window_ms):
    import torch

    t0 = time.perf_counter()
    lam = model.rates(x)
    with torch.no_grad():
        p = model.config.patch_size
        kl = model.vae.posterior(torch.as_tensor(x.reshape(-1, 1, p, p), dtype=torch.float32)).kl
    kl = float(kl.sum(1).mean())
    wall = time.perf_counter() - t0
    z = rng.poisson(lam).astype(np.float64)
    phi, k = model.dictionary, lam.shape[1]
    time_base = dict(window_ms=window_ms, elapsed_ms=window_ms)
    return [_row("P-VAE (amortized)", "P-VAE", "counts", 1, code_metrics(x, z @ phi.T, z), len(x), wall, k,
                 spikes_per_patch=float(z.sum(1).mean()), cumulative_spikes=float(z.sum(1).mean()), cost=kl,
                 cost_unit="KL nats", **time_base),
            _row("P-VAE (amortized)", "P-VAE", "rates", 1, code_metrics(x, lam @ phi.T, lam), len(x), wall, k,
                 spikes_per_patch=float(lam.sum(1).mean()), cumulative_spikes=float(lam.sum(1).mean()), cost=kl,
                 cost_unit="KL nats (expected spikes)", **time_base)]


def _ipvae_rows(ip, name, x, iterations, seed, period_ms):
    from spikevae.models.ipvae import evaluate

    t0 = time.perf_counter()
    rows = evaluate(ip, x, t_max=max(iterations), save_t=iterations, seed=seed)
    wall = time.perf_counter() - t0
    k = ip.config.n_latents
    out = []
    for r in rows:
        wall_t = wall * r["t"] / max(iterations)  # the run to max(iterations) passed every t on the way
        # one iteration is one period of the circuit; the read-out of t is period t, after periods 0..t
        time_base = dict(window_ms=period_ms, elapsed_ms=(r["t"] + 1) * period_ms, cumulative_spikes=r["cumulative_spikes"])
        out.append(_row(name, "iP-VAE", "spikes", r["t"], r, len(x), wall_t, k, spikes_per_patch=r["spikes_per_patch"],
                        cost=r["kl_to_prior"], cost_unit="KL nats", **time_base))
        rates = {"r2_pooled": r["r2_rates"], "mse": r["mse_rates"], "zeros": 0.0,
                 "distance_pooled": r["distance_rates"]}
        out.append(_row(name, "iP-VAE", "rates", r["t"], rates, len(x), wall_t, k, cost=r["kl_to_prior"],
                        cost_unit="KL nats", **time_base))
    return out, rows


def _circuit_rows(ip, x, iterations, args):
    from spikevae.brian.ipvae import IPVAECircuitConfig, iteration_counts
    from spikevae.models.ipvae import evaluate
    from spikevae.spikes.producers import IPVAEProducer
    from spikevae.workflows.circuit import circuit_readout

    T = max(iterations)
    producer = IPVAEProducer(ip, T, IPVAECircuitConfig(period=args.period * 1e-3, substeps=args.substeps,
                                                       target=args.circuit_target))
    t0 = time.perf_counter()
    spikes = producer.produce(x, 1, seed=args.seed).spikes
    wall = time.perf_counter() - t0
    torch_rows = {r["t"]: r for r in evaluate(ip, x, t_max=T, save_t=iterations, seed=args.seed + 1)}
    out = []
    k = ip.config.n_latents
    for r in circuit_readout(producer.params.phi, x, iteration_counts(spikes, T), save_t=iterations):
        t = r["t"]
        out.append(_row("iP-VAE (Brian2 circuit)", "iP-VAE", "spikes", t, r, len(x), wall * t / T, k,
                        spikes_per_patch=r["spikes_per_patch"], cumulative_spikes=r["cumulative_spikes"],
                        window_ms=args.period, elapsed_ms=(t + 1) * args.period,
                        torch_r2=torch_rows[t]["r2"], torch_zeros=torch_rows[t]["zeros"]))
    return out, spikes


def _lca_rows(x, phi, lams, dictionary, suffix=""):
    from spikevae.lca import LCAConfig, lca_fixed_point

    norms = np.linalg.norm(phi, axis=0)
    out = []
    for kind, label in (("soft", "signed"), ("nonneg", "nonneg")):
        for lam in lams:
            t0 = time.perf_counter()
            res = lca_fixed_point(x, phi / norms, LCAConfig(lam=lam, threshold=kind))
            wall = time.perf_counter() - t0
            a = res.codes / norms  # on the atoms' own scale: Φ a = (Φ/‖φ‖)(‖φ‖ a)
            # the converged code, computed directly: no LCA iterations or spikes to report (coordinate-descent
            # epochs in results.json); docs/lca.md gives the dynamics' steps to reach it
            out.append(_row(f"LCA λ={lam:g}{suffix}", dictionary, label, None, code_metrics(x, a @ phi.T, a), len(x),
                            wall, phi.shape[1], cost=float(np.abs(res.codes).sum(1).mean()),
                            cost_unit="l1 (unit atoms)", max_duality_gap=float(np.max(res.residual)),
                            solver_epochs_max=int(np.max(res.steps)), lam=lam))
    return out


def _spiking_lca_rows(x, phi, lam, duration, seed):
    from spikevae.lca import LCAConfig
    from spikevae.spikes.producers import SpikingLCAProducer

    norms = np.linalg.norm(phi, axis=0)
    out = []
    for kind, label in (("soft", "signed (ON/OFF)"), ("nonneg", "nonneg")):
        producer = SpikingLCAProducer(phi / norms, None, LCAConfig(lam=lam, threshold=kind), window=duration)
        t0 = time.perf_counter()
        produced = producer.produce(x, 1, seed=seed)
        wall = time.perf_counter() - t0
        codes = producer.codes(produced.code)
        a = codes / norms
        n_spikes = produced.spikes.n_spikes / len(x)
        out.append(_row(f"spiking LCA λ={lam:g}", "P-VAE", label, None, code_metrics(x, a @ phi.T, a), len(x), wall,
                        produced.spikes.n_units, spikes_per_patch=n_spikes, cumulative_spikes=n_spikes,
                        window_ms=duration * 1e3, elapsed_ms=duration * 1e3, cost=float(np.abs(codes).sum(1).mean()),
                        cost_unit="l1 (unit atoms)"))
    return out


def frontiers(rows, levels) -> list[dict]:
    """Frontier against frontier on each dictionary: at each zeros level, the R² of the model's spike code (the
    iP-VAE along its iterations t) or count code (the amortized P-VAE, at its own zeros) and of each LCA along its
    λ sweep on the same atoms, and their gap (LCA − model). Only rows on the full patch set take part."""
    out = []
    n = max(r["n_patches"] for r in rows)
    full = [r for r in rows if r["n_patches"] == n]
    models = [r for r in full if r["readout"] in ("spikes", "counts") and "LCA" not in r["model"]]
    for dictionary in dict.fromkeys(r["dictionary"] for r in models):
        mine = [r for r in models if r["dictionary"] == dictionary]
        pts = [(r["zeros"], r["r2"], r["r2_pooled"]) for r in mine]
        lv = levels if len(mine) > 1 else [mine[0]["zeros"]]
        for kind in ("signed", "nonneg"):
            lca = [(r["zeros"], r["r2"], r["r2_pooled"]) for r in full
                   if r["dictionary"] == dictionary and r["model"].startswith("LCA λ=") and r["readout"] == kind]
            for z, (m, mp), (c, cp) in zip(lv, frontier(pts, lv), frontier(lca, lv)):
                out.append({"dictionary": dictionary, "model": mine[0]["model"], "lca": kind, "zeros": z,
                            "r2_model": m, "r2_lca": c, "gap": None if None in (m, c) else c - m,
                            "r2_pooled_model": mp, "r2_pooled_lca": cp,
                            "gap_pooled": None if None in (mp, cp) else cp - mp})
    return out


def _parser() -> Parser:
    import inspect

    from spikevae.brian.ipvae import IPVAECircuitConfig
    from spikevae.spikes.producers import N_ITER, SpikingLCAProducer

    circuit = IPVAECircuitConfig()  # the defaults, as the library writes them
    slca_window = inspect.signature(SpikingLCAProducer).parameters["window"].default
    p = Parser(prog="inference_comparison", description=__doc__.splitlines()[0])
    p.add_argument("--ipvae", nargs="+", metavar="CKPT",
                   help="iP-VAE checkpoint(s) (python -m spikevae.train --model ipvae; several, e.g. a β sweep, each "
                        "on its own atoms; default: the shipped one)")
    p.add_argument("--checkpoint", help="P-VAE checkpoint with a linear decoder (default: the shipped model)")
    p.add_output("inference_comparison", "comparison")
    p.add_argument("--n-patches", type=positive_int, default=1000, help="held-out patches")
    p.add_argument("--iterations", type=positive_int, nargs="+", default=[1, 4, 16, 32, 64, 128, 256, 512, 1000],
                   help="iP-VAE iterations at which every metric is read out (the iP-VAE's frontier runs along them)")
    p.add_argument("--lams", type=positive_float, nargs="+", default=[0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0],
                   help="LCA sparsity penalties (unit-norm atoms; the LCA's frontier runs along them)")
    p.add_argument("--zeros", type=unit_float, nargs="+", default=[0.7, 0.75, 0.8],
                   help="fractions of zeros at which the frontiers are compared")
    p.add_argument("--circuit-patches", type=int, default=100, help="patches for the Brian2 iP-VAE circuit (0: skip)")
    p.add_argument("--circuit-iterations", type=positive_int, default=N_ITER, help="iterations of the circuit run")
    p.add_argument("--period", type=positive_float, default=circuit.period * 1e3, help="circuit: ms per iteration")
    p.add_argument("--substeps", type=positive_int, default=circuit.substeps, help="circuit: Brian2 steps per iteration")
    p.add_argument("--circuit-target", default="numpy", choices=("numpy", "cython"),
                   help="Brian2 target of the iP-VAE circuit")
    p.add_argument("--slca-patches", type=int, default=8, help="patches for the spiking LCA (0: skip)")
    p.add_argument("--slca-lam", type=positive_float, default=0.5, help="λ of the spiking LCA")
    p.add_argument("--slca-duration", type=positive_float, default=slca_window * 1e3, help="spiking LCA: ms per patch")
    p.add_argument("--seed", type=seed, default=0, help="seed of the stimuli and the spikes")
    return p


@cli_entry("inference_comparison")
def main(argv=None) -> int:
    import dataclasses

    from spikevae import plots
    from spikevae.data import natural_patches
    from spikevae.io import RunFolder, write_csv, write_json, write_text
    from spikevae.models.checkpoint import default_ipvae_path
    from spikevae.models.ipvae import load as load_ipvae
    from spikevae.models.trained import load_model
    from spikevae.spikes.config import PoissonLayerConfig

    args = _parser().parse_args(argv)
    t_start = time.perf_counter()
    if args.n_patches < 2:
        raise ArgumentError("--n-patches must be >= 2")
    pvae = load_model(args.checkpoint)
    if pvae.family != "poisson" or pvae.config.decoder != "lin":
        raise ArgumentError("the comparison needs a P-VAE with a linear decoder as --checkpoint")
    paths = args.ipvae or [str(default_ipvae_path())]
    ips = [load_ipvae(p) for p in paths]
    image = dataclasses.replace(pvae.preprocessing, min_energy=0.0)  # how an image becomes input
    for path, ip in zip(paths, ips):
        if dataclasses.replace(ip.preprocessing, min_energy=0.0) != image:
            raise ArgumentError(f"{path} was trained on other inputs than {pvae.path} (preprocessing "
                                f"{ip.preprocessing.to_dict()} against {pvae.preprocessing.to_dict()}): its atoms do "
                                "not match the patches")
    names = ["iP-VAE (torch)"] if len(ips) == 1 else [f"iP-VAE (torch, {Path(p).stem})" for p in paths]
    atoms = ["iP-VAE"] if len(ips) == 1 else [f"iP-VAE {Path(p).stem}" for p in paths]
    iterations = sorted(set(args.iterations))
    window_ms = PoissonLayerConfig().window * 1e3  # the P-VAE's presentation window (simulate's default)
    with RunFolder(args.out, "inference_comparison", args.overwrite) as run:
        out = run.path
        x = natural_patches(1, args.n_patches, pvae.preprocessing, seed=args.seed + 1).val
        x = x.reshape(len(x), -1).astype(np.float64)
        rng = np.random.default_rng(args.seed)
        rows = _pvae_rows(pvae, x, rng, window_ms)
        traces = []
        for ip, name, dictionary in zip(ips, names, atoms):
            ip_rows, trace = _ipvae_rows(ip, name, x, iterations, args.seed, args.period)
            rows += [dict(r, dictionary=dictionary) for r in ip_rows]
            traces.append(trace)
        circuit = None
        if args.circuit_patches > 0:
            c_iter = [t for t in iterations if t <= args.circuit_iterations] or [args.circuit_iterations]
            c_rows, circuit = _circuit_rows(ips[0], x[:args.circuit_patches], c_iter, args)
            rows += [dict(r, dictionary=atoms[0]) for r in c_rows]
        rows += _lca_rows(x, pvae.dictionary, args.lams, "P-VAE")
        for ip, dictionary in zip(ips, atoms):
            rows += _lca_rows(x, ip.circuit_parameters().phi, args.lams, dictionary)
        if args.slca_patches > 0:  # and the converged LCA on the same few patches: the spiking rows' fair peer
            xs = x[:args.slca_patches]
            rows += _lca_rows(xs, pvae.dictionary, [args.slca_lam], "P-VAE", " (the spiking LCA's patches)")
            rows += _spiking_lca_rows(xs, pvae.dictionary, args.slca_lam, args.slca_duration * 1e-3, args.seed)
        front = frontiers(rows, sorted(set(args.zeros)))
        write_csv(out / "comparison.csv", list(COLUMNS), [["" if r.get(c) is None else r[c] for c in COLUMNS] for r in rows])
        write_csv(out / "frontier.csv", list(FRONTIER_COLUMNS),
                  [["" if r.get(c) is None else r[c] for c in FRONTIER_COLUMNS] for r in front])
        runs = {}
        for name, trace in zip(names, traces):
            runs[name.replace("(torch", "spikes (torch")] = [{"t": r["t"], "r2": r["r2"], "zeros": r["zeros"]}
                                                            for r in trace]
        if circuit is not None:
            runs[f"iP-VAE spikes (Brian2 circuit, {args.circuit_patches} patches)"] = [
                {"t": r["iterations"], "r2": r["r2"], "zeros": r["zeros"]} for r in rows
                if r["model"] == "iP-VAE (Brian2 circuit)"]
        plots.save_figure(plots.convergence(runs), out / "figures" / "convergence.png")
        plots.save_figure(plots.rate_distortion(rows), out / "figures" / "rate_distortion.png")
        results = {"n_patches": len(x), "preprocessing": pvae.preprocessing.to_dict(), "checkpoint": Path(pvae.path).name,
                   "ipvae": [Path(p).name for p in paths], "zeros_levels": sorted(set(args.zeros)), "rows": rows,
                   "frontier": front, "ipvae_trace": traces, "wall_seconds": time.perf_counter() - t_start}
        write_json(out / "results.json", results)
        write_text(out / "report.md", _report(rows, front, args, len(x)))
        for r in front:
            if r["gap"] is not None:
                print(f"{r['model']} against the {r['lca']} LCA on the {r['dictionary']}'s atoms at zeros "
                      f"{r['zeros']:.3f}: R² {r['r2_model']:.3f} against {r['r2_lca']:.3f} (gap {r['gap']:+.3f})")
        print(f"{len(rows)} rows; wrote {out / 'comparison.csv'} and {out / 'frontier.csv'} "
              f"({results['wall_seconds']:.0f} s)")
    return 0


def _fmt(v, spec=".3f"):
    if v is None or v == "" or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec) if not isinstance(v, str) else v


def _report(rows, front, args, n) -> str:
    lines = ["# Amortized against iterative inference", "",
             f"{n} held-out natural patches. R²: the reference's (mean over patches of each patch's R²); pooled R² "
             "beside it. MSE summed over a patch's pixels; zeros: fraction of zero entries of the code; distance "
             "√((1−R²)² + (1−zeros)²). Spikes per second per unit over the read-out's window; cumulative: all the "
             f"spikes up to the read-out over the time since onset. iP-VAE: {args.period:g} ms per iteration; circuit: "
             f"the first {min(args.circuit_patches, n)} patches.", "",
             "## Frontiers (R² at matched zeros, one dictionary each)", "",
             "| atoms | model | LCA | zeros | R² model | R² LCA | gap | pooled: model | LCA | gap |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in front:
        lines.append(f"| {r['dictionary']} | {r['model']} | {r['lca']} | {r['zeros']:.3f} | {_fmt(r['r2_model'])} | "
                     f"{_fmt(r['r2_lca'])} | {_fmt(r['gap'], '+.3f')} | {_fmt(r['r2_pooled_model'])} | "
                     f"{_fmt(r['r2_pooled_lca'])} | {_fmt(r['gap_pooled'], '+.3f')} |")
    lines += ["", "## Every code", "",
              "| model | atoms | read-out | t | patches | R² | R² pooled | zeros | distance | spikes / patch | window ms | "
              "spikes / s / unit | cumulative spikes / s / unit | cost |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cost = "–" if r["cost"] is None else f"{r['cost']:.3g} {r['cost_unit']}"
        lines.append(f"| {r['model']} | {r['dictionary']} | {r['readout']} | "
                     f"{_fmt(r['iterations'], 'd') if r['iterations'] else '–'} | {r['n_patches']} | "
                     f"{_fmt(r['r2'])} | {_fmt(r['r2_pooled'])} | {_fmt(r['zeros'])} | {_fmt(r['distance'])} | "
                     f"{_fmt(r['spikes_per_patch'], '.1f')} | {_fmt(r['window_ms'], 'g')} | {_fmt(r['spikes_per_s'], '.2f')} | "
                     f"{_fmt(r['cumulative_spikes_per_s'], '.2f')} | {cost} |")
    circ = [r for r in rows if r["model"] == "iP-VAE (Brian2 circuit)"]
    if circ:
        lines += ["", f"Brian2 circuit against the torch iteration on the same {circ[0]['n_patches']} patches (R² / zeros): "
                  + "; ".join(f"t = {r['iterations']}: {r['r2']:.3f} / {r['zeros']:.3f} against {r['torch_r2']:.3f} / "
                              f"{r['torch_zeros']:.3f}" for r in circ) + "."]
    lines += ["", "![convergence](figures/convergence.png)", "", "![rate-distortion](figures/rate_distortion.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
