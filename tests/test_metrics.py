"""Tests for lmms_eval_autorater.metrics: correlations against scipy, pairwise accuracy, bootstrap, summaries."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from lmms_eval_autorater.metrics import (
    bootstrap_ci,
    kendall,
    pairwise_accuracy,
    pearson,
    spearman,
    summarize_pairwise,
    summarize_pointwise,
)

REFERENCES = {
    pearson: lambda x, y: stats.pearsonr(x, y)[0],
    spearman: lambda x, y: stats.spearmanr(x, y)[0],
    kendall: lambda x, y: stats.kendalltau(x, y, variant="b")[0],
}
CORRELATIONS = list(REFERENCES)
KINDS = ["continuous", "likert", "likert_vs_continuous", "binary"]


def _reference(fn, x, y) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input
        return float(REFERENCES[fn](x, y))


def _random_pair(rng: np.random.Generator, kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    if kind == "continuous":
        x = rng.normal(size=n)
        return x, 0.6 * x + rng.normal(size=n)
    if kind == "likert":  # integer judge scores 1..10 against integer targets: many ties
        x = rng.integers(1, 11, size=n)
        y = np.clip(x + rng.integers(-3, 4, size=n), 1, 10)
        return x.astype(float), y.astype(float)
    if kind == "likert_vs_continuous":
        y = rng.normal(size=n)
        return np.clip(np.round(5 + 2 * y + rng.normal(size=n)), 1, 10), y
    if kind == "binary":  # extreme ties
        return rng.integers(0, 2, size=n).astype(float), rng.integers(0, 3, size=n).astype(float)
    raise AssertionError(kind)


# ----------------------------------------------------------------------------------------------- correlation


@pytest.mark.parametrize("fn", CORRELATIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("kind", KINDS)
def test_correlations_match_scipy_on_random_inputs(fn, kind):
    rng = np.random.default_rng([KINDS.index(kind), CORRELATIONS.index(fn)])
    for n in [2, 3, 4, 5, 7, 10, 31, 100, 257, 1000]:
        for _ in range(8):
            x, y = _random_pair(rng, kind, n)
            ref = _reference(fn, x, y)
            got = fn(x, y)
            assert isinstance(got, float)
            if math.isnan(ref):  # constant draw (possible for small n with ties)
                assert math.isnan(got), (n, x, y)
            else:
                assert got == pytest.approx(ref, abs=1e-12), (n, x, y)


@pytest.mark.parametrize("fn", CORRELATIONS, ids=lambda f: f.__name__)
def test_correlations_accept_lists_and_match_scipy_with_heavy_ties(fn):
    x = [1, 1, 1, 2, 2, 3, 3, 3, 3, 10, 10, 4]
    y = [2, 1, 1, 2, 5, 3, 3, 9, 3, 10, 10, 1]
    assert fn(x, y) == pytest.approx(_reference(fn, np.array(x), np.array(y)), abs=1e-12)


@pytest.mark.parametrize("fn", CORRELATIONS, ids=lambda f: f.__name__)
def test_perfect_and_reversed_order(fn):
    x = np.arange(20.0)
    assert fn(x, x**3) == pytest.approx(1.0 if fn is not pearson else _reference(pearson, x, x**3))
    assert fn(x, -x) == pytest.approx(-1.0)
    assert fn(x, 2 * x + 1) == pytest.approx(1.0)


def test_pearson_is_scale_invariant_without_overflow():
    rng = np.random.default_rng(3)
    x, y = _random_pair(rng, "continuous", 50)
    ref = _reference(pearson, x, y)
    assert pearson(x * 1e200, y * 1e-200) == pytest.approx(ref, abs=1e-12)
    assert pearson(x + 1e9, y) == pytest.approx(ref, abs=1e-6)


def test_kendall_matches_brute_force_tau_b():
    rng = np.random.default_rng(11)
    for _ in range(20):
        n = int(rng.integers(2, 40))
        x = rng.integers(0, 5, size=n).astype(float)
        y = rng.integers(0, 4, size=n).astype(float)
        s = n1 = n2 = 0
        for i in range(n):
            for j in range(i + 1, n):
                dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
                s += dx * dy
                n1 += dx != 0
                n2 += dy != 0
        expected = s / math.sqrt(n1 * n2) if n1 and n2 else float("nan")
        got = kendall(x, y)
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)


def test_kendall_on_4000_likert_points():
    rng = np.random.default_rng(5)
    x, y = _random_pair(rng, "likert", 4000)
    got = kendall(x, y)
    assert got == pytest.approx(_reference(kendall, x, y), abs=1e-12)


@pytest.mark.parametrize("fn", CORRELATIONS, ids=lambda f: f.__name__)
def test_correlation_undefined_cases_return_nan(fn):
    assert math.isnan(fn([], []))
    assert math.isnan(fn([1.0], [2.0]))
    assert math.isnan(fn([3, 3, 3, 3], [1, 2, 3, 4]))  # constant x
    assert math.isnan(fn([1, 2, 3, 4], [0.1, 0.1, 0.1, 0.1]))  # constant y
    assert not math.isnan(fn([1, 2], [1, 3]))  # n == 2 and non-constant is defined (+1)
    assert fn([1, 2], [1, 3]) == pytest.approx(1.0)


@pytest.mark.parametrize("fn", CORRELATIONS, ids=lambda f: f.__name__)
def test_correlation_rejects_bad_input(fn):
    with pytest.raises(ValueError, match="length"):
        fn([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=r"y\[2\]"):
        fn([1, 2, 3, 4], [1, 2, float("nan"), 4])
    with pytest.raises(ValueError, match=r"x\[0\]"):
        fn([float("inf"), 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match=r"x\[1\]"):
        fn([1, -float("inf"), 3], [1, 2, 3])


# -------------------------------------------------------------------------------------------------- pairwise


@pytest.mark.parametrize(("policy", "expected"), [("wrong", 0.5), ("half", 0.625), ("exclude", 2 / 3)])
def test_pairwise_accuracy_tie_policies_hand_computed(policy, expected):
    assert pairwise_accuracy([1, 2, 1, 2], [1, 1, 0, 2], tie_policy=policy) == pytest.approx(expected)


def test_pairwise_accuracy_default_counts_predicted_tie_as_wrong():
    assert pairwise_accuracy([1, 2, 1, 2], [1, 1, 0, 2]) == pytest.approx(0.5)
    assert pairwise_accuracy([2, 2, 1], [0, 0, 0]) == 0.0


def test_pairwise_accuracy_more_hand_computed_cases():
    labels = [1, 1, 2, 2, 2, 1]
    preds = [1, 2, 2, 0, 0, 1]  # 3 correct, 1 wrong, 2 ties
    assert pairwise_accuracy(labels, preds, "wrong") == pytest.approx(3 / 6)
    assert pairwise_accuracy(labels, preds, "half") == pytest.approx(4 / 6)
    assert pairwise_accuracy(labels, preds, "exclude") == pytest.approx(3 / 4)
    assert pairwise_accuracy(np.array(labels), np.array(preds, dtype=float), "exclude") == pytest.approx(
        3 / 4
    )
    assert pairwise_accuracy([1, 2], [2, 1]) == 0.0
    assert pairwise_accuracy([1, 2], [1, 2]) == 1.0


@pytest.mark.parametrize("policy", ["wrong", "half", "exclude"])
def test_pairwise_accuracy_empty_is_nan(policy):
    assert math.isnan(pairwise_accuracy([], [], policy))


def test_pairwise_accuracy_all_excluded_is_nan():
    assert math.isnan(pairwise_accuracy([1, 2], [0, 0], "exclude"))
    assert pairwise_accuracy([1, 2], [0, 0], "half") == 0.5


@pytest.mark.parametrize(
    ("labels", "preds", "match"),
    [
        ([1, 2, 0], [1, 2, 1], r"labels\[2\]"),  # a human tie is not a valid label
        ([1, 3], [1, 2], r"labels\[1\]"),
        ([1, 2, 1], [1, 3, 1], r"preds\[1\]"),
        ([1, 2, 1], [1, 2, -1], r"preds\[2\]"),
        ([1, 2, 1], [1, None, 1], r"preds\[1\]"),  # failed predictions must be filtered by the caller
        ([1, 2], [1, 1.5], r"preds\[1\]"),
        ([1, 2], [1, "2"], r"preds\[1\]"),
        ([1, 2], [1, float("nan")], r"preds\[1\]"),
        ([1, 2, 1], [1, 2], "length"),
    ],
)
def test_pairwise_accuracy_rejects_invalid_input(labels, preds, match):
    with pytest.raises(ValueError, match=match):
        pairwise_accuracy(labels, preds)


def test_pairwise_accuracy_rejects_unknown_policy():
    with pytest.raises(ValueError, match="tie_policy"):
        pairwise_accuracy([1], [1], tie_policy="ignore")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------- bootstrap


def _mean(x):
    return float(np.mean(x))


def test_bootstrap_is_deterministic_per_seed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    a = bootstrap_ci(_mean, x, seed=7)
    assert a == bootstrap_ci(_mean, x, seed=7)
    assert a != bootstrap_ci(_mean, x, seed=8)
    groups = rng.integers(0, 30, size=200)
    g = bootstrap_ci(_mean, x, groups=groups, seed=7)
    assert g == bootstrap_ci(_mean, x, groups=groups, seed=7)
    assert g != bootstrap_ci(_mean, x, groups=groups, seed=8)


def test_bootstrap_interval_contains_point_estimate_and_is_reasonable():
    rng = np.random.default_rng(1)
    x = rng.normal(loc=2.0, size=500)
    y = x + rng.normal(size=500)
    low, high = bootstrap_ci(_mean, x)
    assert low < np.mean(x) < high
    # the 95% interval of a mean is about +-1.96 standard errors
    se = np.std(x) / math.sqrt(x.size)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    low, high = bootstrap_ci(pearson, x, y)
    assert low < pearson(x, y) < high
    assert 0.5 < low < high < 0.9


def test_bootstrap_narrower_confidence_gives_narrower_interval():
    x = np.random.default_rng(2).normal(size=300)
    l95, h95 = bootstrap_ci(_mean, x, confidence=0.95)
    l50, h50 = bootstrap_ci(_mean, x, confidence=0.5)
    assert l95 < l50 < h50 < h95


def test_bootstrap_uses_percentiles_of_the_resampled_statistics():
    calls = iter(range(10_000))

    def counter(x):
        return float(next(calls))  # the b-th resample returns b

    low, high = bootstrap_ci(counter, np.zeros(5), n_resamples=1000, confidence=0.9)
    expected = np.percentile(np.arange(1000.0), [5, 95])
    assert (low, high) == pytest.approx(tuple(expected))


def test_bootstrap_skips_nan_resamples():
    calls = iter(range(10_000))

    def sometimes_nan(x):
        b = next(calls)
        return float("nan") if b % 3 == 0 else float(b)

    low, high = bootstrap_ci(sometimes_nan, np.zeros(5), n_resamples=999, confidence=0.9)
    finite = np.array([b for b in range(999) if b % 3], dtype=float)
    assert (low, high) == pytest.approx(tuple(np.percentile(finite, [5, 95])))


def test_bootstrap_returns_nan_when_fewer_than_half_finite():
    calls = iter(range(10_000))

    def mostly_nan(x):
        return 1.0 if next(calls) % 5 == 0 else float("nan")

    low, high = bootstrap_ci(mostly_nan, np.zeros(5), n_resamples=100)
    assert math.isnan(low) and math.isnan(high)
    # pearson of a nearly constant vector: many resamples are constant (nan) -> skipped, not crashing
    x = np.array([0.0] * 9 + [1.0])
    low, high = bootstrap_ci(pearson, x, x, n_resamples=200)
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)


def test_cluster_bootstrap_is_wider_for_duplicated_rows():
    rng = np.random.default_rng(4)
    n_groups, per_group = 40, 25
    group_values = rng.normal(size=n_groups)
    x = np.repeat(group_values, per_group)  # rows within a group are perfect duplicates
    groups = np.repeat([f"prompt-{g}" for g in range(n_groups)], per_group)
    row_low, row_high = bootstrap_ci(_mean, x)
    clu_low, clu_high = bootstrap_ci(_mean, x, groups=groups)
    assert clu_low < np.mean(x) < clu_high
    # effective sample size is 40, not 1000: about sqrt(25) = 5 times wider
    assert (clu_high - clu_low) > 3 * (row_high - row_low)


def test_cluster_bootstrap_draws_whole_groups():
    sizes = [1, 2, 3, 5, 8, 13]
    group_ids = np.repeat(np.arange(len(sizes)), sizes)
    rng = np.random.default_rng(0)
    perm = rng.permutation(group_ids.size)  # rows of a group need not be adjacent in the input
    group_ids = group_ids[perm]
    row_ids = np.arange(group_ids.size)
    totals: set[int] = set()

    def check_whole_groups(rows, gids):
        totals.add(len(rows))
        for g, size in enumerate(sizes):
            members = np.flatnonzero(group_ids == g)
            drawn = rows[gids == g]
            copies, rem = divmod(drawn.size, size)
            assert rem == 0, f"group {g} partially drawn"
            # each copy of the group contributes every one of its rows exactly once
            assert np.array_equal(np.sort(drawn), np.sort(np.tile(members, copies)))
        return float(len(rows))

    bootstrap_ci(check_whole_groups, row_ids, group_ids, groups=group_ids, n_resamples=200)
    assert len(totals) > 5  # the resample size varies with which groups were drawn
    # the same check fails for a plain row bootstrap, so it really detects partial groups
    with pytest.raises(AssertionError, match="partially drawn"):
        bootstrap_ci(check_whole_groups, row_ids, group_ids, n_resamples=50)


def test_cluster_bootstrap_with_singleton_groups_equals_row_bootstrap_in_distribution():
    x = np.random.default_rng(6).normal(size=400)
    low_r, high_r = bootstrap_ci(_mean, x, n_resamples=2000)
    low_g, high_g = bootstrap_ci(_mean, x, groups=[str(i) for i in range(400)], n_resamples=2000)
    assert (high_g - low_g) == pytest.approx(high_r - low_r, rel=0.15)


def test_bootstrap_passes_all_arrays_resampled_together():
    x = np.arange(100.0)

    def same_rows(a, b):
        assert np.array_equal(a, b - 1000)
        return float(np.mean(a))

    bootstrap_ci(same_rows, x, x + 1000, n_resamples=50)
    bootstrap_ci(same_rows, x, x + 1000, groups=x.astype(int) % 7, n_resamples=50)


def test_bootstrap_errors_and_empty_input():
    with pytest.raises(ValueError):
        bootstrap_ci(_mean)
    with pytest.raises(ValueError, match="rows"):
        bootstrap_ci(pearson, [1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="groups"):
        bootstrap_ci(_mean, [1, 2, 3], groups=["a", "b"])
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(_mean, [1, 2, 3], n_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(_mean, [1, 2, 3], confidence=1.0)
    low, high = bootstrap_ci(_mean, [])
    assert math.isnan(low) and math.isnan(high)


# --------------------------------------------------------------------------------------------------- summary


def _pair(label, pred, status="ok", group="p0"):
    return {"label": label, "pred": pred, "status": status, "group": group}


def test_summarize_pairwise_excludes_and_counts_failures():
    records = [
        _pair(1, 1, group="a"),
        _pair(2, 2, group="a"),
        _pair(1, 1, group="b"),
        _pair(2, 1, group="c"),  # wrong
        _pair(1, None, "parse_failure", "c"),
        _pair(1, 2, "parse_failure", "d"),  # a stale pred on a failed record must not be scored
        _pair(2, None, "api_error", "d"),
        _pair(2, None, "ok", "e"),  # ok without a usable pred is a parse failure
    ]
    s = summarize_pairwise(records, n_resamples=200)
    assert s["accuracy"] == pytest.approx(3 / 4)
    assert s["n_total"] == 8
    assert s["n_scored"] == 4
    assert s["parse_failures"] == 3
    assert s["api_failures"] == 1
    assert s["predicted_ties"] == 0
    assert s["coverage"] == pytest.approx(0.5)
    assert s["tie_policy"] == "wrong"
    assert s["accuracy_ci_low"] <= s["accuracy"] <= s["accuracy_ci_high"]


@pytest.mark.parametrize(("policy", "expected"), [("wrong", 0.5), ("half", 0.625), ("exclude", 2 / 3)])
def test_summarize_pairwise_applies_tie_policy(policy, expected):
    records = [_pair(1, 1, group="a"), _pair(2, 1, group="a"), _pair(1, 0, group="b"), _pair(2, 2, group="c")]
    records.append(_pair(1, None, "api_error", "d"))
    s = summarize_pairwise(records, tie_policy=policy, n_resamples=100)
    assert s["accuracy"] == pytest.approx(expected)
    assert s["predicted_ties"] == 1
    assert s["tie_policy"] == policy
    assert s["n_scored"] == 4 and s["coverage"] == pytest.approx(4 / 5)


def test_summarize_pairwise_pools_over_pairs_not_prompts():
    records = [_pair(1, 1, group="big")] * 3 + [_pair(1, 2, group="small")]
    s = summarize_pairwise(records, n_resamples=0)
    assert s["accuracy"] == pytest.approx(3 / 4)  # the per-prompt mean would be 0.5
    assert math.isnan(s["accuracy_ci_low"]) and math.isnan(s["accuracy_ci_high"])


def test_summarize_pairwise_ci_is_clustered_by_group():
    rng = np.random.default_rng(9)
    records = []
    for g in range(60):
        correct = bool(rng.random() < 0.7)
        for _ in range(10):  # all pairs of a prompt share the outcome
            label = int(rng.integers(1, 3))
            records.append(_pair(label, label if correct else 3 - label, group=f"g{g}"))
    s = summarize_pairwise(records, n_resamples=500, seed=3)
    labels = [r["label"] for r in records]
    preds = [r["pred"] for r in records]
    groups = [r["group"] for r in records]
    clustered = bootstrap_ci(pairwise_accuracy, labels, preds, groups=groups, n_resamples=500, seed=3)
    rows = bootstrap_ci(pairwise_accuracy, labels, preds, n_resamples=500, seed=3)
    assert (s["accuracy_ci_low"], s["accuracy_ci_high"]) == pytest.approx(clustered)
    assert (s["accuracy_ci_high"] - s["accuracy_ci_low"]) > 2 * (rows[1] - rows[0])
    assert s == summarize_pairwise(records, n_resamples=500, seed=3)


def test_summarize_pairwise_nothing_scored():
    s = summarize_pairwise([_pair(1, None, "api_error"), _pair(2, None, "parse_failure")])
    assert math.isnan(s["accuracy"]) and math.isnan(s["accuracy_ci_low"])
    assert s["n_scored"] == 0 and s["coverage"] == 0.0
    assert s["api_failures"] == 1 and s["parse_failures"] == 1
    empty = summarize_pairwise([])
    assert empty["n_total"] == 0 and math.isnan(empty["coverage"]) and math.isnan(empty["accuracy"])


def test_summarize_pairwise_rejects_unknown_status_and_policy():
    with pytest.raises(ValueError, match=r"records\[1\]"):
        summarize_pairwise([_pair(1, 1), _pair(1, 1, status="timeout")])
    with pytest.raises(ValueError, match="tie_policy"):
        summarize_pairwise([_pair(1, 1)], tie_policy="zero")  # type: ignore[arg-type]


def _point(target, pred, status="ok", group="p0"):
    return {"target": target, "pred": pred, "status": status, "group": group}


def test_summarize_pointwise_matches_scipy_on_scored_records():
    rng = np.random.default_rng(10)
    targets = rng.normal(size=120)
    preds = np.clip(np.round(5 + 2 * targets + rng.normal(size=120)), 1, 10)
    records = [
        _point(float(t), float(p), group=f"g{i // 3}")
        for i, (t, p) in enumerate(zip(targets, preds, strict=True))
    ]
    records += [
        _point(100.0, None, "parse_failure", "x"),
        _point(-100.0, 1.0, "api_error", "x"),  # would wreck the correlation if it were scored
        _point(50.0, None, "ok", "y"),
        _point(50.0, float("nan"), "ok", "y"),
    ]
    s = summarize_pointwise(records, n_resamples=300)
    assert s["pearson"] == pytest.approx(stats.pearsonr(targets, preds)[0], abs=1e-12)
    assert s["spearman"] == pytest.approx(stats.spearmanr(targets, preds)[0], abs=1e-12)
    assert s["kendall"] == pytest.approx(stats.kendalltau(targets, preds)[0], abs=1e-12)
    assert s["n_total"] == 124 and s["n_scored"] == 120
    assert s["parse_failures"] == 3 and s["api_failures"] == 1
    assert s["coverage"] == pytest.approx(120 / 124)
    assert s["pearson_ci_low"] < s["pearson"] < s["pearson_ci_high"]
    groups = [r["group"] for r in records[:120]]
    expected_ci = bootstrap_ci(pearson, targets, preds, groups=groups, n_resamples=300, seed=0)
    assert (s["pearson_ci_low"], s["pearson_ci_high"]) == pytest.approx(expected_ci)


def test_summarize_pointwise_too_few_scored():
    s = summarize_pointwise([_point(1.0, 2.0), _point(2.0, None, "api_error")], n_resamples=50)
    assert math.isnan(s["pearson"]) and math.isnan(s["spearman"]) and math.isnan(s["kendall"])
    assert math.isnan(s["pearson_ci_low"]) and math.isnan(s["pearson_ci_high"])
    assert s["n_scored"] == 1 and s["coverage"] == 0.5
