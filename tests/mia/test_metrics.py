"""ROC AUC (Mann–Whitney with ties), the ROC curve, TPR at low FPR (MIMIR's rule) and the bootstrap
intervals: hand cases, two Gaussians of known separation, and sklearn where installed."""

import math

import numpy as np
import pytest

from teamsrl_jax.mia.metrics import (LOW_FPRS, average_ranks, bootstrap, evaluate, point_metrics, roc_auc,
                                     roc_curve, tpr_at_fpr)


def gaussian_scores(n: int, d: float, seed: int):
    rng = np.random.default_rng(seed)
    return rng.normal(d, 1.0, n), rng.normal(0.0, 1.0, n)


def phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])), [4, 1, 4, 2, 4])


@pytest.mark.parametrize("members, nonmembers, want", [
    ([3, 2], [1], 1.0),
    ([1], [2, 3], 0.0),
    ([1, 2], [1, 0], 3.5 / 4),  # one member-nonmember tie counts a half
    ([5, 5], [5, 5, 5], 0.5),  # all tied
    ([2, 0], [1, 1], 0.5),
])
def test_auc_hand_cases(members, nonmembers, want):
    assert roc_auc(members, nonmembers) == pytest.approx(want, abs=1e-15)


def test_auc_of_two_gaussians_is_phi_of_d_over_sqrt2():
    members, nonmembers = gaussian_scores(4000, 1.0, seed=0)
    want = phi(1.0 / math.sqrt(2))  # 0.7602
    assert roc_auc(members, nonmembers) == pytest.approx(want, abs=0.015)  # ~3 standard errors


def test_auc_is_the_area_under_the_roc_curve():
    rng = np.random.default_rng(1)
    members, nonmembers = rng.integers(0, 8, 50).astype(float), rng.integers(0, 6, 70).astype(float)  # many ties
    for drop in (True, False):
        fpr, tpr, _ = roc_curve(members, nonmembers, drop_intermediate=drop)
        assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(members, nonmembers), abs=1e-12)


def test_tpr_at_low_fpr_hand_cases():
    nonmembers = np.arange(1000.0)
    members = np.array([999.5, 995.5, 990.5, 989.5])
    m = point_metrics(members, nonmembers)
    # FPR < 1%: at most 9 of 1000 nonmembers above the threshold -> threshold 990.5 finds 3 of 4
    assert m["tpr_at_1pct_fpr"] == 0.75
    # FPR < 0.1%: no nonmember above the threshold -> only 999.5
    assert m["tpr_at_0.1pct_fpr"] == 0.25
    # fewer than 100 nonmembers: only FPR 0 qualifies, even for the 1% bound
    small = point_metrics(np.array([10.0, 9.0, 5.0]), np.array([9.5, 1.0, 0.0]))
    assert small["tpr_at_1pct_fpr"] == pytest.approx(1 / 3)
    # a tie at the top between a member and a nonmember: its threshold already has FPR > 0
    assert point_metrics(np.array([7.0, 1.0]), np.array([7.0, 0.0]))["tpr_at_1pct_fpr"] == 0.0
    # perfect separation
    assert point_metrics(np.array([3.0, 4.0]), np.array([1.0, 2.0]))["tpr_at_0.1pct_fpr"] == 1.0


def test_roc_curve_points():
    fpr, tpr, thr = roc_curve([0.9, 0.4], [0.5, 0.1])
    np.testing.assert_array_equal(thr, [np.inf, 0.9, 0.5, 0.4, 0.1])
    np.testing.assert_array_equal(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(tpr, [0, 0.5, 0.5, 1, 1])


def test_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    for trial in range(20):
        n_m, n_n = rng.integers(1, 300, 2)
        ties = trial % 2 == 0
        members = rng.normal(0.5, 1, n_m)
        nonmembers = rng.normal(0, 1, n_n)
        if ties:
            members, nonmembers = np.round(members, 1), np.round(nonmembers, 1)
        labels = np.r_[np.ones(n_m), np.zeros(n_n)]
        scores = np.r_[members, nonmembers]
        assert roc_auc(members, nonmembers) == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)
        for drop in (True, False):
            ours = roc_curve(members, nonmembers, drop_intermediate=drop)
            theirs = sk.roc_curve(labels, scores, drop_intermediate=drop)
            for a, b in zip(ours, theirs):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)
        # MIMIR's rule, literally, on sklearn's curve (run.py compute_metrics_from_scores)
        fpr, tpr, _ = sk.roc_curve(labels, scores)
        for key, bound in LOW_FPRS.items():
            assert point_metrics(members, nonmembers)[key] == tpr[np.where(np.array(fpr) < bound)[0][-1]]
            assert tpr_at_fpr(fpr, tpr, bound) == point_metrics(members, nonmembers)[key]


def test_bootstrap_is_seeded_and_its_interval_covers_the_truth():
    members, nonmembers = gaussian_scores(300, 1.0, seed=3)
    a = evaluate(members, nonmembers, rounds=400, seed=7)
    b = evaluate(members, nonmembers, rounds=400, seed=7)
    c = evaluate(members, nonmembers, rounds=400, seed=8)
    assert a == b and a["auc_ci95"] != c["auc_ci95"]
    lo, hi = a["auc_ci95"]
    assert lo < phi(1 / math.sqrt(2)) < hi and lo < a["auc"] < hi
    # the interval's width matches the AUC's standard error (Hanley & McNeil) within 25%
    auc, n = a["auc"], 300
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    se = math.sqrt((auc * (1 - auc) + (n - 1) * (q1 - auc ** 2) + (n - 1) * (q2 - auc ** 2)) / n ** 2)
    assert (hi - lo) / (2 * 1.96 * se) == pytest.approx(1.0, rel=0.25)
    for key in LOW_FPRS:
        lo, hi = a[f"{key}_ci95"]
        assert 0 <= lo <= a[key] <= hi <= 1
    assert (a["n_members"], a["n_nonmembers"], a["dropped_nonfinite"]) == (300, 300, 0)


def test_bootstrap_resamples_each_class_to_its_own_size():
    seen = []
    bootstrap(np.arange(5.0), np.arange(3.0) + 10, lambda m, n: seen.append((m, n)) or {"x": 0.0}, rounds=3, seed=0)
    assert all(len(m) == 5 and len(n) == 3 and set(m) <= set(range(5)) and set(n) <= {10, 11, 12} for m, n in seen)


def test_evaluate_drops_non_finite_scores():
    out = evaluate([2.0, np.nan, 3.0], [1.0, -np.inf], rounds=0)
    assert (out["n_members"], out["n_nonmembers"], out["dropped_nonfinite"]) == (2, 1, 2)
    assert out["auc"] == 1.0 and "auc_ci95" not in out
    assert evaluate([np.nan], [1.0], rounds=10)["auc"] is None
