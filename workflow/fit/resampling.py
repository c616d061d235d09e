"""Resamples of a study's rows by independent unit: the one draw behind every interval of the fit."""

from __future__ import annotations

import numpy as np


def unit_rows(units: np.ndarray, rng: np.random.Generator, samples: int) -> list[np.ndarray]:
    """``samples`` resamples of the rows: units drawn with replacement, each bringing all its rows. With one
    row per unit this is the ordinary draw of rows (the same numbers from the same seed)."""
    groups = [np.flatnonzero(units == u) for u in np.unique(units)]
    draws = rng.integers(0, len(groups), (samples, len(groups)))
    if all(len(g) == 1 for g in groups):
        order = np.array([g[0] for g in groups])
        return list(order[draws])
    return [np.concatenate([groups[d] for d in draw]) for draw in draws]
