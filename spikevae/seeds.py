"""Seeds: one rule for splitting a run's ``--seed`` into independent child seeds, one per stage."""
from __future__ import annotations

import numpy as np

__all__ = ["child_seeds"]


def child_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 32-bit seeds derived from ``seed`` (NumPy's ``SeedSequence.spawn``): the stages of one run
    (stimuli, spikes, initialisation, batches, ...) each get their own, and the same ``seed`` gives the same ones."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]
