"""Amortized against iterative inference on the same held-out patches, every row the metrics of one code.

    python simulations/inference_comparison.py --out cmp/ [--ipvae ipvae.pt] [--checkpoint pvae.pt]

Rows (``comparison.csv``; columns ``model, readout, iterations, r2, mse, zeros, distance, spikes_per_patch`` and
more):

- **P-VAE, amortized** (``--checkpoint``, default the shipped model): one encoder pass; read-outs ``counts`` (one
  exact Poisson draw of λ: a window of spikes) and ``rates`` (λ itself).
- **iP-VAE** (``--ipvae``, default the shipped ``spikevae/assets/ipvae_default.pt``): the torch iteration at
  each of ``--iterations``; read-outs ``spikes`` (one draw ``z ~ Pois(e^u)``) and ``rates`` (``e^u``).
- **iP-VAE circuit**: the same model as a Brian2 spiking network (:mod:`spikevae.brian.ipvae`) on the first
  ``--circuit-patches`` patches, read-out ``spikes`` (the counts of an iteration period), beside the torch
  iteration on the same patches.
- **LCA**, converged (:func:`spikevae.lca.lca_fixed_point`, relative duality gap ≤ 1e-9) on the P-VAE's atoms
  (normalised; codes rescaled to the atoms' scale), λ swept, ``signed`` (soft threshold) and ``nonneg``.
- **Spiking LCA** (integrate-and-fire ON/OFF pairs, or non-negative units), rate code ``τ·rate``.

Metrics of one code: R² pooled over patches (``1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²``), MSE (squared error summed over a
patch's pixels), fraction of zero entries, lifetime and population sparsity (Treves–Rolls, of |code|), the
reference's distance ``√((1 − R²)² + (1 − zeros)²)``, spikes per patch (per window, per iteration, or over the
spiking LCA's run) and the code's cost (KL from the prior in nats for the Poisson models, ℓ1 for the LCA).
Writes ``comparison.csv``, ``results.json``, ``report.md`` and ``figures/`` (R² and zeros against iterations;
R² against zeros for every row).
"""
from __future__ import annotations

import math
import time

import numpy as np

from spikevae.analysis.metrics import code_metrics
from spikevae.cli.common import Parser, cli_entry, positive_float, positive_int, seed
from spikevae.errors import ArgumentError

COLUMNS = ("model", "readout", "iterations", "r2", "mse", "zeros", "distance", "spikes_per_patch",
           "lifetime_sparsity", "population_sparsity", "cost", "cost_unit", "cumulative_spikes", "n_patches", "wall_s")


def _row(model, readout, iterations, metrics, n, wall, **extra) -> dict:
    row = {c: None for c in COLUMNS}
    row.update(model=model, readout=readout, iterations=iterations, n_patches=n, wall_s=wall, **metrics, **extra)
    return row


def _pvae_rows(model, x, rng):
    import torch

    t0 = time.perf_counter()
    lam = model.rates(x)
    with torch.no_grad():
        p = model.config.patch_size
        kl = model.vae.posterior(torch.as_tensor(x.reshape(-1, 1, p, p), dtype=torch.float32)).kl
    kl = float(kl.sum(1).mean())
    wall = time.perf_counter() - t0
    z = rng.poisson(lam).astype(np.float64)
    phi = model.dictionary
    return [_row("P-VAE (amortized)", "counts", 1, code_metrics(x, z @ phi.T, z), len(x), wall,
                 spikes_per_patch=float(z.sum(1).mean()), cost=kl, cost_unit="KL nats"),
            _row("P-VAE (amortized)", "rates", 1, code_metrics(x, lam @ phi.T, lam), len(x), wall,
                 spikes_per_patch=float(lam.sum(1).mean()), cost=kl, cost_unit="KL nats")]


def _ipvae_rows(ip, x, iterations, seed):
    from spikevae.models.ipvae import evaluate

    t0 = time.perf_counter()
    rows = evaluate(ip, x, t_max=max(iterations), save_t=iterations, seed=seed)
    wall = time.perf_counter() - t0
    out = []
    for r in rows:
        wall_t = wall * r["t"] / max(iterations)  # the run to max(iterations) passed every t on the way
        spikes = {k: r[k] for k in ("r2", "mse", "zeros", "distance", "lifetime_sparsity", "population_sparsity")}
        out.append(_row("iP-VAE (torch)", "spikes", r["t"], spikes, len(x), wall_t, spikes_per_patch=r["spikes_per_patch"],
                        cost=r["kl_to_prior"], cost_unit="KL nats", cumulative_spikes=r["cumulative_spikes"]))
        rates = {"r2": r["r2_rates"], "mse": r["mse_rates"], "zeros": 0.0, "distance": r["distance_rates"]}
        out.append(_row("iP-VAE (torch)", "rates", r["t"], rates, len(x), wall_t, cost=r["kl_to_prior"],
                        cost_unit="KL nats", distance_map=r["distance_map"]))
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
    for r in circuit_readout(producer.params.phi, x, iteration_counts(spikes, T), save_t=iterations):
        t = r["t"]
        metrics = {k: r[k] for k in ("r2", "mse", "zeros", "distance", "lifetime_sparsity", "population_sparsity")}
        out.append(_row("iP-VAE (Brian2 circuit)", "spikes", t, metrics, len(x), wall * t / T,
                        spikes_per_patch=r["spikes_per_patch"], cumulative_spikes=r["cumulative_spikes"],
                        torch_r2=torch_rows[t]["r2"], torch_zeros=torch_rows[t]["zeros"]))
    return out, spikes


def _lca_rows(x, phi, lams):
    from spikevae.lca import LCAConfig, lca_fixed_point

    norms = np.linalg.norm(phi, axis=0)
    out = []
    for kind, label in (("soft", "signed"), ("nonneg", "nonneg")):
        for lam in lams:
            t0 = time.perf_counter()
            res = lca_fixed_point(x, phi / norms, LCAConfig(lam=lam, threshold=kind))
            wall = time.perf_counter() - t0
            a = res.codes / norms  # on the P-VAE's atom scale: Φ a = (Φ/‖φ‖)(‖φ‖ a)
            # the converged code, computed directly: no LCA iterations to report (coordinate-descent epochs in
            # results.json); docs/lca.md gives the dynamics' steps to reach it
            out.append(_row(f"LCA λ={lam:g}", label, None, code_metrics(x, a @ phi.T, a), len(x), wall,
                            cost=float(np.abs(res.codes).sum(1).mean()), cost_unit="l1 (unit atoms)",
                            max_duality_gap=float(np.max(res.residual)), solver_epochs_max=int(np.max(res.steps))))
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
        out.append(_row(f"spiking LCA λ={lam:g}", label, None, code_metrics(x, a @ phi.T, a), len(x), wall,
                        spikes_per_patch=produced.spikes.n_spikes / len(x), cost=float(np.abs(codes).sum(1).mean()),
                        cost_unit="l1 (unit atoms)"))
    return out


def _parser() -> Parser:
    import inspect

    from spikevae.brian.ipvae import IPVAECircuitConfig
    from spikevae.spikes.producers import N_ITER, SpikingLCAProducer

    circuit = IPVAECircuitConfig()  # the defaults, as the library writes them
    slca_window = inspect.signature(SpikingLCAProducer).parameters["window"].default
    p = Parser(prog="inference_comparison", description=__doc__.splitlines()[0])
    p.add_argument("--ipvae", help="iP-VAE checkpoint (python -m spikevae.train --model ipvae; default: the shipped one)")
    p.add_argument("--checkpoint", help="P-VAE checkpoint with a linear decoder (default: the shipped model)")
    p.add_output("inference_comparison", "comparison")
    p.add_argument("--n-patches", type=positive_int, default=1000, help="held-out patches")
    p.add_argument("--iterations", type=positive_int, nargs="+", default=[1, 4, 16, 64, 256, 1000],
                   help="iP-VAE iterations at which every metric is read out")
    p.add_argument("--lams", type=positive_float, nargs="+", default=[0.05, 0.1, 0.25, 0.5, 1.0],
                   help="LCA sparsity penalties (unit-norm atoms)")
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
    from spikevae import plots
    from spikevae.data import natural_patches
    from spikevae.io import RunFolder, write_csv, write_json, write_text
    from spikevae.models.ipvae import load as load_ipvae
    from spikevae.models.trained import load_model

    args = _parser().parse_args(argv)
    t_start = time.perf_counter()
    if args.n_patches < 2:
        raise ArgumentError("--n-patches must be >= 2")
    pvae = load_model(args.checkpoint)
    if pvae.family != "poisson" or pvae.config.decoder != "lin":
        raise ArgumentError("the comparison needs a P-VAE with a linear decoder as --checkpoint")
    from spikevae.models.checkpoint import default_ipvae_path

    args.ipvae = args.ipvae or str(default_ipvae_path())
    ip = load_ipvae(args.ipvae)
    if ip.preprocessing != pvae.preprocessing:
        raise ArgumentError(f"{args.ipvae} was trained on other data than {pvae.path} (preprocessing "
                            f"{ip.preprocessing.to_dict()} against {pvae.preprocessing.to_dict()})")
    iterations = sorted(set(args.iterations))
    with RunFolder(args.out, "inference_comparison", args.overwrite) as run:
        out = run.path
        x = natural_patches(1, args.n_patches, pvae.preprocessing, seed=args.seed + 1).val
        x = x.reshape(len(x), -1).astype(np.float64)
        rng = np.random.default_rng(args.seed)
        rows = _pvae_rows(pvae, x, rng)
        ip_rows, ip_trace = _ipvae_rows(ip, x, iterations, args.seed)
        rows += ip_rows
        circuit = None
        if args.circuit_patches > 0:
            c_iter = [t for t in iterations if t <= args.circuit_iterations] or [args.circuit_iterations]
            c_rows, circuit = _circuit_rows(ip, x[:args.circuit_patches], c_iter, args)
            rows += c_rows
        rows += _lca_rows(x, pvae.dictionary, args.lams)
        if args.slca_patches > 0:  # and the converged LCA on the same few patches: the spiking rows' fair peer
            xs = x[:args.slca_patches]
            rows += [dict(r, model=r["model"] + " (the spiking LCA's patches)") for r in _lca_rows(xs, pvae.dictionary,
                                                                                                [args.slca_lam])]
            rows += _spiking_lca_rows(xs, pvae.dictionary, args.slca_lam, args.slca_duration * 1e-3, args.seed)
        write_csv(out / "comparison.csv", list(COLUMNS), [["" if r.get(c) is None else r[c] for c in COLUMNS] for r in rows])
        runs = {"iP-VAE spikes (torch)": [{"t": r["t"], "r2": r["r2"], "zeros": r["zeros"]} for r in ip_trace],
                "iP-VAE rates (torch)": [{"t": r["t"], "r2": r["r2_rates"]} for r in ip_trace]}
        if circuit is not None:
            runs["iP-VAE spikes (Brian2 circuit)"] = [{"t": r["iterations"], "r2": r["r2"], "zeros": r["zeros"]}
                                                     for r in rows if r["model"] == "iP-VAE (Brian2 circuit)"]
        plots.save_figure(plots.convergence(runs), out / "figures" / "convergence.png")
        plots.save_figure(plots.rate_distortion(rows), out / "figures" / "rate_distortion.png")
        results = {"n_patches": len(x), "checkpoint": str(pvae.path), "ipvae": str(args.ipvae), "rows": rows,
                   "ipvae_trace": ip_trace, "wall_seconds": time.perf_counter() - t_start}
        write_json(out / "results.json", results)
        write_text(out / "report.md", _report(rows, args, len(x)))
        best = min((r for r in rows if r["readout"] != "rates" and r["n_patches"] == len(x)), key=lambda r: r["distance"])
        print(f"{len(rows)} rows; of those on all {len(x)} patches the closest to (R² 1, zeros 1): {best['model']} "
              f"{best['readout']} (t = {best['iterations']}) R² {best['r2']:.3f}, zeros {best['zeros']:.3f}, distance "
              f"{best['distance']:.3f}; wrote {out / 'comparison.csv'} ({results['wall_seconds']:.0f} s)")
    return 0


def _fmt(v, spec=".3f"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec) if not isinstance(v, str) else v


def _report(rows, args, n) -> str:
    lines = ["# Amortized against iterative inference", "",
             f"{n} held-out natural patches. R² pooled over patches; MSE summed over a patch's pixels; zeros: fraction "
             "of zero entries of the code; distance √((1−R²)² + (1−zeros)²). iP-VAE circuit: the first "
             f"{min(args.circuit_patches, n)} patches, {args.period:g} ms per iteration.", "",
             "| model | read-out | iterations | patches | R² | MSE | zeros | distance | spikes / patch | lifetime sp. | cost |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cost = "–" if r["cost"] is None else f"{r['cost']:.3g} {r['cost_unit']}"
        lines.append(f"| {r['model']} | {r['readout']} | {_fmt(r['iterations'], 'd') if r['iterations'] else '–'} | "
                     f"{r['n_patches']} | "
                     f"{_fmt(r['r2'])} | {_fmt(r['mse'], '.1f')} | {_fmt(r['zeros'])} | {_fmt(r['distance'])} | "
                     f"{_fmt(r['spikes_per_patch'], '.1f')} | {_fmt(r['lifetime_sparsity'])} | {cost} |")
    circ = [r for r in rows if r["model"] == "iP-VAE (Brian2 circuit)"]
    if circ:
        lines += ["", f"Brian2 circuit against the torch iteration on the same {circ[0]['n_patches']} patches (R² / zeros): "
                  + "; ".join(f"t = {r['iterations']}: {r['r2']:.3f} / {r['zeros']:.3f} against {r['torch_r2']:.3f} / "
                              f"{r['torch_zeros']:.3f}" for r in circ) + "."]
    lines += ["", "![convergence](figures/convergence.png)", "", "![rate-distortion](figures/rate_distortion.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
