"""``python -m spikevae.sweep --out sweeps/beta --grid beta=0.5,1,2,4``: parameter sweeps on Dask.

The command is thin: what it runs, and what it computes and writes, is :mod:`spikevae.workflows.sweep`.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import ArgumentError
from ..workflows.sweep import _parse_assignments, run_sweep
from .common import Parser, cli_entry, positive_int, scheduler_address

__all__ = ["main"]


def _parser() -> Parser:
    p = Parser(prog="python -m spikevae.sweep", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="sweep folder (manifest.json, results.csv, runs/)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a swept key and its values, e.g. beta=0.5,1,2 family=poisson,gaussian latents=10,50 "
                        "seed=0,1 lam=0.1,0.5 (repeat for a product)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=V",
                   help="a fixed value for every run, e.g. epochs=100 dataset=digits batch_size=100")
    p.add_argument("--scheduler", type=scheduler_address,
                   help="address of a running Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=positive_int, help="local cluster worker processes (default: one per core)")
    p.add_argument("--serial", action="store_true", help="run the jobs one after another here, without Dask")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


@cli_entry("python -m spikevae.sweep")
def main(argv=None) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(argv)
    grid = _parse_assignments(args.grid, many=True)
    fixed = _parse_assignments(args.set, many=False)
    if overlap := set(grid) & set(fixed):
        raise ArgumentError(f"{', '.join(sorted(overlap))} is both swept (--grid) and fixed (--set)")
    if args.workers is not None and args.workers < 1:
        raise ArgumentError(f"--workers must be >= 1, got {args.workers}")
    t0 = time.perf_counter()
    records = run_sweep(args.out, grid, fixed, args.scheduler, args.workers, args.serial, progress=not args.quiet)
    n_ok = sum(r["status"] == "ok" for r in records)
    n_skip = sum(bool(r.get("skipped")) for r in records)
    failed = [r for r in records if r["status"] == "failed"]
    print(f"{len(records)} runs: {n_ok} finished ({n_skip} already done, skipped), {len(failed)} failed; "
          f"{time.perf_counter() - t0:.1f} s")
    for r in failed:
        print(f"  failed {r['id']}: {r['error']}")
    print(f"wrote {Path(args.out) / 'manifest.json'} and {Path(args.out) / 'results.csv'}")
    return 1 if failed else 0



if __name__ == "__main__":
    raise SystemExit(main())
