"""How well a score separates members from nonmembers: ROC AUC, TPR at low FPR, bootstrap intervals.

Every score is oriented HIGHER = MORE LIKELY A MEMBER; members are the positive class.

* **ROC AUC**: the Mann–Whitney statistic U / (n_members * n_nonmembers) with average ranks, so a tie
  between a member and a nonmember counts 1/2. It equals the trapezoidal area under the ROC curve that
  MIMIR reports (``sklearn.metrics.auc(*roc_curve(...))`` in ``mimir/attacks/attack_utils.py``).
* **ROC curve**: the points ``sklearn.metrics.roc_curve`` gives: one threshold per distinct score,
  descending (an example is called a member when its score >= the threshold), the point (0, 0) with
  threshold +inf first, and with ``drop_intermediate`` the collinear points in between dropped.
* **TPR at FPR a**: MIMIR's rule (``run.py``, ``tpr[np.where(fpr < a)[0][-1]]``): the TPR of the last ROC
  point whose FPR is strictly below ``a``, i.e. the best TPR a threshold reaches while fewer than a share
  ``a`` of the nonmembers are called members. No interpolation: with fewer than ``1 / a`` nonmembers only
  FPR 0 qualifies.
* **Bootstrap 95% intervals**: ``rounds`` resamples, members and nonmembers each drawn with replacement to
  their own size (stratified, so both classes are always present), the statistic recomputed on each, and
  the 2.5th and 97.5th percentiles (numpy's linear interpolation). Seeded; every score sees the same
  resamples. MIMIR instead bootstraps only the AUC, with ``scipy.stats.bootstrap`` (BCa) over the pooled,
  unstratified (score, label) pairs.
* Non-finite scores (MIMIR drops NaNs; a Min-K%++ token whose next-token distribution has zero spread
  gives one) are left out of that score's metrics and counted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LOW_FPRS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}  # result key -> FPR bound


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` ascending, tied values sharing the mean of their ranks."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[True, xs[1:] != xs[:-1]]
    first = np.flatnonzero(starts)
    counts = np.diff(np.r_[first, len(x)])
    ranks = np.empty(len(x))
    ranks[order] = (first + (counts + 1) / 2.0)[np.cumsum(starts) - 1]
    return ranks


def roc_auc(members, nonmembers) -> float:
    """P(member score > nonmember score) + P(equal) / 2, from the rank sum (Mann–Whitney U)."""
    m, n = np.asarray(members, np.float64), np.asarray(nonmembers, np.float64)
    if not len(m) or not len(n):
        raise ValueError("ROC AUC needs at least one member and one nonmember score")
    rank_sum = average_ranks(np.concatenate([m, n]))[: len(m)].sum()
    return float((rank_sum - len(m) * (len(m) + 1) / 2.0) / (len(m) * len(n)))


def roc_curve(members, nonmembers, *, drop_intermediate: bool = True):
    """(fpr, tpr, thresholds) exactly as ``sklearn.metrics.roc_curve(labels, scores)`` with members = 1."""
    scores = np.concatenate([np.asarray(members, np.float64), np.asarray(nonmembers, np.float64)])
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, labels = scores[order], labels[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # one threshold per distinct score
    tps = np.cumsum(labels)[last_of_value]
    fps = 1 + last_of_value - tps
    thresholds = scores[last_of_value]
    if drop_intermediate and len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps, thresholds = np.r_[0, fps], np.r_[0, tps], np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """TPR of the last ROC point with FPR < ``max_fpr`` (MIMIR's rule; the first point is (0, 0))."""
    return float(tpr[np.flatnonzero(np.asarray(fpr) < max_fpr)[-1]])


def point_metrics(members, nonmembers) -> dict[str, float]:
    """AUC and the TPRs at the ``LOW_FPRS``."""
    fpr, tpr, _ = roc_curve(members, nonmembers)
    return {"auc": roc_auc(members, nonmembers)} | {k: tpr_at_fpr(fpr, tpr, a) for k, a in LOW_FPRS.items()}


def bootstrap(members, nonmembers, statistic: Callable[[np.ndarray, np.ndarray], dict[str, float]], *,
              rounds: int, seed: int) -> dict[str, np.ndarray]:
    """``{key: [rounds] values}`` of ``statistic`` over stratified resamples drawn from ``default_rng(seed)``."""
    m, n = np.asarray(members, np.float64), np.asarray(nonmembers, np.float64)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(rounds):
        values = statistic(m[rng.integers(0, len(m), len(m))], n[rng.integers(0, len(n), len(n))])
        for key, value in values.items():
            draws.setdefault(key, []).append(value)
    return {key: np.asarray(v) for key, v in draws.items()}


def evaluate(members, nonmembers, *, rounds: int = 1000, seed: int = 0) -> dict:
    """AUC and TPRs at low FPR with their bootstrap 95% intervals (``*_ci95``; omitted when ``rounds`` is 0),
    on the finite scores; ``n_members`` / ``n_nonmembers`` count those, ``dropped_nonfinite`` the rest."""
    m, n = np.asarray(members, np.float64), np.asarray(nonmembers, np.float64)
    m_ok, n_ok = m[np.isfinite(m)], n[np.isfinite(n)]
    out: dict = {"n_members": len(m_ok), "n_nonmembers": len(n_ok),
                 "dropped_nonfinite": int(len(m) - len(m_ok) + len(n) - len(n_ok))}
    if not len(m_ok) or not len(n_ok):
        return out | {"auc": None} | dict.fromkeys(LOW_FPRS)  # nothing to rank (every score non-finite)
    out |= point_metrics(m_ok, n_ok)
    if rounds > 0:
        for key, values in bootstrap(m_ok, n_ok, point_metrics, rounds=rounds, seed=seed).items():
            out[f"{key}_ci95"] = [float(v) for v in np.percentile(values, [2.5, 97.5])]
    return out
