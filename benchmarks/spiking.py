"""Brian2 Poisson layer throughput: the path ``simulate`` uses against Brian2's PoissonGroup and plain numpy.

1,000 presentations x 100 ms x 512 units (100 s simulated) at dt = 0.1 ms, driven
by the shipped P-VAE's rates on held-out natural patches. Every configuration
runs in its own child process (peak RSS is its own), side by side in one run:

- ``spikevae-<target>``: :func:`spikevae.spikes.simulate_poisson` (geometric
  gaps, same law as PoissonGroup), first run with an empty cache (includes code
  generation and compilation) and second run (the cached binary, fed its data at run time);
- ``poissongroup-<target>``: ``PoissonGroup(K, rates='stim(t, i)')``, one Bernoulli draw per neuron per
  step, on cpp_standalone (the fair peer of ours: first run with code generation and compilation, then
  the binary's own run time, what a rerun of a built project costs) and on the numpy runtime target;
- ``numpy-exact``: exact Poisson counts and uniform spike times in plain numpy.

``python benchmarks/spiking.py [--presentations 1000] [--dt-ms 0.1]``;
``--long`` runs 100,000 presentations through ``simulate_poisson`` (the memory bound check);
``--parallel 2`` runs 10,000 presentations with 1 and with 2 worker processes (``simulate --workers``).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rates(n: int):
    import numpy as np

    import spikevae
    from spikevae.stimuli import natural

    model = spikevae.load_model()
    lam = model.rates(natural(min(n, 2000), model.preprocessing, seed=1).images)
    return lam[np.arange(n) % len(lam)]


def _one(name: str, n: int, dt: float, chunk: int) -> dict:
    import numpy as np

    from spikevae.spikes import PoissonLayerConfig, poisson_spikes_numpy, simulate_poisson

    lam = _rates(n)
    cfg = PoissonLayerConfig(window=0.1, dt=dt, chunk=chunk)
    out = {"config": name, "presentations": n, "expected_spikes": float(lam.sum())}
    if name == "numpy-exact":
        t0 = time.perf_counter()
        r = poisson_spikes_numpy(lam, cfg, np.random.default_rng(0))
        out["wall_s"] = time.perf_counter() - t0
        out["spikes"] = r.n_spikes
    elif name.startswith("poissongroup-"):
        import tempfile

        import brian2 as b2

        standalone = name.endswith("cpp_standalone")
        build = tempfile.TemporaryDirectory()
        if standalone:
            b2.set_device("cpp_standalone", directory=build.name, build_on_run=False, with_output=False)
            b2.prefs.devices.cpp_standalone.extra_make_args_unix = ["-j2"]
        else:
            b2.prefs.codegen.target = "numpy"
        b2.seed(0)
        table = np.vstack([lam / cfg.window, np.zeros((1, lam.shape[1]))])
        stim = b2.TimedArray(table * b2.Hz, dt=cfg.window * b2.second)
        P = b2.PoissonGroup(lam.shape[1], rates="stim(t, i)", dt=dt * b2.second)
        mon = b2.SpikeMonitor(P)
        net = b2.Network(P, mon)
        t0 = time.perf_counter()
        net.run(n * cfg.window * b2.second, namespace={"stim": stim})
        if standalone:  # first run: generate, compile and run; then the binary alone (what a rerun costs)
            b2.device.build(directory=build.name, compile=True, run=True, with_output=False)
            out["wall_first_s"] = time.perf_counter() - t0
            out["wall_s"] = b2.device.timers["run_binary"]
        else:
            out["wall_s"] = time.perf_counter() - t0
        out["spikes"] = int(mon.num_spikes)
        build.cleanup()
    elif name.startswith("workers-"):  # the parallel path on a warm cache: the second of two runs is timed
        import hashlib

        workers = int(name.split("-", 1)[1])
        for _ in range(2):
            t0 = time.perf_counter()
            r = simulate_poisson(lam, PoissonLayerConfig(window=0.1, dt=dt, chunk=chunk, target="cpp_standalone"),
                                 seed=0, workers=workers)
            out["wall_s"] = time.perf_counter() - t0
        out["spikes"] = r.n_spikes
        out["sha256"] = hashlib.sha256(r.unit.tobytes() + r.time.tobytes()).hexdigest()[:16]
        out["peak_rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    else:
        target = name.split("-", 1)[1]
        import tempfile

        with tempfile.TemporaryDirectory() as build:  # an empty cache: the first run builds
            walls = []
            for _ in range(2):
                t0 = time.perf_counter()
                r = simulate_poisson(lam, PoissonLayerConfig(window=0.1, dt=dt, chunk=chunk, target=target), seed=0,
                                     build_dir=build)
                walls.append(time.perf_counter() - t0)
        out["wall_first_s"], out["wall_s"] = walls
        out["spikes"] = r.n_spikes
        out["target"] = r.meta["target"]
    out["sim_s"] = n * cfg.window
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presentations", type=int, default=1000)
    p.add_argument("--dt-ms", type=float, default=0.1)
    p.add_argument("--chunk", type=int, default=2000)
    p.add_argument("--configs", default="spikevae-cpp_standalone,poissongroup-cpp_standalone,spikevae-cython,"
                                       "poissongroup-numpy,numpy-exact")
    p.add_argument("--long", action="store_true", help="100,000 presentations through simulate_poisson (cpp_standalone)")
    p.add_argument("--parallel", type=int, metavar="N",
                   help="simulate_poisson with 1 and with N worker processes (cpp_standalone, warm cache, 10,000 "
                        "presentations unless --presentations): wall, ratio, peak memory, identical spikes")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one, args.presentations, args.dt_ms * 1e-3, args.chunk)))
        return 0
    configs = args.configs.split(",")
    n = args.presentations
    if args.long:
        configs, n = ["spikevae-cpp_standalone"], 100_000
        args.chunk = max(args.chunk, 10_000)
    if args.parallel:
        configs, n = ["workers-1", f"workers-{args.parallel}"], args.presentations
    if args.parallel and n == 1000:
        n = 10_000
    rows = []
    for name in configs:
        res = subprocess.run([sys.executable, __file__, "--one", name, "--presentations", str(n), "--dt-ms",
                              str(args.dt_ms), "--chunk", str(args.chunk)], capture_output=True, text=True)
        if res.returncode:
            print(f"  {name} failed: {res.stderr.strip().splitlines()[-1]}", file=sys.stderr)
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"  measured {name}", file=sys.stderr)
    exact = next((r for r in rows if r["config"] == "numpy-exact"), None)
    peer = next((r for r in rows if r["config"] == "poissongroup-cpp_standalone"), None)
    print(f"{n} presentations x 100 ms x 512 units ({n * 0.1:.0f} s simulated), dt = {args.dt_ms} ms, "
          f"shipped P-VAE rates ({rows[0]['expected_spikes']:.0f} expected spikes)")
    print(f"{'config':28s} {'wall s':>8s} {'1st run s':>9s} {'spikes':>9s} {'spikes/s':>10s} {'sim-s/wall-s':>12s} "
          f"{'x PoissonGroup cpp':>18s} {'vs numpy-exact':>14s} {'peak RSS MB':>11s}")
    for r in rows:
        ratio = f"{exact['wall_s'] / r['wall_s']:.3f}" if exact else "-"
        vs_peer = f"{peer['wall_s'] / r['wall_s']:.2f}" if peer else "-"
        first = f"{r['wall_first_s']:.2f}" if "wall_first_s" in r else "-"
        print(f"{r['config']:28s} {r['wall_s']:8.2f} {first:>9s} {r['spikes']:9d} {r['spikes'] / r['wall_s']:10.0f} "
              f"{r['sim_s'] / r['wall_s']:12.1f} {vs_peer:>18s} {ratio:>14s} {r['peak_rss_mb']:11.0f}")
    par = [r for r in rows if r["config"].startswith("workers-")]
    if len(par) == 2:
        same = par[0]["sha256"] == par[1]["sha256"] and par[0]["spikes"] == par[1]["spikes"]
        print(f"{par[1]['config']} vs {par[0]['config']}: {par[0]['wall_s'] / par[1]['wall_s']:.2f}x faster; "
              f"identical spikes: {same}; peak RSS of the worker processes "
              f"{par[1]['peak_rss_children_mb']:.0f} MB (each)")
    print("wall s: the second run for spikevae (its cached binary) and the binary's run time for PoissonGroup on "
          "cpp_standalone; 1st run s: with code generation and compilation")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
