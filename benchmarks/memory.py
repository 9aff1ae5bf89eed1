"""Peak memory of `python -m spikevae.simulate --no-neo` against run length (it must not grow with the run).

Each length runs in its own process (its own peak RSS, from ``wait4``), the shipped
model, 512 units, 100 ms windows, 50 stimuli repeated to reach the length. Prints presentations, simulated
seconds, wall time, peak RSS and the ratio to the shortest run.

    python benchmarks/memory.py                       # 10,000 and 100,000 presentations
    python benchmarks/memory.py --lengths 10000 100000 1000000 --dt 1 --target cython   # about 40 minutes
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def peak_rss_mb(argv: list[str]) -> tuple[float, float]:
    """Run ``argv`` in a child process; its wall time (s) and its own peak resident memory (MB, from wait4)."""
    t0 = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(argv)} failed with exit status {child.returncode}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[10_000, 100_000], help="presentations per run")
    p.add_argument("--stimuli", type=int, default=50)
    p.add_argument("--target", default="auto")
    p.add_argument("--chunk", type=int, default=10_000, help="presentations per Brian2 run (one C++ build each)")
    p.add_argument("--dt", type=float, default=0.1, help="simulation step, ms (1 ms makes a million presentations "
                   "take about half an hour on one core; memory does not depend on it)")
    args = p.parse_args(argv)
    rows = []
    for n in sorted(args.lengths):
        with tempfile.TemporaryDirectory(prefix="spikevae-mem-") as out:
            cmd = [sys.executable, "-m", "spikevae.simulate", "--out", out, "--no-neo", "--quiet",
                   "--n-stimuli", str(args.stimuli), "--repeats", str(max(1, n // args.stimuli)),
                   "--target", args.target, "--chunk", str(args.chunk), "--dt", str(args.dt)]
            wall, mb = peak_rss_mb(cmd)
        rows.append((n, n * 0.1, wall, mb))
        print(f"{n:>10,d} presentations  {n * 0.1:>10,.0f} s simulated  {wall:8.1f} s wall  "
              f"{n * 0.1 / wall:6.0f}x real time  peak RSS {mb:8.1f} MB  ({mb / rows[0][3]:.2f}x the shortest)",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
