"""Percentile bootstrap confidence intervals, optionally clustered (resampling whole groups)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np


def _group_index(
    groups: Sequence[Hashable] | np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (order, starts, counts): row ``order`` lists rows group by group; group g is
    ``order[starts[g] : starts[g] + counts[g]]``."""
    group_list = groups.tolist() if isinstance(groups, np.ndarray) else list(groups)
    if len(group_list) != n:
        raise ValueError(f"groups has {len(group_list)} entries but the arrays have {n} rows")
    codes: dict[Hashable, int] = {}
    ids = np.fromiter((codes.setdefault(g, len(codes)) for g in group_list), dtype=np.int64, count=n)
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=len(codes))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return order, starts, counts


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: Sequence[Any] | np.ndarray,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(*arrays)``, resampling rows (or whole ``groups``) with replacement.

    With ``groups`` (one id per row, e.g. a prompt id) groups are drawn and all their rows kept, since rows
    sharing a prompt are not independent. Deterministic for a seed; nan resamples are skipped, and if fewer
    than half are finite the result is (nan, nan).
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    for k, a in enumerate(arrs):
        if a.ndim == 0 or len(a) != n:
            raise ValueError(f"array {k} has {0 if a.ndim == 0 else len(a)} rows, expected {n}")
    if n == 0:
        return float("nan"), float("nan")

    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples, dtype=np.float64)
    if groups is None:
        for b in range(n_resamples):
            idx = rng.integers(0, n, size=n)
            stats[b] = statistic(*(a[idx] for a in arrs))
    else:
        order, starts, counts = _group_index(groups, n)
        n_groups = counts.size
        for b in range(n_resamples):
            drawn = rng.integers(0, n_groups, size=n_groups)
            lengths = counts[drawn]
            # row positions: for each drawn group, starts[g] .. starts[g] + counts[g] - 1, concatenated
            offsets = np.cumsum(lengths) - lengths
            pos = np.arange(int(lengths.sum())) + np.repeat(starts[drawn] - offsets, lengths)
            idx = order[pos]
            stats[b] = statistic(*(a[idx] for a in arrs))

    return percentile_interval(stats, confidence)


def percentile_interval(stats: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval of resampled statistics: nan ones skipped, (nan, nan) if fewer than half
    are finite (``bootstrap_ci``'s last step, shared with vectorised bootstraps such as ``metrics.paired``)."""
    finite = stats[np.isfinite(stats)]
    if finite.size == 0 or 2 * finite.size < stats.size:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    low, high = np.percentile(finite, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(low), float(high)
