"""A β-sweep of 8 small P-VAE runs on a local Dask cluster against the same runs one after another.

Side by side in one run, on the same grid (β ∈ 8 values, digits, K = 32, lin|lin, exact
objective, ``--epochs`` epochs), each into a fresh folder:

- ``serial, 1 thread``: ``python -m spikevae.sweep --serial`` (each run single-threaded, as on a
  worker);
- ``serial, torch threads``: the same with ``threads=<cores>`` (torch's intra-op parallelism,
  what a user gets by looping over the training command);
- ``dask``: ``python -m spikevae.sweep`` with a LocalCluster of one single-threaded worker
  process per core (cluster start-up included);
- ``dask, warm``: the same runs sent (``--scheduler``) to a cluster started and warmed (one
  1-epoch run per worker) before the clock starts: the steady state of a long sweep.

Reports wall time, the ratio to each serial baseline, the CPU time used per wall second (both
cores busy → about 2) and the peak resident memory of the whole process tree (sampled).

``python benchmarks/sweep.py [--epochs 200] [--workers 2]``
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time


def _measure(fn):
    """Wall seconds, CPU seconds of this process tree, peak summed RSS (MB) of the tree."""
    import psutil

    me = psutil.Process()
    peak = [0.0]
    cpu = {}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            rss = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    rss += p.memory_info().rss
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], rss / 2**20)
            stop.wait(0.1)

    t_self = sum(me.cpu_times()[:2])
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    cpu[me.pid] = sum(me.cpu_times()[:2]) - t_self
    return wall, sum(cpu.values()), peak[0]


def main(argv=None) -> int:
    from spikevae.workflows.sweep import run_sweep

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = p.parse_args(argv)
    grid = {"beta": [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]}
    fixed = {"dataset": "digits", "latents": 32, "epochs": args.epochs, "batch_size": 100, "method": "exact"}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_sweep(os.path.join(tmp, "warm-up"), {"beta": [1.0]}, {**fixed, "epochs": 1}, serial=True, progress=False)
        for name, kwargs, extra in (("serial, 1 thread", {"serial": True}, {}),
                                    (f"serial, {args.workers} torch threads", {"serial": True},
                                     {"threads": args.workers}),
                                    (f"dask, {args.workers} workers", {"n_workers": args.workers}, {})):
            out = os.path.join(tmp, name.split(",")[0] + str(len(rows)))
            recs = []
            wall, cpu, peak = _measure(lambda: recs.extend(run_sweep(out, grid, {**fixed, **extra}, progress=False,
                                                                     **kwargs)))
            assert all(r["status"] == "ok" for r in recs), [r.get("error") for r in recs]
            rows[name] = (wall, cpu, peak, recs)
        # the steady state: a cluster started and every worker warmed (imports, data) before timing
        from dask.distributed import Client, LocalCluster

        from spikevae.workflows.sweep import run_job

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, scheduler_port=0,
                          dashboard_address=":0", silence_logs=40) as cluster, Client(cluster) as client:
            for i, w in enumerate(client.scheduler_info()["workers"]):
                client.submit(run_job, {**fixed, "family": "poisson", "arch": "lin|lin", "seed": 0, "beta": 1.0,
                                        "epochs": 1}, os.path.join(tmp, f"warm{i}"), workers=[w], pure=False).result()
            recs = []
            out = os.path.join(tmp, "warm-cluster")
            wall, cpu, peak = _measure(lambda: recs.extend(run_sweep(out, grid, fixed, scheduler=cluster.scheduler_address,
                                                                     progress=False)))
            assert all(r["status"] == "ok" for r in recs), [r.get("error") for r in recs]
            rows[f"dask, {args.workers} warm workers"] = (wall, cpu, peak, recs)
    base1, base2 = rows["serial, 1 thread"][0], rows[f"serial, {args.workers} torch threads"][0]
    print(f"8-run β-sweep, digits, K = 32, {args.epochs} epochs each ({os.cpu_count()} cores)")
    print(f"{'mode':28s} {'wall s':>8s} {'vs serial 1t':>13s} {'vs serial nt':>13s} {'CPU s / wall s':>15s} "
          f"{'peak RSS MB':>12s}")
    for name, (wall, cpu, peak, _) in rows.items():
        print(f"{name:28s} {wall:8.1f} {base1 / wall:12.2f}x {base2 / wall:12.2f}x {cpu / wall:15.2f} {peak:12.0f}")
    ls = [r["metrics"]["lifetime_sparsity"] for r in rows[f"dask, {args.workers} workers"][3]]
    print("lifetime sparsity by β (dask run): " + ", ".join(f"{b:g}: {s:.3f}" for b, s in zip(grid["beta"], ls)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
