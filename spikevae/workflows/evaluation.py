"""Evaluating trained VAEs side by side (what ``python -m spikevae.evaluate`` and ``make demo`` print).

Per model, on the validation set the checkpoint was trained with (rebuilt from its recorded data
config and checked against its fingerprint):

- NELBO with sampled latents (MC) and in closed form (exact; linear decoder), MSE with sampled
  latents and with the posterior mean, KL, the fraction of active latents (mean KL > 0.01 nats),
  lifetime and population sparsity (Treves–Rolls), the portion of zero latents
  (:func:`spikevae.models.training.evaluate`);
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

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..analysis.geometry import (
    gabor_likeness,
    knn_accuracy,
    pca_alignment,
    principal_components,
    shattering_dimensionality,
    spatial_spread,
)
from ..cli.common import resolve_device
from ..data import load_dataset, natural_patches
from ..errors import ArgumentError
from ..models.trained import TrainedModel, load_model
from ..models.training import evaluate, fingerprint
from ..models.vae import VAE
from ..seeds import child_seeds

__all__ = ["ModelEvaluation", "decoder_atoms", "default_n_labels", "evaluate_checkpoint", "STAGES", "COLUMNS",
           "markdown_table", "GROUP_KEYS", "group_over_seeds", "SUMMARY_ROWS", "validation_summary", "format_summary"]


class ModelEvaluation(NamedTuple):
    """Every metric of one checkpoint (:func:`evaluate_checkpoint`)."""

    metrics: dict  # flat name → number or string: the table's row (see the module docstring)
    atoms: np.ndarray  # (K, P, P) decoder atoms, decode(e_k) − decode(0)
    atom_order: np.ndarray  # (K,) latents by decreasing validation KL
    kl_per_latent: np.ndarray  # (K,) validation KL per latent, nats


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


# ------------------------------------------------------------------ one model
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


def evaluate_checkpoint(path: str | Path | TrainedModel, *, device="cpu", n_val: int | None = None,
                        knn_draws: int = 20, n_labels: Sequence[int] | None = None, mnist: str | None = None,
                        images: str | None = None, gabor: bool = True, max_atoms: int = 512, seed: int = 0,
                        progress: bool = False, report=None) -> ModelEvaluation:
    """All metrics of one checkpoint (or loaded model) on the validation set it was trained with.

    ``progress``: tqdm bars for the Gabor fits; ``report``, optional: called with the name of each of
    :data:`STAGES` as it finishes (with " (skipped)" appended when it does not apply), for one progress
    display over many models.
    """
    done = report or (lambda stage: None)
    t0 = time.perf_counter()

    def stage(name: str, skipped: bool = False) -> None:
        nonlocal t0
        done(f"{name} (skipped)" if skipped else f"{name} ({time.perf_counter() - t0:.0f} s)")
        t0 = time.perf_counter()

    trained = path if isinstance(path, TrainedModel) else load_model(path, device)
    path, device = trained.path, trained.device
    model, ck = trained.vae, trained.checkpoint
    cfg, tc = model.config, ck["train_config"]
    dataset = tc.get("dataset", "natural")
    data = load_dataset(dataset, n_train=int(tc.get("n_train", 100_000)), n_val=int(tc.get("n_val", 10_000)),
                        patch_size=cfg.patch_size, images=images or tc.get("images"),
                        mnist_dir=mnist or tc.get("mnist"), seed=int(tc.get("seed", 0)),
                        prep=trained.preprocessing if trained.preprocessing.kind == "natural" else None)
    if data.train.shape[-1] != cfg.patch_size:
        raise ArgumentError(f"{path}: the model takes {cfg.patch_size}-px inputs but its data set gives "
                        f"{data.train.shape[-1]} px")
    recorded = ck.get("data", {}).get("val_sha256_16")
    row = {
        "name": Path(path).stem, "checkpoint": str(path), "family": cfg.family,
        "arch": f"{cfg.encoder}|{cfg.decoder}", "K": cfg.n_latents, "beta": tc.get("beta"),
        "method": tc.get("method"), "epochs": ck.get("epoch"), "dataset": dataset,
        "same_validation_set": (recorded == fingerprint(data.val)) if recorded else None,
    }
    xva = data.val if n_val is None else data.val[:n_val]
    m = evaluate(model, torch.as_tensor(xva, device=device).unsqueeze(1),
                 torch.Generator(device=device).manual_seed(child_seeds(seed, 1)[0]))
    kl_diag = np.asarray(m.pop("kl_per_latent"))
    row.update(m)
    row["n_val"] = len(xva)
    stage(STAGES[0])
    if data.train_labels is not None:
        f_tr, f_va = trained.features(data.train), trained.features(data.val)  # once, for both
        fp, yp, ft, yt = _knn_split(f_tr, data.train_labels, f_va, data.val_labels, dataset)
        ns = tuple(n_labels) if n_labels else default_n_labels(dataset, len(fp))
        knn = knn_accuracy(fp, yp, ft, yt, ns, knn_draws, seed=seed)
        for n, mu, sd in zip(knn.n_labels, knn.mean, knn.sd):
            row[f"knn_{n}"], row[f"knn_{n}_sd"] = mu, sd
        row["knn_draws"] = knn.n_draws
        row["shattering"], row["shattering_sd"], row["n_splits"] = shattering_dimensionality(
            f_tr, data.train_labels, f_va, data.val_labels)
    stage(STAGES[1], skipped=data.train_labels is None)
    atoms = decoder_atoms(model)
    order = np.argsort(-kl_diag)
    active = order[kl_diag[order] > 0.01][:max_atoms]
    row["n_active"] = int((kl_diag > 0.01).sum())
    pcs, _ = principal_components(data.train[:20_000])
    row["pca_alignment"] = pca_alignment(atoms[active], pcs)
    row["spatial_spread"] = float(np.median(spatial_spread(atoms[active]))) if len(active) else float("nan")
    row["pca_spatial_spread"] = float(np.median(spatial_spread(pcs[:max(1, len(active))])))
    stage(STAGES[2])
    if gabor:
        row["gabor_fraction"], _ = gabor_likeness(atoms[active], progress=progress)
        stage(STAGES[3])
        n_pc = max(1, len(active))
        row["pca_gabor_fraction"], _ = gabor_likeness(pcs[:n_pc], progress=progress)
        stage(STAGES[4])
    else:
        stage(STAGES[3], skipped=True)
        stage(STAGES[4], skipped=True)
    return ModelEvaluation(row, atoms, order, kl_diag)


#: the stages of :func:`evaluate_checkpoint`, in order
STAGES = ("validation metrics", "k-NN accuracy and shattering", "dictionary geometry", "Gabor fits of the atoms",
          "Gabor fits of the PCs")


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


def _figures(rows: list[dict], evals: list[ModelEvaluation] | None, out: Path, suffix: str = "") -> list[Path]:
    from .. import plots

    figs = {}
    for r, e in zip(rows, evals or []):
        k = len(e.atom_order)
        figs[f"basis_{r['name']}.png"] = plots.basis_grid(
            e.atoms, e.atom_order, n_show=min(256, k), ncols=min(16, k), labels=e.kl_per_latent,
            title=f"{r['name']}: {r['family']} {r['arch']}, decoder atoms by KL (nats)")
    if any(k.startswith("knn_") for r in rows for k in r):
        figs[f"knn{suffix}.png"] = plots.knn_curves(rows, over_seeds=bool(suffix))
    figs[f"sparsity{suffix}.png"] = plots.metric_bars(rows, {"active_fraction": "fraction of active latents",
                                                             "lifetime_sparsity": "lifetime sparsity",
                                                             "gabor_fraction": "Gabor-like atoms (R² ≥ 0.5)"})
    for name, fig in figs.items():
        plots.save_figure(fig, out / name)
    return [out / name for name in figs]


SUMMARY_ROWS = (  # (key, label, format, Poisson only)
    ("energy", "patch energy (what predicting 0 costs)", "8.1f", False),
    ("mse", "MSE, sampled spike counts", "8.1f", False),
    ("mse_map", "MSE, posterior mean rates", "8.1f", False),
    ("kl", "KL (nats per patch)", "8.1f", False),
    ("nelbo", "NELBO", "8.1f", False),
    ("active_fraction", "active latents (KL > 0.01)", "8.3f", True),
    ("lifetime_sparsity", "lifetime sparsity", "8.3f", True),
    ("portion_zeros", "portion of zero counts", "8.3f", True),
    ("mean_rate", "mean expected count per unit per window", "8.3f", True),
)


def validation_summary(trained, n_val: int = 10_000, seed: int = 0, device="cpu") -> dict:
    """The shipped model's validation numbers, as ``make demo`` prints them and the README quotes them.

    ``n_val`` held-out patches of the validation photographs (``natural_patches(seed=seed + 1)``), encoded
    with the model's own preprocessing; one draw of exact Poisson counts per patch (torch generator seeded
    with ``seed``). MSE is the full squared error per patch, ‖x − x̂‖² summed over the 256 pixels, and the
    patch energy ‖x‖² is the MSE of predicting 0. Returns the :func:`spikevae.models.training.evaluate` metrics plus
    ``energy``, ``n_patches`` and ``source``.
    """
    device = resolve_device(device)
    data = natural_patches(n_train=1, n_val=n_val, prep=trained.preprocessing, seed=seed + 1)
    x = torch.as_tensor(data.val, device=device).unsqueeze(1)
    m = evaluate(trained.vae.to(device), x, torch.Generator(device=device).manual_seed(seed))
    m["energy"] = float(x.flatten(1).square().sum(1).mean())
    m["n_patches"] = len(x)
    m["source"] = data.source
    return m


def format_summary(m: dict, family: str = "poisson") -> str:
    """The summary's lines, one ``label: value`` per metric (Poisson-only rows only for the Poisson family)."""
    return "\n".join(f"  {label + ':':<40}{m[key]:{fmt}}" for key, label, fmt, poisson in SUMMARY_ROWS
                     if key in m and (family == "poisson" or not poisson))

