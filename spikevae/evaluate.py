"""Evaluate trained VAEs side by side: ``python -m spikevae.evaluate --checkpoint A.pt [B.pt ...]``.

Per model, on the validation set the checkpoint was trained with (rebuilt from its recorded data
config and checked against its fingerprint):

- NELBO with sampled latents (MC) and in closed form (exact; linear decoder), MSE with sampled
  latents and with the posterior mean, KL, the fraction of active latents (mean KL > 0.01 nats),
  lifetime and population sparsity (Treves–Rolls), the portion of zero latents
  (:func:`spikevae.train.evaluate`);
- for models trained on labelled digits (scikit-learn digits or MNIST): KNN sample efficiency
  (k = 5, Euclidean, several numbers of labels N, repeated random draws) and the shattering
  dimensionality (logistic regression over all 5-vs-5 splits of the ten classes), on the
  reference's features (P: log δr, G/L: location, C: logits) — anchor §3.1;
- how Gabor-like the decoder atoms are (fraction of active atoms whose 2-D Gabor fit has R² ≥ 0.5)
  and how PCA-like: the median spatial spread of the active atoms' pixel energy (participation
  ratio; principal components of image patches are global, Gabors localized) and the mean largest
  |cosine| with a single principal component, with the same numbers for the principal components.

Writes ``table.csv``, ``table.md``, ``metrics.json`` and figures (``basis_<name>.png``,
``knn.png``, ``sparsity.png``) into ``--out``.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ._cli import Parser, UserError, cli_entry, resolve_device
from .checkpoint import CheckpointError, load_checkpoint, load_model, write_csv, write_json, write_text
from .data import DataError, load_dataset
from .train import _child_seeds, _fingerprint, evaluate
from .vae import VAE

__all__ = ["KNNResult", "knn_accuracy", "shattering_dimensionality", "decoder_atoms", "principal_components",
           "gabor_likeness", "spatial_spread", "pca_alignment", "evaluate_checkpoint", "main"]

R2_GOOD = 0.5  # a Gabor fit this good or better counts as Gabor-like (as in simulations/rf_mapping.py)


# ------------------------------------------------------------------ decoding
class KNNResult(NamedTuple):
    """KNN accuracy per number of labelled samples: mean and s.d. over random draws."""

    n_labels: tuple
    mean: tuple
    sd: tuple
    n_draws: int


def knn_accuracy(pool_x: np.ndarray, pool_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 n_labels: Sequence[int], n_draws: int = 20, k: int = 5, seed: int = 0) -> KNNResult:
    """Accuracy of a k-nearest-neighbour classifier trained on ``N`` random labelled pool samples.

    For each ``N`` in ``n_labels``, ``n_draws`` subsets of the pool are drawn without replacement;
    Euclidean distance, uniform weights (the reference's ``knn_analysis``).
    """
    from sklearn.neighbors import KNeighborsClassifier

    pool_x, test_x = np.asarray(pool_x, np.float64), np.asarray(test_x, np.float64)
    if len(pool_x) != len(pool_y) or len(test_x) != len(test_y):
        raise ValueError("features and labels differ in length")
    rng = np.random.default_rng(seed)
    means, sds = [], []
    for n in n_labels:
        if not k <= n <= len(pool_x):
            raise ValueError(f"N = {n} labels: needs {k} <= N <= pool size {len(pool_x)}")
        acc = []
        for _ in range(n_draws):
            idx = rng.choice(len(pool_x), size=n, replace=False)
            clf = KNeighborsClassifier(n_neighbors=k).fit(pool_x[idx], pool_y[idx])
            acc.append(clf.score(test_x, test_y))
        means.append(float(np.mean(acc)))
        sds.append(float(np.std(acc, ddof=1)) if n_draws > 1 else 0.0)
    return KNNResult(tuple(int(n) for n in n_labels), tuple(means), tuple(sds), int(n_draws))


def shattering_dimensionality(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                              test_y: np.ndarray) -> tuple[float, float, int]:
    """Mean test accuracy of logistic regression over all balanced dichotomies of the classes.

    With 10 classes: the 126 distinct 5-vs-5 splits (the reference counts each of them twice, as
    a split and its complement, which give the same accuracy). Features are standardised with the
    training statistics so that lbfgs converges. Returns (mean, s.d., number of splits).
    """
    from sklearn.linear_model import LogisticRegression

    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    classes = np.unique(train_y)
    if len(classes) < 2 or len(classes) % 2:
        raise ValueError(f"shattering needs an even number (>= 2) of classes, got {len(classes)}")
    mu, sd = train_x.mean(0), train_x.std(0)
    sd[sd == 0] = 1.0
    a, b = (train_x - mu) / sd, (test_x - mu) / sd
    half = len(classes) // 2
    acc = []
    for pos in itertools.combinations(classes[1:], half - 1):  # the first class is always on side 1
        side = np.isin(classes, (classes[0],) + pos)
        ytr, yte = side[np.searchsorted(classes, train_y)], side[np.searchsorted(classes, test_y)]
        clf = LogisticRegression(max_iter=2000).fit(a, ytr)
        acc.append(clf.score(b, yte))
    return float(np.mean(acc)), float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0, len(acc)


# ------------------------------------------------------------------ the basis
@torch.no_grad()
def decoder_atoms(model: VAE) -> np.ndarray:
    """(K, P, P) images: what each latent adds to the reconstruction, ``decode(e_k) − decode(0)``.

    For a linear decoder these are its weight columns exactly.
    """
    model = model.eval()
    p = model.config.patch_size
    if model.config.decoder == "lin":
        return model.dictionary.detach().cpu().numpy().T.reshape(-1, p, p).astype(np.float64)
    dev = next(model.parameters()).device
    k = model.config.n_latents
    eye = torch.eye(k, device=dev)
    return (model.decode(eye) - model.decode(torch.zeros(1, k, device=dev))).cpu().numpy().reshape(k, p, p)


def principal_components(x: np.ndarray, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Principal components (n, P, P) of input images (N, P, P) and their variances, largest first."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    n = vt.shape[0] if n is None else min(n, vt.shape[0])
    side = int(round(math.sqrt(vt.shape[1])))
    return vt[:n].reshape(n, side, side), s[:n] ** 2 / (len(x) - 1)


def gabor_likeness(atoms: np.ndarray, r2_min: float = R2_GOOD, progress: bool = False) -> tuple[float, np.ndarray]:
    """Fraction of atoms whose 2-D Gabor fit reaches ``R² >= r2_min``, and every R²."""
    from .analysis.receptive_fields import fit_gabor

    r2 = np.array([fit_gabor(a).r2 for a in tqdm(atoms, disable=not progress, desc="gabor fits", unit="atom",
                                                 leave=False)])
    return float(np.mean(r2 >= r2_min)) if len(r2) else float("nan"), r2


def spatial_spread(images: np.ndarray) -> np.ndarray:
    """Participation ratio of each image's pixel energy, ``(Σe)² / (D Σe²)`` with ``e = a²``: 1/D for a
    single pixel, 1 for uniform energy; global patterns (principal components, plane waves) score
    high, localized Gabor-like atoms low."""
    e = np.square(np.asarray(images, np.float64).reshape(len(images), -1))
    s2 = np.square(e).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s2 > 0, e.sum(1) ** 2 / (e.shape[1] * s2), np.nan)


def pca_alignment(atoms: np.ndarray, components: np.ndarray) -> float:
    """Mean over atoms of max_j |cos(atom, PC_j)|: 1 for atoms that are principal components, about
    ``sqrt(2 ln D / D)`` for random directions in D dimensions."""
    if len(atoms) == 0:
        return float("nan")
    a = np.asarray(atoms, np.float64).reshape(len(atoms), -1)
    c = np.asarray(components, np.float64).reshape(len(components), -1)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-300)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    return float(np.abs(a @ c.T).max(1).mean())


# ------------------------------------------------------------------ one model
@torch.no_grad()
def _features(model: VAE, x: np.ndarray, device, batch: int = 2000) -> np.ndarray:
    """The reference's decoding features: P log δr, G/L location, C logits (``Posterior.features``)."""
    out = []
    for i in range(0, len(x), batch):
        xb = torch.as_tensor(x[i:i + batch], device=device).unsqueeze(1)
        out.append(model.posterior(xb).features.cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def _knn_split(f_train, y_train, f_val, y_val, dataset: str):
    """(pool features, pool labels, test features, test labels) by the dataset's KNN protocol."""
    if dataset == "mnist":  # the reference: validation only, first half labelled pool, second half test
        h = len(f_val) // 2
        return f_val[:h], y_val[:h], f_val[h:], y_val[h:]
    return f_train, y_train, f_val, y_val  # digits: the training split is the pool


def default_n_labels(dataset: str, pool_size: int) -> tuple[int, ...]:
    """Numbers of labels N, in steps of 5× (claim: P-VAE at N matches the others at 5N)."""
    base = (200, 1000, 5000) if dataset == "mnist" else (40, 200, 1000)
    return tuple(n for n in base if n <= pool_size)


def evaluate_checkpoint(path: str | Path, *, device="cpu", n_val: int | None = None, knn_draws: int = 20,
                        n_labels: Sequence[int] | None = None, mnist: str | None = None, images: str | None = None,
                        gabor: bool = True, max_atoms: int = 512, seed: int = 0, progress: bool = False) -> dict:
    """All metrics of one checkpoint (a flat dict of numbers and a few strings; see the module docstring)."""
    model, ck = load_model(path, device)
    cfg, tc = model.config, ck.get("train_config", {})
    dataset = tc.get("dataset", "natural")
    data = load_dataset(dataset, n_train=int(tc.get("n_train", 100_000)), n_val=int(tc.get("n_val", 10_000)),
                        patch_size=cfg.patch_size, images=images or tc.get("images"),
                        mnist_dir=mnist or tc.get("mnist"), seed=int(tc.get("seed", 0)))
    if data.train.shape[-1] != cfg.patch_size:
        raise UserError(f"{path}: the model takes {cfg.patch_size}-px inputs but its data set gives "
                        f"{data.train.shape[-1]} px")
    recorded = ck.get("data", {}).get("val_sha256_16")
    row = {
        "name": Path(path).stem, "checkpoint": str(path), "family": cfg.family,
        "arch": f"{cfg.encoder}|{cfg.decoder}", "K": cfg.n_latents, "beta": tc.get("beta"),
        "method": tc.get("method"), "epochs": ck.get("epoch"), "dataset": dataset,
        "same_validation_set": (recorded == _fingerprint(data.val)) if recorded else None,
    }
    xva = data.val if n_val is None else data.val[:n_val]
    m = evaluate(model, torch.as_tensor(xva, device=device).unsqueeze(1),
                 torch.Generator(device=device).manual_seed(_child_seeds(seed, 1)[0]))
    kl_diag = np.asarray(m.pop("kl_per_latent"))
    row.update(m)
    row["n_val"] = len(xva)
    if data.train_labels is not None:
        f_tr, f_va = _features(model, data.train, device), _features(model, data.val, device)  # once, for both
        fp, yp, ft, yt = _knn_split(f_tr, data.train_labels, f_va, data.val_labels, dataset)
        ns = tuple(n_labels) if n_labels else default_n_labels(dataset, len(fp))
        knn = knn_accuracy(fp, yp, ft, yt, ns, knn_draws, seed=seed)
        for n, mu, sd in zip(knn.n_labels, knn.mean, knn.sd):
            row[f"knn_{n}"], row[f"knn_{n}_sd"] = mu, sd
        row["knn_draws"] = knn.n_draws
        row["shattering"], row["shattering_sd"], row["n_splits"] = shattering_dimensionality(
            f_tr, data.train_labels, f_va, data.val_labels)
    atoms = decoder_atoms(model)
    order = np.argsort(-kl_diag)
    active = order[kl_diag[order] > 0.01][:max_atoms]
    row["n_active"] = int((kl_diag > 0.01).sum())
    pcs, _ = principal_components(data.train[:20_000])
    row["pca_alignment"] = pca_alignment(atoms[active], pcs)
    row["spatial_spread"] = float(np.median(spatial_spread(atoms[active]))) if len(active) else float("nan")
    row["pca_spatial_spread"] = float(np.median(spatial_spread(pcs[:max(1, len(active))])))
    if gabor:
        row["gabor_fraction"], _ = gabor_likeness(atoms[active], progress=progress)
        n_pc = max(1, len(active))
        row["pca_gabor_fraction"], _ = gabor_likeness(pcs[:n_pc], progress=progress)
    row["_atoms"], row["_order"], row["_kl"] = atoms, order, kl_diag
    return row


# ------------------------------------------------------------------ report
COLUMNS = [("family", "family", "s"), ("arch", "enc/dec", "s"), ("K", "K", "d"), ("beta", "β", "g"),
           ("dataset", "data", "s"), ("nelbo", "NELBO MC", ".1f"), ("nelbo_exact", "NELBO exact", ".1f"),
           ("mse", "MSE", ".1f"), ("mse_map", "MSE mean", ".1f"), ("kl", "KL", ".1f"),
           ("active_fraction", "active", ".3f"), ("lifetime_sparsity", "lifetime S", ".3f"),
           ("lifetime_sparsity_rates", "lifetime S of λ", ".3f"), ("mean_rate", "mean λ", ".3g"),
           ("population_sparsity", "population S", ".3f"), ("portion_zeros", "zeros", ".3f"),
           ("shattering", "shattering", ".3f"), ("gabor_fraction", "Gabor-like", ".3f"),
           ("pca_gabor_fraction", "PCs Gabor-like", ".3f"), ("spatial_spread", "spread", ".3f"),
           ("pca_spatial_spread", "PCs spread", ".3f"), ("pca_alignment", "max cos to a PC", ".3f")]


def _fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec) if spec != "s" else str(v).replace("|", "\\|")  # '|' would split a Markdown cell


def markdown_table(rows: list[dict]) -> str:
    """The report's table; KNN columns appear for the numbers of labels that were evaluated."""
    knn = sorted({int(k[4:]) for r in rows for k in r if k.startswith("knn_") and k[4:].isdigit()})
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    head = ["model"] + [c[1] for c in cols] + [f"KNN N={n}" for n in knn]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"]] + [_fmt(r.get(c[0]), c[2]) for c in cols]
        cells += [f"{r[f'knn_{n}']:.3f} ± {r[f'knn_{n}_sd']:.3f}" if f"knn_{n}" in r else "–" for n in knn]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


GROUP_KEYS = ("family", "arch", "K", "beta", "method", "dataset", "epochs")


def group_over_seeds(rows: list[dict]) -> list[dict]:
    """Rows that differ only in their seed, merged: numeric columns become the mean over seeds, with
    the s.d. over seeds in ``<column>_sd`` (for KNN, the s.d. of the per-seed means); ``n_seeds``."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in GROUP_KEYS), []).append(r)
    out = []
    for key, rs in groups.items():
        g = dict(zip(GROUP_KEYS, key))
        g["name"] = f"{g['family']} K={g['K']} β={g['beta']:g}" if g.get("beta") is not None else \
            f"{g['family']} K={g['K']}"
        g["n_seeds"] = len(rs)
        num = [k for k in rs[0] if not k.startswith("_") and not k.endswith("_sd") and k not in GROUP_KEYS
               and isinstance(rs[0][k], (int, float)) and not isinstance(rs[0][k], bool)]
        for k in num:
            v = np.array([r.get(k, np.nan) for r in rs], dtype=float)
            g[k] = float(np.mean(v))
            g[f"{k}_sd"] = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
        out.append(g)
    return out


def _figures(rows: list[dict], out: Path, basis: bool = True, suffix: str = "") -> list[Path]:
    from . import plots

    plt = plots._mpl()
    written = []
    for r in rows if basis else []:
        k = len(r["_order"])
        fig = plots.basis_grid(r["_atoms"], r["_order"], n_show=min(256, k), ncols=min(16, k), labels=r["_kl"],
                               title=f"{r['name']}: {r['family']} {r['arch']}, decoder atoms by KL (nats)")
        written.append(out / f"basis_{r['name']}.png")
        plots.save_figure(fig, written[-1])
    labelled = [r for r in rows if any(k.startswith("knn_") for k in r)]
    if labelled:
        ks = sorted({r["K"] for r in labelled})
        fig, axes = plt.subplots(1, len(ks), figsize=(5.0 * len(ks), 4.0), squeeze=False, sharey=True)
        for ax, k in zip(axes[0], ks):
            sub = [r for r in labelled if r["K"] == k]
            for j, r in enumerate(sub):
                ns = np.array(sorted(int(c[4:]) for c in r if c.startswith("knn_") and c[4:].isdigit()))
                shift = 1.0 + 0.03 * (j - (len(sub) - 1) / 2)  # side by side on the log axis
                ax.errorbar(ns * shift, [r[f"knn_{n}"] for n in ns], yerr=[r[f"knn_{n}_sd"] for n in ns],
                            marker="o", ms=4, capsize=3, label=r["name"] if suffix else f"{r['name']} ({r['family']})")
            ax.set_xscale("log")
            ax.set_xlabel("labelled samples N")
            ax.set_title(f"K = {k}" + (" (mean ± s.d. over seeds)" if suffix else ""), fontsize=9)
            ax.legend(fontsize=6)
        axes[0, 0].set_ylabel("KNN accuracy (k = 5)")
        fig.suptitle("sample efficiency", fontsize=10)
        fig.tight_layout()
        written.append(out / f"knn{suffix}.png")
        plots.save_figure(fig, written[-1])
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    names = [r["name"] for r in rows]
    for ax, key, label in zip(axes, ("active_fraction", "lifetime_sparsity", "gabor_fraction"),
                              ("fraction of active latents", "lifetime sparsity", "Gabor-like atoms (R² ≥ 0.5)")):
        ax.bar(range(len(rows)), [r.get(key, np.nan) for r in rows], color="0.4")
        ax.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    written.append(out / f"sparsity{suffix}.png")
    plots.save_figure(fig, written[-1])
    return written


def _parser() -> Parser:
    p = Parser(prog="python -m spikevae.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", nargs="+", required=True, metavar="CKPT", help="one or more VAE checkpoints")
    p.add_argument("--out", default="out/evaluate", help="folder for the table and figures (default out/evaluate)")
    p.add_argument("--n-val", type=int, help="evaluate on the first N validation inputs only")
    p.add_argument("--knn-draws", type=int, default=20, help="random labelled subsets per N (reference: 100)")
    p.add_argument("--n-labels", type=int, nargs="+", help="numbers of labels for KNN (default by data set)")
    p.add_argument("--mnist", help="folder of MNIST IDX files (overrides the one recorded in a checkpoint)")
    p.add_argument("--images", help="image folder (overrides the one recorded in a checkpoint)")
    p.add_argument("--no-gabor", action="store_true", help="skip the Gabor fits of the atoms")
    p.add_argument("--max-atoms", type=int, default=512, help="fit at most this many active atoms (by KL)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    return p


@cli_entry("python -m spikevae.evaluate")
def main(argv=None) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(argv)
    device = resolve_device(args.device)
    for name, v in (("--knn-draws", args.knn_draws), ("--max-atoms", args.max_atoms), ("--n-val", args.n_val)):
        if v is not None and v < 1:
            raise UserError(f"{name} must be >= 1, got {v}")
    for ck in args.checkpoint:  # every file checked before any work starts
        load_checkpoint(ck)
    stems = [Path(c).stem for c in args.checkpoint]
    if len(set(stems)) < len(stems):  # e.g. sweep folders runs/<id>/model.pt: name models by their folder
        stems = [Path(c).parent.name or s for c, s in zip(args.checkpoint, stems)]
    names = [s if stems.count(s) == 1 else f"{s}_{i}" for i, s in enumerate(stems)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, ck in zip(names, tqdm(args.checkpoint, disable=args.quiet, desc="models", unit="model")):
        try:
            row = evaluate_checkpoint(ck, device=device, n_val=args.n_val, knn_draws=args.knn_draws,
                                      n_labels=args.n_labels, mnist=args.mnist, images=args.images,
                                      gabor=not args.no_gabor, max_atoms=args.max_atoms, seed=args.seed,
                                      progress=not args.quiet)
        except (UserError, CheckpointError, DataError):
            raise
        except ValueError as exc:  # a model/data mismatch found by sklearn or the fitters
            raise UserError(f"{ck}: {exc}") from None
        row["name"] = name
        rows.append(row)
    figs = _figures(rows, out)
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    keys = list(dict.fromkeys(k for r in public for k in r))
    write_csv(out / "table.csv", keys, [[r.get(k, "") for k in keys] for r in public])
    md = markdown_table(public)
    grouped = group_over_seeds(public)
    if len(grouped) < len(public):  # some models differ only by seed: add the mean over seeds
        gkeys = list(dict.fromkeys(k for r in grouped for k in r))
        write_csv(out / "summary.csv", gkeys, [[r.get(k, "") for k in gkeys] for r in grouped])
        md += "\n## Mean over seeds\n\n" + markdown_table(grouped)
        figs += _figures(grouped, out, basis=False, suffix="_over_seeds")
    write_text(out / "table.md", md)
    write_json(out / "metrics.json", public)
    print(md, end="")
    print(f"wrote {out / 'table.csv'}, {out / 'table.md'}, {out / 'metrics.json'} and "
          f"{len(figs)} figures in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
