"""Correlation coefficients (Pearson, Spearman, Kendall tau-b) in plain numpy.

All three return nan when fewer than two points are given or when either input is constant (the
coefficient is undefined there; scipy returns nan too). Mismatched lengths and non-finite values raise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _validate(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return x, y as 1-D float arrays; raise ValueError on length mismatch or NaN/inf (naming the index)."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    for name, a in (("x", xa), ("y", ya)):
        if a.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if xa.size != ya.size:
        raise ValueError(f"x and y differ in length: {xa.size} vs {ya.size}")
    for name, a in (("x", xa), ("y", ya)):
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name}[{i}] = {a[i]!r} is not finite")
    return xa, ya


def _is_constant(a: np.ndarray) -> bool:
    return bool(np.all(a == a[0]))


def _unit_centered(a: np.ndarray) -> np.ndarray:
    """Centre a non-constant array and scale it to unit norm, rescaling first so that huge or tiny
    magnitudes neither overflow nor underflow."""
    a = a / np.max(np.abs(a))
    a = a - a.mean()
    a /= np.max(np.abs(a))
    a /= np.linalg.norm(a)
    return a


def _pearson_unchecked(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2 or _is_constant(x) or _is_constant(y):
        return float("nan")
    xc = _unit_centered(x)
    yc = _unit_centered(y)
    r = float(np.dot(xc, yc))
    return max(-1.0, min(1.0, r))


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span (scipy.stats.rankdata 'average')."""
    order = np.argsort(a, kind="stable")
    sa = a[order]
    new_block = np.empty(a.size, dtype=bool)
    new_block[0] = True
    np.not_equal(sa[1:], sa[:-1], out=new_block[1:])
    block_id = np.cumsum(new_block) - 1
    # block b spans sorted positions [starts[b], starts[b+1])
    starts = np.append(np.flatnonzero(new_block), a.size)
    avg = 0.5 * (starts[:-1] + 1 + starts[1:])  # mean of 1-based ranks starts[b]+1 .. starts[b+1]
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = avg[block_id]
    return ranks


def _tie_pairs(sorted_a: np.ndarray) -> int:
    """Number of tied pairs, sum t(t-1)/2 over runs of equal values in an already sorted array."""
    if sorted_a.size == 0:
        return 0
    new_block = np.empty(sorted_a.size, dtype=bool)
    new_block[0] = True
    np.not_equal(sorted_a[1:], sorted_a[:-1], out=new_block[1:])
    counts = np.diff(np.append(np.flatnonzero(new_block), sorted_a.size)).astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def _count_inversions(a: np.ndarray) -> int:
    """Pairs i < j with a[i] > a[j], for non-negative integer codes; bottom-up merge sort, O(n log^2 n)."""
    n = a.size
    a = a.astype(np.int64, copy=True)
    m = int(a.max()) + 1 if n else 1
    pos = np.arange(n)
    inversions = 0
    width = 1
    while width < n:
        block = pos // width  # `a` is sorted within each block of `width`
        pair = block // 2
        right = (block % 2).astype(bool)
        keys = pair * m + a  # sorted within each block; left blocks concatenated are globally sorted
        left_keys = keys[~right]
        right_keys = keys[right]
        right_pair = pair[right]
        # left elements of the same pair that are strictly greater than each right element
        left_end = np.searchsorted(left_keys, (right_pair + 1) * m, side="left")
        not_greater = np.searchsorted(left_keys, right_keys, side="right")
        inversions += int((left_end - not_greater).sum())
        a = a[np.argsort(keys, kind="stable")]  # merge each pair of blocks into one sorted block
        width *= 2
    return inversions


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson's linear correlation r of x and y: how well a judge's scores track the target linearly.

    nan for n < 2 or a constant input.
    """
    xa, ya = _validate(x, y)
    return _pearson_unchecked(xa, ya)


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rho (Pearson on average ranks, ties averaged): monotone agreement of judge and target.

    nan for n < 2 or a constant input.
    """
    xa, ya = _validate(x, y)
    if xa.size < 2:
        return float("nan")
    return _pearson_unchecked(_average_ranks(xa), _average_ranks(ya))


def kendall(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's tau-b (tie corrected), O(n log^2 n): pairwise ordering agreement, robust to Likert ties.

    nan for n < 2 or a constant input.
    """
    xa, ya = _validate(x, y)
    n = xa.size
    if n < 2 or _is_constant(xa) or _is_constant(ya):
        return float("nan")
    perm = np.lexsort((ya, xa))  # by x, then y
    xs, ys = xa[perm], ya[perm]
    # integer codes for y so the inversion count can offset blocks without float trouble
    y_codes = np.unique(ys, return_inverse=True)[1].reshape(-1)
    discordant = _count_inversions(y_codes)  # x-tied pairs are y-ascending, so they never count
    x_ties = _tie_pairs(xs)
    joint_new = np.empty(n, dtype=bool)
    joint_new[0] = True
    joint_new[1:] = (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1])
    joint_counts = np.diff(np.append(np.flatnonzero(joint_new), n)).astype(np.int64)
    xy_ties = int((joint_counts * (joint_counts - 1) // 2).sum())
    y_ties = _tie_pairs(np.sort(ya))
    total = n * (n - 1) // 2
    concordant_minus_discordant = total - x_ties - y_ties + xy_ties - 2 * discordant
    denom = np.sqrt(float(total - x_ties)) * np.sqrt(float(total - y_ties))
    tau = concordant_minus_discordant / denom
    return max(-1.0, min(1.0, float(tau)))
