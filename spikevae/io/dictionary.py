"""The LCA dictionary file: ``.npz`` of plain arrays (no pickles).

Fields: ``phi`` (D, K) float64 atoms as columns, ``patch_size``, ``preprocessing`` (JSON of
:class:`spikevae.data.Preprocessing`) and ``meta`` (JSON: how it was learned, provenance).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import regular_input, write_npz

__all__ = ["save_dictionary", "load_dictionary"]


def save_dictionary(path: str | os.PathLike, phi: np.ndarray, prep, meta: dict) -> Path:
    """Write a dictionary (Φ (D, K), its :class:`~spikevae.data.Preprocessing`, metadata) atomically."""
    return write_npz(path, phi=np.asarray(phi, dtype=np.float64), patch_size=np.int64(prep.patch_size),
                     preprocessing=np.array(json.dumps(prep.to_dict())), meta=np.array(json.dumps(meta, default=str)))


def load_dictionary(path: str | os.PathLike):
    """Read a dictionary file → (Φ (D, K), preprocessing, metadata); one clear :class:`DataError` for bad files."""
    from ..data import Preprocessing

    path = regular_input(path, "dictionary", 2 * 2**30)
    try:
        with np.load(path, allow_pickle=False) as z:
            phi = np.asarray(z["phi"], dtype=np.float64)
            prep_fields = json.loads(str(z["preprocessing"]))
            meta = json.loads(str(z["meta"]))
    except Exception as exc:  # noqa: BLE001 - any damage is the same message
        raise DataError(f"{path} is not a spikevae dictionary file ({type(exc).__name__})") from None
    prep = Preprocessing.from_dict(prep_fields, where=f"{path}: preprocessing")
    if phi.ndim != 2 or phi.shape[0] != prep.patch_size**2:
        raise DataError(f"{path}: dictionary shape {phi.shape} does not match {prep.patch_size}x{prep.patch_size} patches")
    if not np.all(np.isfinite(phi)):
        raise DataError(f"{path}: dictionary holds NaN or infinite values")
    if not isinstance(meta, dict):
        raise DataError(f"{path}: dictionary metadata is not a JSON object")
    return phi, prep, meta
