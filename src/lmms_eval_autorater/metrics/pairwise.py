"""Pairwise preference accuracy: does the judge pick the image the human preferred?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

TiePolicy = Literal["wrong", "half", "exclude"]
TIE_POLICIES: tuple[str, ...] = get_args(TiePolicy)


def _as_codes(values: Sequence[int] | np.ndarray, allowed: tuple[int, ...], name: str) -> np.ndarray:
    """Return ``values`` as a 1-D int array, raising ValueError naming the first index not in ``allowed``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind in "iuf":
        bad = ~np.isin(arr, allowed)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name}[{i}] = {arr[i]!r} is not one of {allowed}")
        return arr.astype(np.int64)
    # bool, object (e.g. containing None), strings: check element by element so the message names the index
    items = arr.tolist() if isinstance(values, np.ndarray) else list(values)
    for i, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v not in allowed:
            raise ValueError(f"{name}[{i}] = {v!r} is not one of {allowed}")
    return np.asarray(items, dtype=np.int64)


def pairwise_accuracy(
    labels: Sequence[int] | np.ndarray,
    preds: Sequence[int] | np.ndarray,
    tie_policy: TiePolicy = "wrong",
) -> float:
    """Fraction of pairs where the predicted preference (1, 2, or 0 = tie) matches the human label (1 or 2).

    Pooled over pairs. A predicted tie counts as wrong ("wrong", as ImageReward's test.py), half right
    ("half"), or is dropped from numerator and denominator ("exclude"). Returns nan when nothing is scored.
    """
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}, got {tie_policy!r}")
    lab = _as_codes(labels, (1, 2), "labels")
    pred = _as_codes(preds, (0, 1, 2), "preds")
    if lab.shape != pred.shape:
        raise ValueError(f"labels and preds differ in length: {lab.size} vs {pred.size}")
    ties = pred == 0
    correct = int(np.count_nonzero(pred == lab))
    n_ties = int(np.count_nonzero(ties))
    if tie_policy == "exclude":
        denom = lab.size - n_ties
        return correct / denom if denom else float("nan")
    if lab.size == 0:
        return float("nan")
    credit = correct + (0.5 * n_ties if tie_policy == "half" else 0.0)
    return credit / lab.size
