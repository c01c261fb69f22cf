"""``metrics.bradley_terry`` against an independent computation: the Bradley-Terry log-likelihood of the same
win matrix maximised here with ``scipy.optimize.minimize`` (not choix), after the same normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from lmms_eval_autorater.metrics.bradley_terry import (
    ELO_SCALE,
    bootstrap_ratings,
    comparisons_from_matrix,
    fit_matrix,
    fit_ratings,
    win_matrix,
)


def scipy_bt(wins: np.ndarray, prior: float = 0.0) -> np.ndarray:
    """argmax of sum_ij W_ij log sigmoid(t_i - t_j), with prior/2 virtual wins each way per pair, mean 0."""
    n = wins.shape[0]
    mat = np.asarray(wins, dtype=float) + (prior / 2.0) * (1.0 - np.eye(n))

    def nll(t):
        d = t[:, None] - t[None, :]
        return float(np.sum(mat * np.logaddexp(0.0, -d)))

    def grad(t):
        p = 1.0 / (1.0 + np.exp(t[:, None] - t[None, :]))  # p[i, j] = P(j beats i)
        g = -(mat * p).sum(axis=1) + (mat * p).sum(axis=0)
        return g

    res = minimize(nll, np.zeros(n), jac=grad, method="BFGS", options={"gtol": 1e-12, "maxiter": 10_000})
    return res.x - res.x.mean()


def random_wins(seed: int, n: int, high: int = 9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.integers(1, high, size=(n, n))  # every entry >= 1: strongly connected, the MLE exists
    np.fill_diagonal(w, 0)
    return w


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("prior", [0.0, 1.0])
def test_matches_scipy_maximum_likelihood(seed, prior):
    wins = random_wins(seed, 3 + seed)
    got = fit_ratings(wins.shape[0], comparisons_from_matrix(wins), prior=prior)
    np.testing.assert_allclose(got, scipy_bt(wins, prior), atol=1e-4)
    assert abs(got.mean()) < 1e-12
    np.testing.assert_allclose(fit_matrix(wins, prior=prior), got, atol=1e-12)


def test_ties_count_half_each_way_or_are_dropped():
    rng = np.random.default_rng(5)
    ij, outcome = rng.integers(0, 4, (2, 200)), rng.integers(0, 3, 200)
    comps = [(int(i), int(j), int(o)) for i, j, o in zip(*ij, outcome) if i != j]
    half = win_matrix(4, comps)
    drop = win_matrix(4, comps, ties="drop")
    n_ties = sum(o == 0 for *_, o in comps)
    assert half.sum() == len(comps) and drop.sum() == len(comps) - n_ties
    np.testing.assert_allclose(half - drop, (half - drop).T)  # ties are symmetric
    np.testing.assert_allclose(fit_ratings(4, comps), scipy_bt(half, 1.0), atol=1e-4)
    np.testing.assert_allclose(fit_ratings(4, comps, ties="drop"), scipy_bt(drop, 1.0), atol=1e-4)
    # outcome 2 is the mirror of outcome 1
    assert np.array_equal(win_matrix(3, [(0, 1, 2)]), win_matrix(3, [(1, 0, 1)]))


def test_strongly_ordered_matrix_gives_the_known_order_and_elo_scale():
    n = 5
    strength = np.arange(n)[::-1]  # item 0 strongest
    wins = np.zeros((n, n), dtype=int)
    for i in range(n):
        for j in range(n):
            if i != j:
                wins[i, j] = 20 if strength[i] > strength[j] else 1
    ratings = fit_ratings(n, comparisons_from_matrix(wins), scale=ELO_SCALE)
    assert list(np.argsort(-ratings)) == list(range(n))
    np.testing.assert_allclose(ratings, ELO_SCALE * fit_ratings(n, comparisons_from_matrix(wins)), atol=1e-9)


def test_undefeated_item_needs_the_prior():
    wins = np.array([[0, 3, 4], [0, 0, 2], [0, 1, 0]])  # item 0 never loses: no finite MLE
    with pytest.raises(ValueError, match="not strongly connected"):
        fit_matrix(wins, prior=0.0)
    ratings = fit_matrix(wins, prior=1.0)
    assert np.all(np.isfinite(ratings)) and np.argmax(ratings) == 0
    np.testing.assert_allclose(ratings, scipy_bt(wins, 1.0), atol=1e-4)
    # an item never compared sits at the others' mean pull: finite, at 0 by symmetry here
    alone = fit_ratings(3, [(0, 1, 1), (1, 0, 1)])
    assert alone[2] == pytest.approx(0.0, abs=1e-9)


def test_bootstrap_cis_contain_the_estimate_and_are_seeded():
    rng = np.random.default_rng(3)
    true = np.array([1.0, 0.3, 0.0, -1.2])
    comps, groups = [], []
    for prompt in range(40):
        for i in range(4):
            for j in range(i + 1, 4):
                p = 1.0 / (1.0 + np.exp(-(true[i] - true[j])))
                comps.append((i, j, 1 if rng.random() < p else 2))
                groups.append(f"p{prompt}")
    point = fit_ratings(4, comps)
    low, high = bootstrap_ratings(4, comps, groups, n_resamples=200, seed=7)
    assert np.all(low <= point) and np.all(point <= high) and np.all(low < high)
    again = bootstrap_ratings(4, comps, groups, n_resamples=200, seed=7)
    assert np.array_equal(low, again[0]) and np.array_equal(high, again[1])
    other = bootstrap_ratings(4, comps, groups, n_resamples=200, seed=8)
    assert not np.array_equal(low, other[0])
    # ungrouped (comparisons resampled) is a different, also seeded, bootstrap
    flat = bootstrap_ratings(4, comps, n_resamples=200, seed=7)
    assert np.all(flat[0] <= point) and np.all(point <= flat[1])
    # scaling the ratings scales the interval
    elo = bootstrap_ratings(4, comps, groups, n_resamples=200, seed=7, scale=ELO_SCALE)
    np.testing.assert_allclose(elo[0], ELO_SCALE * low, atol=1e-6)


def test_bootstrap_by_group_matches_a_by_hand_resample():
    """One resample drawn by hand with the same generator reproduces the function's refit."""
    comps = [(0, 1, 1), (0, 1, 2), (1, 2, 1), (0, 2, 0), (2, 0, 2), (1, 2, 2)]
    groups = ["a", "a", "b", "b", "c", "c"]
    low, high = bootstrap_ratings(3, comps, groups, n_resamples=1, seed=11)
    drawn = np.random.default_rng(11).integers(0, 3, size=3)
    picked = [c for g in drawn for c, grp in zip(comps, groups) if grp == "abc"[g]]
    np.testing.assert_allclose(low, fit_ratings(3, picked), atol=1e-6)
    np.testing.assert_allclose(high, low)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="out of range"):
        fit_ratings(2, [(0, 2, 1)])
    with pytest.raises(ValueError, match="itself"):
        fit_ratings(2, [(1, 1, 1)])
    with pytest.raises(ValueError, match="outcome"):
        fit_ratings(2, [(0, 1, 3)])
    with pytest.raises(ValueError, match="ties"):
        fit_ratings(2, [(0, 1, 1)], ties="wrong")
    with pytest.raises(ValueError, match="groups"):
        bootstrap_ratings(2, [(0, 1, 1)], ["a", "b"])
    assert fit_ratings(1, []).tolist() == [0.0]
    low, high = bootstrap_ratings(2, [])
    assert np.isnan(low).all() and np.isnan(high).all()
