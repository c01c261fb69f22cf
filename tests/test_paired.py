"""Tests for metrics/paired.py: the paired bootstrap of a metric difference, against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmms_eval_autorater.metrics import pairwise_accuracy, summarize_pairwise, summarize_pointwise
from lmms_eval_autorater.metrics.paired import (
    PairedDiff,
    accuracy_ci,
    accuracy_metric,
    paired_difference,
    paired_records,
    pearson_metric,
)

ACC = accuracy_metric()


def test_identical_systems_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    labels = rng.integers(1, 3, size=40)
    pred = rng.integers(0, 3, size=40).astype(float)
    d = paired_difference(ACC, pred, pred.copy(), labels, n_resamples=200)
    assert (d.diff, d.ci_low, d.ci_high, d.n) == (0.0, 0.0, 0.0, 40)
    assert d.within_noise


def test_always_right_against_always_wrong_is_a_certain_difference_of_one():
    labels = np.array([1, 2, 1, 2, 2])
    d = paired_difference(ACC, labels.astype(float), (3 - labels).astype(float), labels, n_resamples=100)
    assert (d.diff, d.ci_low, d.ci_high) == (1.0, 1.0, 1.0)
    assert not d.within_noise


def test_one_doc_of_three_enumerated_bootstrap_distribution():
    # a is right on docs 0,1,2; b on docs 1,2 only: diff = 1/3. Resampled diff = k/3 with k ~ Binomial(3, 1/3):
    # P(k=0) = 8/27 (> 2.5%) so the low percentile is 0; P(k=3) = 1/27 = 3.7% (> 2.5%) so the high one is 1.
    labels = np.array([1, 1, 1])
    a = np.array([1.0, 1.0, 1.0])
    b = np.array([2.0, 1.0, 1.0])
    d = paired_difference(ACC, a, b, labels, n_resamples=4000, seed=1)
    assert d.diff == pytest.approx(1 / 3)
    assert (d.ci_low, d.ci_high) == (0.0, 1.0)
    assert d.within_noise


def test_clustered_resampling_keeps_groups_whole():
    # 10 docs; a beats b on the 5 docs of group "p" and ties on group "q". Unclustered: diff = k/10 with
    # k ~ Binomial(10, 1/2): P(k<=1) = 1.1%, P(k<=2) = 5.5% -> CI [0.2, 0.8]. Clustered: 0, 1/2 or 1 with
    # probabilities 1/4, 1/2, 1/4 -> CI [0, 1].
    labels = np.ones(10, dtype=int)
    a = np.ones(10)
    b = np.array([2.0] * 5 + [1.0] * 5)
    groups = ["p"] * 5 + ["q"] * 5
    plain = paired_difference(ACC, a, b, labels, n_resamples=4000, seed=2)
    clustered = paired_difference(ACC, a, b, labels, groups=groups, n_resamples=4000, seed=2)
    assert plain.diff == clustered.diff == 0.5
    assert (plain.ci_low, plain.ci_high) == (pytest.approx(0.2), pytest.approx(0.8))
    assert not plain.within_noise
    assert (clustered.ci_low, clustered.ci_high) == (0.0, 1.0)
    assert clustered.within_noise


def test_pearson_is_invariant_to_a_constant_shift_and_sign_flip_gives_minus_two():
    rng = np.random.default_rng(3)
    t = rng.normal(size=30)
    s = t + rng.normal(scale=0.5, size=30)
    shifted = paired_difference(pearson_metric, s + 5.0, s, t, n_resamples=200)
    assert shifted.diff == pytest.approx(0.0, abs=1e-12)
    assert shifted.ci_low == pytest.approx(0.0, abs=1e-12) and shifted.ci_high == pytest.approx(
        0.0, abs=1e-12
    )
    flipped = paired_difference(pearson_metric, s, -s, t, n_resamples=200)
    assert flipped.diff == pytest.approx(2 * pearson_metric(s, t))
    assert flipped.ci_low > 0


def _pair_records(preds, labels, groups):
    return [
        {
            "doc_id": i,
            "group": g,
            "label": lab,
            "pred": p,
            "status": "ok" if p is not None else "parse_failure",
        }
        for i, (p, lab, g) in enumerate(zip(preds, labels, groups))
    ]


def test_failed_docs_are_left_out_of_each_systems_metric_as_in_summary():
    labels = [1, 2, 1, 2, 1, 2]
    groups = ["a", "a", "b", "b", "c", "c"]
    ra = _pair_records([1, 2, None, 1, 1, None], labels, groups)  # 3 of 4 scored right
    rb = _pair_records([1, 1, 1, 1, 2, 2], labels, groups)  # 3 of 6 right
    d = paired_records(ra, rb, "pairwise", n_resamples=300)
    expect = (
        summarize_pairwise(ra, n_resamples=0)["accuracy"] - summarize_pairwise(rb, n_resamples=0)["accuracy"]
    )
    assert d.diff == pytest.approx(expect) == pytest.approx(0.75 - 0.5)
    assert (d.n, d.n_scored_a, d.n_scored_b) == (6, 4, 6)
    assert d.ci_low <= d.diff <= d.ci_high

    pt = [
        {
            "doc_id": i,
            "group": i,
            "target": float(i),
            "pred": p,
            "status": "ok" if p is not None else "api_error",
        }
        for i, p in enumerate([0.0, 1.5, None, 2.5, 4.0])
    ]
    pt_b = [{**r, "pred": float(4 - r["doc_id"]), "status": "ok"} for r in pt]
    d = paired_records(pt, pt_b, "pointwise", n_resamples=0)
    expect = (
        summarize_pointwise(pt, n_resamples=0)["pearson"]
        - summarize_pointwise(pt_b, n_resamples=0)["pearson"]
    )
    assert d.diff == pytest.approx(expect)
    assert math.isnan(d.ci_low) and d.within_noise  # no CI: nothing is claimed


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="one length"):
        paired_difference(ACC, [1.0, 2.0], [1.0], [1, 2])
    ra = _pair_records([1, 2], [1, 2], ["a", "b"])
    rb = list(reversed(ra))
    with pytest.raises(ValueError, match="not paired"):
        paired_records(ra, rb, "pairwise")
    assert PairedDiff(0.1, -0.1, 0.3, 5).to_json()["within_noise"] is True


@pytest.mark.parametrize("tie_policy", ["wrong", "half", "exclude"])
def test_accuracy_fast_path_gives_the_generic_numbers(tie_policy):
    rng = np.random.default_rng(4)
    n = 60
    labels = rng.integers(1, 3, size=n)
    a = rng.integers(0, 3, size=n).astype(float)
    b = rng.integers(0, 3, size=n).astype(float)
    a[[3, 17]] = np.nan  # failed docs
    b[[5]] = np.nan
    groups = rng.integers(0, 12, size=n)
    plain = lambda p, lab: pairwise_accuracy(lab, p, tie_policy)  # noqa: E731 - not an AccuracyMetric
    for g in (None, groups):
        fast = paired_difference(accuracy_metric(tie_policy), a, b, labels, groups=g, n_resamples=300, seed=5)
        slow = paired_difference(plain, a, b, labels, groups=g, n_resamples=300, seed=5)
        assert fast == slow
    with pytest.raises(ValueError, match=r"preds\[0\] = .*7\.0.* is not one of"):
        paired_difference(accuracy_metric(), np.array([7.0]), np.array([1.0]), np.array([1]))


def test_accuracy_ci_is_summarize_pairwise_ci():
    rng = np.random.default_rng(6)
    records = [
        {"doc_id": i, "group": int(g), "label": int(lab), "pred": int(p), "status": "ok"}
        for i, (g, lab, p) in enumerate(
            zip(rng.integers(0, 9, 50), rng.integers(1, 3, 50), rng.integers(0, 3, 50))
        )
    ]
    for policy in ("wrong", "half", "exclude"):
        s = summarize_pairwise(records, tie_policy=policy, n_resamples=300, seed=7)
        ci = accuracy_ci(
            [r["label"] for r in records],
            [r["pred"] for r in records],
            [r["group"] for r in records],
            policy,
            n_resamples=300,
            seed=7,
        )
        assert ci == (s["accuracy_ci_low"], s["accuracy_ci_high"])


def test_one_doc_or_one_group_gives_no_interval():
    one = paired_difference(ACC, [1.0], [2.0], [1], n_resamples=50)
    assert one.diff == 1.0 and math.isnan(one.ci_low) and one.within_noise
    grouped = paired_difference(ACC, [1.0, 1.0], [2.0, 2.0], [1, 1], groups=["g", "g"], n_resamples=50)
    assert grouped.diff == 1.0 and math.isnan(grouped.ci_high) and grouped.within_noise
    assert not paired_difference(ACC, [1.0, 1.0], [2.0, 2.0], [1, 1], n_resamples=50).within_noise
