"""How rich the natural-patch data are: ``python analysis/patch_statistics.py --out data_stats/``.

Validation patches (the held-out photographs) under two preprocessings side by side: the one stored
in a checkpoint (default: the shipped model's) and the current default (:class:`spikevae.data.Preprocessing`).
For each: principal components for 90 % of the variance, participation ratio, fraction of
near-blank patches (energy < 10), and the power spectrum (radially averaged; on-axis excess at 1/8
and 1/4 cycles/pixel, where JPEG's 8-pixel blocks would add power). Writes ``summary.json``,
``summary.md`` and ``figures/patch_statistics.png``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from spikevae.cli.common import Parser, cli_entry, positive_int, seed


def _parser() -> Parser:
    p = Parser(prog="patch_statistics", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="checkpoint whose preprocessing is compared (default: the shipped model)")
    p.add_output("patch_statistics", "data_stats")
    p.add_argument("--n-val", type=positive_int, default=10_000, help="validation patches per preprocessing")
    p.add_argument("--seed", type=seed, default=0, help="seed of the patch positions")
    return p


@cli_entry("patch_statistics")
def main(argv=None) -> int:
    from spikevae import plots
    from spikevae.data import NATURAL_VAL, Preprocessing, natural_patches, patch_statistics
    from spikevae.errors import ArgumentError
    from spikevae.io import RunFolder, write_json, write_text
    from spikevae.models.checkpoint import default_checkpoint_path, load_checkpoint, validate_checkpoint

    args = _parser().parse_args(argv)
    path = args.checkpoint or default_checkpoint_path()
    ck = load_checkpoint(path)
    validate_checkpoint(ck, path)
    stored = Preprocessing.from_dict(ck["preprocessing"])
    if stored.kind != "natural":
        raise ArgumentError(f"{path} was not trained on natural images (preprocessing kind {stored.kind!r})")
    preps = {f"checkpoint ({Path(path).name})": stored,
             "current default": Preprocessing(patch_size=stored.patch_size)}
    with RunFolder(args.out, "patch_statistics", args.overwrite) as run:
        stats = {name: patch_statistics(natural_patches(1, args.n_val, prep, seed=args.seed).val)
                 for name, prep in preps.items()}
        rows = [("downsample", lambda n: str(preps[n].downsample)),
                ("whitening f0 (cycles/px)", lambda n: f"{preps[n].whiten_f0:g}"),
                ("LCN σ (px)", lambda n: f"{preps[n].lcn_sigma:g}"),
                ("PCs for 90 % of variance", lambda n: str(stats[n]["pcs_for_90"])),
                ("participation ratio", lambda n: f"{stats[n]['participation_ratio']:.1f}"),
                ("near-blank patches (energy < 10)", lambda n: f"{stats[n]['near_blank_fraction']:.3f}"),
                ("on-axis power at 1/8, 1/4 c/px (× off-axis)",
                 lambda n: ", ".join(f"{v:.2f}" for v in stats[n]["axis_excess"].values()))]
        lines = [f"Validation patches ({', '.join(NATURAL_VAL)}; {args.n_val} patches, seed {args.seed})", "",
                 "| | " + " | ".join(preps) + " |", "|---|" + "---|" * len(preps)]
        lines += [f"| {label} | " + " | ".join(fn(n) for n in preps) + " |" for label, fn in rows]
        plots.save_figure(plots.patch_statistics(stats), run.path / "figures" / "patch_statistics.png")
        write_json(run.path / "summary.json", {"preprocessing": {n: dataclasses.asdict(p) for n, p in preps.items()},
                                               "statistics": stats, "n_val": args.n_val, "seed": args.seed})
        write_text(run.path / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {run.path / 'summary.md'}, summary.json and figures/patch_statistics.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
