"""A short `simulate` run end to end: the torch-free path for a lin|lin checkpoint against the same command with
torch loaded (what every run paid before the rates of a linear encoder were computed without it).

    python benchmarks/simulate_startup.py [--runs 8] [--out out/bench_startup]

Both commands run the demo's simulation (``--n-stimuli 20 --repeats 5 --gap 50 --no-neo``, shipped model, warm
Brian2 cache), alternating, each in a fresh process; the baseline is ``import torch`` followed by the very same
command in the same interpreter. Reports the wall time of each run, the medians and their ratio, each process's
peak RSS, and checks that both wrote the same spikes (SHA-256 of the NWB units and spike times). With
``--drop-caches`` (root on Linux) the page cache is dropped before every run: a cold start.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ARGS = ["--n-stimuli", "20", "--repeats", "5", "--gap", "50", "--no-neo", "--quiet", "--overwrite"]


def _command(kind: str, out: Path) -> list[str]:
    argv = ARGS + ["--out", str(out)]
    if kind == "quick":
        return [sys.executable, "-m", "spikevae.simulate", *argv]
    code = ("import sys, runpy, torch\n"
            f"sys.argv = ['spikevae.simulate', *{argv!r}]\n"
            "runpy.run_module('spikevae.simulate', run_name='__main__')\n")
    return [sys.executable, "-c", code]


def _run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {err[-500:]}")
    return wall, usage.ru_maxrss / 1024


def _spikes_hash(path: Path) -> str:
    from spikevae.io import read_nwb

    st = read_nwb(path)
    h = hashlib.sha256(np.ascontiguousarray(st.unit, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(st.time, dtype=np.float64).tobytes())
    return f"{st.n_spikes} spikes, {h.hexdigest()[:16]}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=8, help="runs of each command (alternating)")
    p.add_argument("--out", default="out/bench_startup", help="scratch folder (replaced)")
    p.add_argument("--drop-caches", action="store_true", help="drop the page cache before each run (root, Linux)")
    args = p.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    _run(_command("quick", out / "warmup"))  # Brian2's compiled code cached, files in the page cache
    times: dict = {"quick": [], "torch": []}
    rss: dict = {"quick": [], "torch": []}
    for i in range(args.runs):
        for kind in ("quick", "torch") if i % 2 == 0 else ("torch", "quick"):
            if args.drop_caches:
                subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], check=True)
            wall, mb = _run(_command(kind, out / kind))
            times[kind].append(wall)
            rss[kind].append(mb)
    same = _spikes_hash(out / "quick" / "spikes.nwb") == _spikes_hash(out / "torch" / "spikes.nwb")
    print(f"`simulate {' '.join(ARGS[:-2])}`, {args.runs} runs each, alternating"
          + (", page cache dropped before each" if args.drop_caches else ", warm"))
    for kind, label in (("torch", "with torch loaded (before)"), ("quick", "torch-free rates (now)")):
        t = np.array(times[kind])
        print(f"  {label:28s} median {np.median(t):.2f} s  [{t.min():.2f}, {t.max():.2f}]  "
              f"peak RSS {np.median(rss[kind]):.0f} MB")
    print(f"  ratio of medians now / before: {np.median(times['quick']) / np.median(times['torch']):.2f}")
    print(f"  same spikes: {same} ({_spikes_hash(out / 'quick' / 'spikes.nwb')})")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
