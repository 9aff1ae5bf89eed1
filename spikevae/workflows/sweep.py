"""Parameter sweeps on Dask (what ``python -m spikevae.sweep`` runs).

Every point of the grid (the product of the ``--grid KEY=V1,V2,...`` lists, on top of the fixed
``--set KEY=V`` values) is one independent run, submitted as one task to a Dask cluster: a
``LocalCluster`` with one single-threaded worker process per core by default, or an existing
scheduler with ``--scheduler tcp://HOST:PORT``. ``--serial`` runs the same jobs one after
another in this process instead (the baseline of ``benchmarks/sweep.py``).

Runs are VAE trainings (``family`` poisson | gaussian | laplace | categorical | gaussian-relu) or
LCA runs (``family=lca``: learn a dictionary with threshold ``lam`` and code validation patches
with it; with ``checkpoint=P.pt`` code them on that P-VAE's decoder atoms instead).

Layout of ``--out``::

    manifest.json            sweep settings and one record per run: id, config, status
                             (pending | ok | failed), metrics, error, seconds
    results.csv              one row per run: config and metrics
    runs/<id>/config.json    what the run was asked to do
    runs/<id>/model.pt       VAE checkpoint (or dictionary.npz for LCA)
    runs/<id>/result.json    written last, atomically: the run finished

A run counts as finished only when its ``result.json`` exists and holds the same config; a rerun
of the same command skips finished runs and retries failed or interrupted ones. A run that raises
is recorded with its error and does not stop the others.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import time
import traceback
from pathlib import Path

from ..errors import ArgumentError

__all__ = ["FAMILIES_ALL", "defaults", "expand_grid", "run_id", "check_config", "run_job", "run_sweep"]

FAMILIES_ALL = ("poisson", "gaussian", "laplace", "categorical", "gaussian-relu", "lca")


# keys a run understands besides the TrainConfig fields; value types for parsing
_EXTRA = {"family": str, "latents": int, "arch": str, "patch_size": int, "lam": float, "checkpoint": str,
          "updates": int, "n_code": int, "threads": int}


_ALIASES = {"model": "family", "K": "latents", "k": "latents", "lambda": "lam", "n_latents": "latents"}


def defaults() -> dict:
    """A sweep run's defaults: exactly a training run's (:func:`spikevae.models.training.make_configs`'s and TrainConfig's),
    so a sweep point and ``python -m spikevae.train`` with the same values are the same run."""
    import inspect

    from ..models.training import TrainConfig, make_configs

    sig = inspect.signature(make_configs).parameters
    tc = TrainConfig()
    return {"family": sig["family"].default, "latents": sig["latents"].default, "arch": sig["arch"].default,
            "dataset": tc.dataset, "seed": tc.seed, "epochs": tc.epochs, "method": tc.method}


def _field_types() -> dict:
    from ..models.training import TrainConfig

    types = {f.name: type(f.default) if f.default is not None else str for f in dataclasses.fields(TrainConfig)}
    types.update(_EXTRA)
    return types


def _parse_value(key: str, text: str, types: dict):
    kind = types[key]
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        v = kind(text)
    except ValueError:
        raise ArgumentError(f"{key}={text!r}: expected a {kind.__name__}") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise ArgumentError(f"{key}={text!r}: must be finite")
    return v


def _parse_assignments(items: list[str], many: bool) -> dict:
    types = _field_types()
    out: dict = {}
    for item in items or []:
        key, eq, vals = item.partition("=")
        key = _ALIASES.get(key.strip(), key.strip())
        if not eq or not vals:
            raise ArgumentError(f"expected KEY=VALUE{',VALUE...' if many else ''}, got {item!r}")
        if key not in types:
            raise ArgumentError(f"unknown sweep key {key!r}; known: {', '.join(sorted(types))}")
        parsed = [_parse_value(key, v.strip(), types) for v in (vals.split(",") if many else [vals])]
        if many and len(set(parsed)) != len(parsed):
            raise ArgumentError(f"{key}: repeated values in {vals!r}")
        out[key] = parsed if many else parsed[0]
    return out


def expand_grid(grid: dict, fixed: dict | None = None) -> list[dict]:
    """Every combination of the grid's value lists, over the defaults and the fixed values."""
    base = {**defaults(), **(fixed or {})}
    keys = list(grid)
    return [{**base, **dict(zip(keys, combo))} for combo in itertools.product(*(grid[k] for k in keys))]


def run_id(config: dict, grid_keys) -> str:
    """A readable, stable folder name: the grid values, then a hash of the whole config."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    parts = [f"{k}={config[k]}" for k in grid_keys]
    name = "_".join(parts).replace("/", "-").replace("|", "-").replace(" ", "")
    return f"{name[:80]}_{digest}" if name else digest


def check_config(config: dict) -> None:
    """Validate a run's config before anything is submitted (``ArgumentError`` naming the problem)."""
    fam = config["family"]
    if fam not in FAMILIES_ALL:
        raise ArgumentError(f"family must be one of {', '.join(FAMILIES_ALL)}, got {fam!r}")
    try:
        if fam == "lca":
            from ..lca import LCAConfig

            LCAConfig(lam=config.get("lam", 0.5)).validate()
            if config["latents"] < 1:
                raise ArgumentError(f"latents must be >= 1, got {config['latents']}")
            return
        _configs(config)
    except ValueError as exc:
        raise ArgumentError(f"run {config}: {exc}") from None


def _configs(config: dict):
    """(model config, training config) of a VAE run, through the one factory."""
    import inspect

    from ..models.training import TrainConfig, make_configs

    tfields = {f.name for f in dataclasses.fields(TrainConfig)}
    patch = config.get("patch_size", inspect.signature(make_configs).parameters["patch_size"].default)
    return make_configs(config["family"], config["latents"], config["arch"], patch,
                        **{k: v for k, v in config.items() if k in tfields})


# ------------------------------------------------------------------ one job (runs on a worker)
def run_job(config: dict, folder: str) -> dict:
    """Run one sweep point in ``folder``; never raises: returns ``{"status": "ok"|"failed", ...}``."""
    import torch

    from ..io.files import write_json

    t0 = time.perf_counter()
    folder_p = Path(folder)
    threads = torch.get_num_threads()
    try:
        folder_p.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(int(config.get("threads", 1)))
        write_json(folder_p / "config.json", config)
        metrics = _run_lca(config, folder_p) if config["family"] == "lca" else _run_vae(config, folder_p)
        record = {"status": "ok", "config": config, "metrics": metrics, "seconds": time.perf_counter() - t0}
        write_json(folder_p / "result.json", record)  # last: marks the run finished
        return record
    except Exception as exc:  # noqa: BLE001 - a failed run is data, not a crash of the sweep
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return {"status": "failed", "config": config, "error": f"{type(exc).__name__}: {exc}",
                "traceback": "".join(tb[-6:]), "seconds": time.perf_counter() - t0}
    finally:
        torch.set_num_threads(threads)


def _run_vae(config: dict, folder: Path) -> dict:
    from ..data import load_dataset
    from ..models.training import fit

    mc, tc = _configs(config)
    data = load_dataset(tc.dataset, n_train=tc.n_train, n_val=tc.n_val, patch_size=mc.patch_size,
                        images=tc.images, mnist_dir=tc.mnist, seed=tc.seed)
    res = fit(mc, tc, data, folder / "model.pt", "cpu", progress=False)
    return {k: v for k, v in res.metrics.items() if not k.startswith("kl_per_latent")}


def _run_lca(config: dict, folder: Path) -> dict:
    import numpy as np

    from ..analysis.sparsity import lifetime_sparsity
    from ..data import Preprocessing, natural_patches
    from ..io.dictionary import save_dictionary
    from ..lca import LCAConfig, lca_fixed_point, learn_dictionary, normalise_atoms
    from ..models.trained import load_model

    lam, seed = float(config.get("lam", 0.5)), int(config["seed"])
    if config.get("checkpoint"):
        model = load_model(config["checkpoint"])
        prep, phi_raw = model.preprocessing, model.dictionary
    else:
        prep = Preprocessing(patch_size=int(config.get("patch_size", 16)))
        train = natural_patches(config.get("n_train", 100_000), 1, prep, seed=seed).train
        phi_raw, _ = learn_dictionary(train, int(config["latents"]), LCAConfig(lam=lam, n_steps=300, tol=0.0),
                                      n_updates=int(config.get("updates", 300)), rng=np.random.default_rng(seed))
        save_dictionary(folder / "dictionary.npz", phi_raw, prep, {"lam": lam, "config": config})
    norms = np.linalg.norm(phi_raw, axis=0)
    phi = normalise_atoms(phi_raw)
    n_code = int(config.get("n_code", 1000))
    x = natural_patches(1, n_code, prep, seed=seed + 1).val.reshape(n_code, -1).astype(np.float64)
    res = lca_fixed_point(x, phi, LCAConfig(lam=lam))  # the converged code, certified by its duality gap
    a = res.codes / norms  # codes on the raw atoms' scale: Φ a = (Φ/‖φ‖)(‖φ‖ a)
    return {"mse": float(((x - a @ phi_raw.T) ** 2).sum(1).mean()),
            "lifetime_sparsity": float(lifetime_sparsity(np.abs(res.codes)).mean()),
            "active_fraction": float(res.fraction_active), "energy": float(res.energy[-1]),
            "l1": float(np.abs(res.codes).sum(1).mean()), "max_duality_gap": float(res.residual.max())}


# ------------------------------------------------------------------ the driver
def _finished(folder: Path, config: dict) -> dict | None:
    try:
        rec = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("status") == "ok" and rec.get("config") == config else None


def _write_manifest(out: Path, settings: dict, records: list[dict]) -> None:
    from ..io.files import write_csv, write_json

    write_json(out / "manifest.json", {"sweep": settings, "runs": records})
    mkeys = list(dict.fromkeys(k for r in records for k in (r.get("metrics") or {})))
    ckeys = list(dict.fromkeys(k for r in records for k in r["config"]))
    rows = [[r["id"], r["status"], f"{r.get('seconds') or 0:.1f}"] + [r["config"].get(k, "") for k in ckeys]
            + [(r.get("metrics") or {}).get(k, "") for k in mkeys] + [r.get("error") or ""] for r in records]
    write_csv(out / "results.csv", ["id", "status", "seconds"] + ckeys + mkeys + ["error"], rows)


def run_sweep(out: str | Path, grid: dict, fixed: dict | None = None, scheduler: str | None = None,
              n_workers: int | None = None, serial: bool = False, progress: bool = True) -> list[dict]:
    """Run every grid point not already finished in ``out``; return the manifest records."""
    import os

    from tqdm.auto import tqdm

    out = Path(out)
    configs = expand_grid(grid, fixed)
    for c in configs:
        check_config(c)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    settings = {"grid": grid, "fixed": fixed or {}, "scheduler": scheduler or ("serial" if serial else "local"),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    records, todo = [], []
    for c in configs:
        rid = run_id(c, list(grid))
        folder = out / "runs" / rid
        done = _finished(folder, c)
        if done:
            records.append({"id": rid, "status": "ok", "config": c, "metrics": done["metrics"],
                            "seconds": done["seconds"], "error": None, "skipped": True})
        else:
            records.append({"id": rid, "status": "pending", "config": c, "metrics": None, "seconds": None,
                            "error": None})
            todo.append(len(records) - 1)
    _write_manifest(out, settings, records)
    bar = tqdm(total=len(todo), disable=not progress, desc="sweep", unit="run")

    def record(i, rec):
        records[i].update(status=rec["status"], metrics=rec.get("metrics"), seconds=rec.get("seconds"),
                          error=rec.get("error"), traceback=rec.get("traceback"))
        _write_manifest(out, settings, records)
        bar.update(1)
        if rec["status"] != "ok":
            bar.write(f"run {records[i]['id']} failed: {rec.get('error')}")

    if serial:
        for i in todo:
            record(i, run_job(records[i]["config"], str(out / "runs" / records[i]["id"])))
    elif todo:
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = None
        if scheduler:
            client = Client(scheduler, timeout="20s")
        else:
            cluster = LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                                   processes=True, scheduler_port=0, dashboard_address=":0",
                                   silence_logs=40)
            client = Client(cluster)
        try:
            futures = {client.submit(run_job, records[i]["config"], str((out / "runs" / records[i]["id"]).resolve()),
                                     key=f"spikevae-{records[i]['id']}-{time.time_ns()}", pure=False): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    rec = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker died: record it, go on
                    rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                record(i, rec)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    bar.close()
    return records

