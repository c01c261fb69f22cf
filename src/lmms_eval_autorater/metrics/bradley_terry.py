"""Bradley-Terry ratings from pairwise comparisons, and percentile-bootstrap CIs (pure; fit by ``choix``).

A comparison is ``(i, j, outcome)`` with item indices ``i != j`` and ``outcome`` in the judge's codes:
1 (``i`` preferred), 2 (``j`` preferred) or 0 (a tie). The model is ``P(i beats j) = sigmoid(t_i - t_j)``
on log-strengths ``t``; the fit maximises the likelihood of the weighted win matrix ``W`` (``W[i, j]``:
wins of ``i`` over ``j``) with

* ties (``ties="half"``, the default) counted as half a win each way, or dropped (``ties="drop"``);
* a prior of ``prior`` virtual ties between every two items (``prior / 2`` added to ``W[i, j]`` and
  ``W[j, i]``), the same pseudo-data for every pair, so that ratings stay finite when an item wins or loses
  every comparison (or is never compared: it then sits at the mean). ``prior=0`` is the plain maximum
  likelihood estimate, which exists only when the comparison graph is strongly connected.

The maximiser is computed by ``choix.ilsr_pairwise_dense`` (iterative Luce spectral ranking, which converges
to the maximum-likelihood estimate of a dense, possibly fractional, win matrix). Ratings are log-strengths
centred at mean 0 (the likelihood only fixes differences), times ``scale``: 1 for natural log-odds units,
``ELO_SCALE`` (400 / ln 10) for Elo-like points, where a 400-point gap means 10:1 odds.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Literal, get_args

import numpy as np

#: Elo-like points per unit of log-strength: a difference of 400 means odds of 10 to 1
ELO_SCALE = 400.0 / math.log(10.0)

TiesPolicy = Literal["half", "drop"]
TIES_POLICIES: tuple[str, ...] = get_args(TiesPolicy)

#: a comparison: (item i, item j, outcome 1 = i preferred, 2 = j preferred, 0 = tie)
Comparison = tuple[int, int, int]


def _as_array(n_items: int, comparisons: Sequence[Comparison] | np.ndarray) -> np.ndarray:
    """``comparisons`` as an (m, 3) int array, checked: indices in range and distinct, outcomes 0/1/2."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    arr = np.asarray(comparisons, dtype=np.int64) if len(comparisons) else np.zeros((0, 3), np.int64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"comparisons must be (i, j, outcome) triples, got shape {arr.shape}")
    i, j, out = arr.T
    bad = (i < 0) | (i >= n_items) | (j < 0) | (j >= n_items)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"comparison {k}: item index out of range 0..{n_items - 1}: {tuple(arr[k])}")
    if (i == j).any():
        k = int(np.argmax(i == j))
        raise ValueError(f"comparison {k}: an item compared with itself: {tuple(arr[k])}")
    if not np.isin(out, (0, 1, 2)).all():
        k = int(np.argmax(~np.isin(out, (0, 1, 2))))
        raise ValueError(f"comparison {k}: outcome must be 1, 2 or 0 (tie), got {int(out[k])}")
    return arr


def _check(ties: str, prior: float) -> None:
    if ties not in TIES_POLICIES:
        raise ValueError(f"ties must be one of {TIES_POLICIES}, got {ties!r}")
    if not (prior >= 0.0 and math.isfinite(prior)):
        raise ValueError(f"prior must be a finite number >= 0, got {prior!r}")


def _weighted_wins(n_items: int, arr: np.ndarray, weights: np.ndarray | None, ties: str) -> np.ndarray:
    """The win matrix of the (checked) comparisons, each counted ``weights[k]`` times."""
    w = np.ones(len(arr)) if weights is None else np.asarray(weights, dtype=np.float64)
    i, j, out = arr.T
    wins = np.zeros((n_items, n_items), dtype=np.float64)
    np.add.at(wins, (i[out == 1], j[out == 1]), w[out == 1])
    np.add.at(wins, (j[out == 2], i[out == 2]), w[out == 2])
    if ties == "half":
        tie = out == 0
        np.add.at(wins, (i[tie], j[tie]), 0.5 * w[tie])
        np.add.at(wins, (j[tie], i[tie]), 0.5 * w[tie])
    return wins


def win_matrix(
    n_items: int, comparisons: Sequence[Comparison] | np.ndarray, ties: TiesPolicy = "half"
) -> np.ndarray:
    """``W[i, j]``: how often ``i`` was preferred to ``j`` (a tie adds 0.5 each way, or nothing with "drop")."""
    _check(ties, 0.0)
    return _weighted_wins(n_items, _as_array(n_items, comparisons), None, ties)


def comparisons_from_matrix(wins: np.ndarray) -> list[Comparison]:
    """The comparisons of an integer win matrix (``wins[i, j]`` times ``(i, j, 1)``), e.g. for tests."""
    mat = np.asarray(wins)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"a win matrix must be square, got shape {mat.shape}")
    if (mat < 0).any() or not np.array_equal(mat, np.round(mat)):
        raise ValueError("a win matrix for comparisons must hold non-negative integers")
    return [(i, j, 1) for i, j in zip(*np.nonzero(mat)) for _ in range(int(mat[i, j]))]


def fit_matrix(wins: np.ndarray, prior: float = 1.0, initial: np.ndarray | None = None) -> np.ndarray:
    """Log-strengths (mean 0) maximising the Bradley-Terry likelihood of the win matrix ``wins`` plus
    ``prior`` virtual ties per pair of items; ``ValueError`` when ``prior=0`` and no finite maximum exists.
    ``initial`` (log-strengths) only starts the iteration nearer the answer (the bootstrap's refits)."""
    import choix

    _check("half", prior)
    mat = np.array(wins, dtype=np.float64)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"a win matrix must be square, got shape {mat.shape}")
    if (mat < 0).any() or not np.isfinite(mat).all():
        raise ValueError("a win matrix must hold finite, non-negative counts")
    n = mat.shape[0]
    if n == 1:
        return np.zeros(1)
    np.fill_diagonal(mat, 0.0)
    mat += (prior / 2.0) * (1.0 - np.eye(n))
    if prior == 0.0:
        from scipy.sparse.csgraph import connected_components

        k, _ = connected_components(mat > 0, directed=True, connection="strong")
        if k != 1:
            raise ValueError(
                "no finite maximum-likelihood ratings: the comparisons are not strongly connected (some item "
                "never beat, or never lost to, the rest); use prior > 0"
            )
    start = None if initial is None else np.asarray(initial, dtype=np.float64)
    params = choix.ilsr_pairwise_dense(mat, alpha=0.0, initial_params=start, max_iter=10_000, tol=1e-10)
    params = np.asarray(params, dtype=np.float64)
    return params - params.mean()


def fit_ratings(
    n_items: int,
    comparisons: Sequence[Comparison] | np.ndarray,
    *,
    ties: TiesPolicy = "half",
    prior: float = 1.0,
    scale: float = 1.0,
) -> np.ndarray:
    """Bradley-Terry ratings of ``n_items`` items from ``(i, j, outcome)`` comparisons (see the module doc):
    log-strengths centred at mean 0, times ``scale`` (``ELO_SCALE`` for Elo-like points)."""
    _check(ties, prior)
    arr = _as_array(n_items, comparisons)
    return scale * fit_matrix(_weighted_wins(n_items, arr, None, ties), prior=prior)


def bootstrap_ratings(
    n_items: int,
    comparisons: Sequence[Comparison] | np.ndarray,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    *,
    ties: TiesPolicy = "half",
    prior: float = 1.0,
    scale: float = 1.0,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap CIs ``(low, high)`` of ``fit_ratings``, one entry per item.

    With ``groups`` (one id per comparison, e.g. the prompt) whole groups are drawn with replacement and
    every comparison of a drawn group is kept (comparisons on one prompt are not independent); without it,
    comparisons are drawn. Each resample is refitted the same way; deterministic for a seed. A resample
    with no finite fit (only with ``prior=0``) is skipped; with fewer than half finite, the CIs are nan.
    """
    _check(ties, prior)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arr = _as_array(n_items, comparisons)
    m = len(arr)
    nan = np.full(n_items, np.nan)
    if m == 0:
        return nan, nan.copy()
    if groups is None:
        codes = np.arange(m)
    else:
        group_list = groups.tolist() if isinstance(groups, np.ndarray) else list(groups)
        if len(group_list) != m:
            raise ValueError(f"groups has {len(group_list)} entries for {m} comparisons")
        index: dict[Hashable, int] = {}
        codes = np.fromiter((index.setdefault(g, len(index)) for g in group_list), dtype=np.int64, count=m)
    n_groups = int(codes.max()) + 1
    try:  # the full sample's fit starts every refit (the answer is the same, it only converges sooner)
        start = fit_matrix(_weighted_wins(n_items, arr, None, ties), prior=prior)
    except ValueError:
        start = None
    rng = np.random.default_rng(seed)
    stats = np.full((n_resamples, n_items), np.nan)
    for b in range(n_resamples):
        times = np.bincount(rng.integers(0, n_groups, size=n_groups), minlength=n_groups)
        wins = _weighted_wins(n_items, arr, times[codes].astype(np.float64), ties)
        try:
            stats[b] = scale * fit_matrix(wins, prior=prior, initial=start)
        except ValueError:
            continue
    finite = stats[np.isfinite(stats).all(axis=1)]
    if finite.shape[0] == 0 or 2 * finite.shape[0] < n_resamples:
        return nan, nan.copy()
    alpha = 1.0 - confidence
    low, high = np.percentile(finite, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)], axis=0)
    return low, high
