"""Figures. The only module that imports matplotlib; functions take arrays/records and return figures."""
from __future__ import annotations

import numpy as np

__all__ = ["basis_grid", "save_figure"]


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def basis_grid(atoms: np.ndarray, order: np.ndarray | None = None, n_show: int = 256, ncols: int = 16,
               title: str = "", labels: np.ndarray | None = None):
    """Grid of dictionary atoms, each scaled to its own max |value| (grey = 0).

    Parameters
    ----------
    atoms : ndarray (K, P, P)
    order : ndarray (K,), optional
        Display order (e.g. by decreasing KL).
    n_show : int
        Number of atoms shown.
    labels : ndarray (K,), optional
        A number printed above each atom (e.g. its KL).
    """
    plt = _mpl()
    atoms = np.asarray(atoms)
    order = np.arange(len(atoms)) if order is None else np.asarray(order)
    order = order[:n_show]
    nrows = int(np.ceil(len(order) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.62, nrows * 0.62 + (0.4 if title else 0)))
    axes = np.atleast_2d(axes)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, k in zip(axes.flat, order):
        a = atoms[k]
        m = np.abs(a).max() or 1.0
        ax.imshow(a, cmap="gray", vmin=-m, vmax=m, interpolation="nearest")
        if labels is not None:
            ax.set_title(f"{labels[k]:.2g}", fontsize=5, pad=1)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95 if title else 0.99, wspace=0.08, hspace=0.25)
    return fig


def save_figure(fig, path, dpi: int = 130) -> None:
    """Save atomically (temporary name, then rename) and close the figure."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _mpl().close(fig)
