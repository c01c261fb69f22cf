"""Paired bootstrap of the difference of a metric between two systems judged on the same docs.

Both systems are resampled together (the same drawn docs, or the same drawn prompt/set groups with
``groups=``), so what the docs have in common cancels and only the systems' disagreement is left: the
CI of a difference is much narrower than the two separate CIs suggest.

Failures follow ``metrics/summary.py``: a doc that was not scored for a system (input error, parse or
API failure) is never counted as wrong nor guessed; it is left out of that system's metric. Here a
failed doc is ``nan`` in that system's prediction array; each resample computes each system's metric
over its own finite predictions among the drawn docs, so the point difference is exactly the
difference of the two ``summarize_*`` values. ``record_arrays`` turns task records into these arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bootstrap import _group_index, bootstrap_ci, percentile_interval
from .correlation import pearson
from .pairwise import TIE_POLICIES, TiePolicy, pairwise_accuracy
from .summary import _triage, _usable_score

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class PairedDiff:
    """``metric(a) - metric(b)`` on the same docs, with a paired percentile-bootstrap CI."""

    diff: float
    ci_low: float
    ci_high: float
    n: int  # docs compared (rows, failed ones included)
    n_scored_a: int = 0
    n_scored_b: int = 0

    @property
    def within_noise(self) -> bool:
        """True when the CI contains 0 (or could not be computed): the data do not separate a from b."""
        if not (np.isfinite(self.ci_low) and np.isfinite(self.ci_high)):
            return True
        return bool(self.ci_low <= 0.0 <= self.ci_high)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "within_noise": self.within_noise}


class AccuracyMetric:
    """Pairwise accuracy as ``metric(pred, labels)`` (predictions 0/1/2, labels 1/2).

    It is a ratio of per-doc sums (credit / counted), so ``paired_difference`` resamples those sums,
    vectorised (``resampled_sums``: the same draws and numbers as ``bootstrap_ci``, far faster)."""

    def __init__(self, tie_policy: TiePolicy = "wrong") -> None:
        if tie_policy not in TIE_POLICIES:
            raise ValueError(f"tie_policy must be one of {TIE_POLICIES}, got {tie_policy!r}")
        self.tie_policy = tie_policy

    def __call__(self, pred: np.ndarray, labels: np.ndarray) -> float:
        return pairwise_accuracy(labels, pred, self.tie_policy)

    def parts(self, pred: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per doc: (credit, counted) with nan preds (not scored) counting 0 in both; validated once."""
        ok = np.isfinite(pred)
        p = np.zeros(pred.shape, dtype=np.int64)
        p[ok] = pred[ok].astype(np.int64)
        pairwise_accuracy(labels[ok], pred[ok], self.tie_policy)  # raises on bad codes, naming the index
        ties = ok & (p == 0)
        credit = (ok & (p == labels)).astype(np.float64)
        if self.tie_policy == "half":
            credit += 0.5 * ties
        counted = (ok & ~ties) if self.tie_policy == "exclude" else ok
        return credit, counted.astype(np.float64)


def accuracy_metric(tie_policy: TiePolicy = "wrong") -> AccuracyMetric:
    """Pairwise accuracy as ``metric(pred, labels)`` for ``paired_difference`` (see ``AccuracyMetric``)."""
    return AccuracyMetric(tie_policy)


def _ratio(num: np.ndarray, den: np.ndarray) -> float:
    d = den.sum()
    return float(num.sum() / d) if d else float("nan")


def pearson_metric(pred: np.ndarray, targets: np.ndarray) -> float:
    """Pearson r of judge scores against targets as ``metric(pred, labels)``."""
    return pearson(targets, pred)


def resampled_sums(
    columns: Sequence[np.ndarray],
    groups: Sequence[Hashable] | np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """(n_resamples, len(columns)) sums of each per-row column over the rows of each bootstrap resample,
    drawn exactly as ``bootstrap_ci`` draws them (same seed, same rows or groups), without its per-resample
    loop: any statistic that is a function of sums (accuracy = credit / counted) gets ``bootstrap_ci``'s numbers."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    cols = np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1)  # (n, k)
    n = cols.shape[0]
    if groups is not None:
        order, starts, counts = _group_index(groups, n)
        units = np.add.reduceat(cols[order], starts, axis=0) if n else cols  # (n_groups, k)
    else:
        units = cols
    m = units.shape[0]
    if m == 0:
        return np.full((n_resamples, cols.shape[1]), np.nan)
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, cols.shape[1]), dtype=np.float64)
    chunk = max(1, (1 << 20) // max(m, 1))
    for b0 in range(0, n_resamples, chunk):  # consecutive draws give the same stream as one per resample
        b1 = min(n_resamples, b0 + chunk)
        drawn = rng.integers(0, m, size=(b1 - b0, m))
        out[b0:b1] = units[drawn].sum(axis=1)
    return out


def _ratios(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)


def accuracy_ci(
    labels: Sequence[int] | np.ndarray,
    preds: Sequence[int] | np.ndarray,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    tie_policy: TiePolicy = "wrong",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """The CI ``summarize_pairwise`` gives (``bootstrap_ci`` of ``pairwise_accuracy``: the same draws and
    numbers), vectorised over resamples: for grids of many rows."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    lab = np.asarray(labels)
    credit, counted = AccuracyMetric(tie_policy).parts(np.asarray(preds, dtype=np.float64), lab)
    if lab.size == 0:
        return float("nan"), float("nan")
    sums = resampled_sums([credit, counted], groups, n_resamples, seed)
    return percentile_interval(_ratios(sums[:, 0], sums[:, 1]), confidence)


def _on_scored(metric: Metric, pred: np.ndarray, labels: np.ndarray) -> float:
    ok = np.isfinite(pred)
    if not ok.any():
        return float("nan")
    return float(metric(pred[ok], labels[ok]))


def paired_difference(
    metric: Metric,
    pred_a: Sequence[float] | np.ndarray,
    pred_b: Sequence[float] | np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDiff:
    """``metric(pred_a, labels) - metric(pred_b, labels)`` with a paired (optionally clustered) bootstrap CI.

    Row i of ``pred_a``, ``pred_b`` and ``labels`` is the same doc; ``nan`` marks a doc that system did
    not score (it is left out of that system's metric, as in ``summary.py``). ``groups`` resamples whole
    prompts/sets. ``n_resamples=0``, or fewer than 2 docs/groups to resample, gives no CI (nan; within noise).
    """
    a = np.asarray(pred_a, dtype=np.float64)
    b = np.asarray(pred_b, dtype=np.float64)
    lab = np.asarray(labels)
    if a.ndim != 1 or b.shape != a.shape or lab.shape != a.shape:
        raise ValueError(
            f"pred_a, pred_b and labels must be 1-D of one length; got {a.shape}, {b.shape}, {lab.shape}"
        )

    low = high = float("nan")
    # one doc (or one group) resampled is always itself: no interval, nothing separated
    units = a.size if groups is None else len(set(np.asarray(groups).tolist()))
    if isinstance(metric, AccuracyMetric):  # a ratio of sums: resample the per-doc sums, vectorised
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        parts = [*metric.parts(a, lab), *metric.parts(b, lab)]
        diff = _ratio(parts[0], parts[1]) - _ratio(parts[2], parts[3])
        if n_resamples > 0 and units >= 2:
            s = resampled_sums(parts, groups, n_resamples, seed)
            low, high = percentile_interval(_ratios(s[:, 0], s[:, 1]) - _ratios(s[:, 2], s[:, 3]), confidence)
    else:

        def stat(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> float:
            return _on_scored(metric, x, t) - _on_scored(metric, y, t)

        diff = stat(a, b, lab)
        if n_resamples > 0 and units >= 2:
            low, high = bootstrap_ci(
                stat, a, b, lab, groups=groups, n_resamples=n_resamples, confidence=confidence, seed=seed
            )
    return PairedDiff(
        float(diff), low, high, int(a.size), int(np.isfinite(a).sum()), int(np.isfinite(b).sum())
    )


def record_arrays(
    records: Sequence[Mapping[str, Any]], paradigm: str
) -> tuple[np.ndarray, np.ndarray, list[Hashable]]:
    """(pred, labels, groups) of task records (``tasks.common.make_record``), with nan for each doc not
    scored by ``summary.py``'s rules; labels are the pairwise ``label`` or the pointwise ``target``."""
    if paradigm not in ("pairwise", "pointwise"):
        raise ValueError(f"paradigm must be 'pairwise' or 'pointwise', got {paradigm!r}")
    usable = (lambda p: p is not None) if paradigm == "pairwise" else _usable_score
    scored = set(_triage(records, usable)[0])
    key = "label" if paradigm == "pairwise" else "target"
    pred = np.array([float(r["pred"]) if i in scored else np.nan for i, r in enumerate(records)])
    labels = np.array([r[key] for r in records])
    return pred, labels, [r["group"] for r in records]


def paired_records(
    records_a: Sequence[Mapping[str, Any]],
    records_b: Sequence[Mapping[str, Any]],
    paradigm: str,
    *,
    tie_policy: TiePolicy = "wrong",
    clustered: bool = True,
    n_resamples: int = 1000,
    seed: int = 0,
) -> PairedDiff:
    """The paired difference of the task metric (accuracy or Pearson) between two runs' records of the same
    docs in the same order, clustered by the records' ``group`` unless ``clustered=False``."""
    if len(records_a) != len(records_b):
        raise ValueError(
            f"the runs have {len(records_a)} and {len(records_b)} records; pairing needs the same docs"
        )
    for i, (ra, rb) in enumerate(zip(records_a, records_b)):
        if ra.get("doc_id") != rb.get("doc_id"):
            raise ValueError(
                f"records[{i}] are docs {ra.get('doc_id')!r} and {rb.get('doc_id')!r}: not paired"
            )
    pa, labels, groups = record_arrays(records_a, paradigm)
    pb, _, _ = record_arrays(records_b, paradigm)
    metric = accuracy_metric(tie_policy) if paradigm == "pairwise" else pearson_metric
    return paired_difference(
        metric, pa, pb, labels, groups=groups if clustered else None, n_resamples=n_resamples, seed=seed
    )
