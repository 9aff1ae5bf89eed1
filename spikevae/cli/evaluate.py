"""``python -m spikevae.evaluate --checkpoint A.pt [B.pt ...]``: trained VAEs side by side.

The command is thin: what it runs, and what it computes and writes, is :mod:`spikevae.workflows.evaluation`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..io.files import write_csv, write_json, write_text
from ..io.run_folder import RunFolder
from ..models.checkpoint import load_checkpoint, validate_checkpoint
from ..workflows.evaluation import STAGES, _figures, evaluate_checkpoint, group_over_seeds, markdown_table
from .common import Parser, cli_entry, positive_int, resolve_device, seed

__all__ = ["main"]


def _parser() -> Parser:
    p = Parser(prog="python -m spikevae.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", nargs="+", required=True, metavar="CKPT", help="one or more VAE checkpoints")
    p.add_output("evaluate", "out/evaluate")
    p.add_argument("--n-val", type=positive_int, help="evaluate on the first N validation inputs only")
    p.add_argument("--knn-draws", type=positive_int, default=20, help="random labelled subsets per N (reference: 100)")
    p.add_argument("--n-labels", type=positive_int, nargs="+", help="numbers of labels for KNN (default by data set)")
    p.add_argument("--mnist", help="folder of MNIST IDX files (overrides the one recorded in a checkpoint)")
    p.add_argument("--images", help="image folder (overrides the one recorded in a checkpoint)")
    p.add_argument("--no-gabor", action="store_true", help="skip the Gabor fits of the atoms")
    p.add_argument("--max-atoms", type=positive_int, default=512, help="fit at most this many active atoms (by KL)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the Monte Carlo estimates")
    p.add_argument("--device", default="auto", help="model device: auto | cpu | cuda")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


@cli_entry("python -m spikevae.evaluate")
def main(argv=None) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(argv)
    device = resolve_device(args.device)
    for ck in args.checkpoint:  # every file checked before any work starts
        validate_checkpoint(load_checkpoint(ck), ck)
    stems = [Path(c).stem for c in args.checkpoint]
    if len(set(stems)) < len(stems):  # e.g. sweep folders runs/<id>/model.pt: name models by their folder
        stems = [Path(c).parent.name or s for c, s in zip(args.checkpoint, stems)]
    names = [s if stems.count(s) == 1 else f"{s}_{i}" for i, s in enumerate(stems)]
    with RunFolder(args.out, "evaluate", args.overwrite) as run:
        out = run.path
        evals = []
        # one display: a bar over every (model, stage), and a line per finished stage
        with tqdm(total=len(names) * len(STAGES), disable=args.quiet, desc="evaluate", unit="stage") as bar:
            for name, ck in zip(names, args.checkpoint):
                def report(stage, name=name):
                    bar.write(f"{name}: {stage}", file=sys.stderr)
                    bar.update(1)

                ev = evaluate_checkpoint(ck, device=device, n_val=args.n_val, knn_draws=args.knn_draws,
                                         n_labels=args.n_labels, mnist=args.mnist, images=args.images,
                                         gabor=not args.no_gabor, max_atoms=args.max_atoms, seed=args.seed,
                                         progress=False, report=None if args.quiet else report)
                ev.metrics["name"] = name
                evals.append(ev)
        public = [e.metrics for e in evals]
        figs = _figures(public, evals, out)
        keys = list(dict.fromkeys(k for r in public for k in r))
        write_csv(out / "table.csv", keys, [[r.get(k, "") for k in keys] for r in public])
        md = markdown_table(public)
        grouped = group_over_seeds(public)
        if len(grouped) < len(public):  # some models differ only by seed: add the mean over seeds
            gkeys = list(dict.fromkeys(k for r in grouped for k in r))
            write_csv(out / "summary.csv", gkeys, [[r.get(k, "") for k in gkeys] for r in grouped])
            md += "\n## Mean over seeds\n\n" + markdown_table(grouped)
            figs += _figures(grouped, None, out, suffix="_over_seeds")
        write_text(out / "table.md", md)
        write_json(out / "metrics.json", public)
        print(md, end="")
        print(f"wrote {out / 'table.csv'}, {out / 'table.md'}, {out / 'metrics.json'} and "
              f"{len(figs)} figures in {out}")
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
