"""Metrics of scores and probabilities (``scoring=expected``, ``samples=N``): PLCC after the logistic fit,
Brier score, expected calibration error and the tie-aware pairwise accuracy (pure, no I/O).

Pairwise probabilities are ``p_first`` = p(image 1 preferred); labels are 1 or 2 (a human tie, where a task
has one, is 0).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from .correlation import _validate, pearson

#: the equal-width bins of ``ece``
ECE_BINS = 10


def _pairs(labels: Sequence[int], p_first: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    lab = np.asarray(labels, dtype=np.int64)
    p = np.asarray(p_first, dtype=np.float64)
    if lab.shape != p.shape or lab.ndim != 1:
        raise ValueError(f"labels and p_first differ in shape: {lab.shape} vs {p.shape}")
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1):
        raise ValueError("p_first must be probabilities in [0, 1]")
    return lab, p


def brier(labels: Sequence[int], p_first: Sequence[float]) -> float:
    """Mean of (1 - p(the label's image))^2 over docs with label 1 or 2 (nan when there are none)."""
    lab, p = _pairs(labels, p_first)
    keep = (lab == 1) | (lab == 2)
    if not keep.any():
        return float("nan")
    p_label = np.where(lab[keep] == 1, p[keep], 1.0 - p[keep])
    return float(np.mean((1.0 - p_label) ** 2))


def ece(labels: Sequence[int], p_first: Sequence[float], bins: int = ECE_BINS) -> float:
    """Expected calibration error of p_first as the probability that the label is 1: docs binned by p_first
    into ``bins`` equal-width bins of [0, 1] (the last bin closed), then the docs-weighted mean over bins
    of |mean p_first - share of label 1|. Docs with label 1 or 2 only (nan when there are none)."""
    lab, p = _pairs(labels, p_first)
    keep = (lab == 1) | (lab == 2)
    if not keep.any():
        return float("nan")
    y = (lab[keep] == 1).astype(np.float64)
    q = p[keep]
    idx = np.minimum((q * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(q[m].mean() - y[m].mean())
    return float(total / q.size)


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic IQA work fits before PLCC: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    z = np.clip(-(x - b3) / max(abs(b4), 1e-12), -500, 500)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def plcc_logistic(pred: Sequence[float], target: Sequence[float]) -> float:
    """Pearson between the targets and the predictions mapped by the 4-parameter logistic fitted to them
    (least squares, scipy's ``curve_fit``; start: b1 = max target, b2 = min target, b3 = mean pred,
    b4 = std of pred / 4 + small). A fit that does not converge gives the raw Pearson (the identity map is
    what the fit falls back to). nan when fewer than 4 points or a constant input."""
    x, y = _validate(pred, target)
    if x.size < 4 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    from scipy.optimize import curve_fit

    start = [float(y.max()), float(y.min()), float(x.mean()), float(x.std() / 4 + 1e-3)]
    try:
        with warnings.catch_warnings():  # an unestimable covariance is no concern: only the fit is used
            warnings.simplefilter("ignore")
            params, _ = curve_fit(logistic4, x, y, p0=start, maxfev=20000)
    except (RuntimeError, ValueError):
        return pearson(x, y)
    fitted = logistic4(x, *params)
    if not np.all(np.isfinite(fitted)):
        return pearson(x, y)
    return pearson(fitted, y)


def group_split(groups: Sequence, fraction: float = 0.5, seed: int = 0) -> tuple[list[int], list[int]]:
    """(selection, report) indices: a seeded ``fraction`` of the groups (prompts; a group's docs stay
    together) to select on, the other groups to report on; the same draw as ``grid --select_on``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the selection fraction must be in (0, 1), got {fraction}")
    uniq = list(dict.fromkeys(groups))
    if len(uniq) < 2:
        return [], list(range(len(groups)))
    order = np.random.default_rng(seed).permutation(len(uniq))
    k = min(len(uniq) - 1, max(1, round(fraction * len(uniq))))
    chosen = {uniq[int(j)] for j in order[:k]}
    sel = [i for i, g in enumerate(groups) if g in chosen]
    return sel, [i for i, g in enumerate(groups) if g not in chosen]


def tie_accuracy(labels: Sequence[int], p_first: Sequence[float], threshold: float) -> float:
    """Tie-aware accuracy: the prediction is a tie when |p_first - 0.5| <= threshold, else the more likely
    image; a prediction is right when it equals the label (a tie is right only on a human tie, label 0)."""
    lab, p = _pairs(labels, p_first)
    if not lab.size:
        return float("nan")
    pred = np.where(np.abs(p - 0.5) <= threshold, 0, np.where(p > 0.5, 1, 2))
    return float(np.mean(pred == lab))


def choose_tie_threshold(labels: Sequence[int], p_first: Sequence[float]) -> float:
    """The threshold on |p_first - 0.5| that maximises ``tie_accuracy`` on these docs (the selection
    part): candidates 0 (no ties unless p is exactly 0.5) and every |p - 0.5| seen; the smallest best one."""
    lab, p = _pairs(labels, p_first)
    if not lab.size:
        return 0.0
    best_t, best = 0.0, -1.0
    for t in sorted({0.0, *np.abs(p - 0.5).tolist()}):
        acc = tie_accuracy(lab, p, t)
        if acc > best + 1e-12:
            best_t, best = t, acc
    return float(best_t)


def tie_calibrated_accuracy(
    labels: Sequence[int], p_first: Sequence[float], groups: Sequence, fraction: float = 0.5, seed: int = 0
) -> dict[str, float]:
    """EditReward-style tie-calibrated accuracy: the tie threshold is chosen on a seeded selection part of
    the prompts (``group_split``) and the accuracy reported on the other part only (never on the docs the
    threshold was chosen on). Returns ``tie_accuracy``, ``tie_threshold`` and ``tie_report_docs``."""
    sel, rep = group_split(list(groups), fraction, seed)
    lab, p = _pairs(labels, p_first)
    if not sel or not rep:
        return {"tie_accuracy": float("nan"), "tie_threshold": float("nan"), "tie_report_docs": 0}
    t = choose_tie_threshold(lab[sel], p[sel])
    return {
        "tie_accuracy": tie_accuracy(lab[rep], p[rep], t),
        "tie_threshold": t,
        "tie_report_docs": len(rep),
    }
