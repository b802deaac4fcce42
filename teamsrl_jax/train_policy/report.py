"""The run's report from ``metrics.jsonl``: the picture (reward over training, how often each operation was
chosen), what the rewrites became per iteration (kept, eliminated by reason, reviews that gave a score and
how), and the held-out comparison as text."""

from __future__ import annotations

import io
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from teamsrl_jax.fileio import atomic_write_bytes  # noqa: E402


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if len(x) < width or width <= 1:
        return x
    kernel = np.ones(width) / width
    head = np.array([x[: i + 1].mean() for i in range(width - 1)])
    return np.concatenate([head, np.convolve(x, kernel, mode="valid")])


def plot_training(rows: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Two panels: episode return per iteration (raw and smoothed), and operation shares per iteration."""
    path = Path(path)
    it = np.array([r["iteration"] for r in rows])
    ret = np.array([r["episode_return"] for r in rows], float)
    names = list(rows[0]["operations"]) if rows else []
    counts = np.array([[r["operations"][n] for n in names] for r in rows], float).reshape(len(rows), len(names))
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    width = max(1, len(rows) // 10)

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, constrained_layout=True)
    ax1.plot(it, ret, color="0.7", lw=1, label="per iteration")
    ax1.plot(it, _smooth(ret, width), color="C0", lw=2, label=f"moving mean ({width})")
    ax1.set_ylabel("mean episode return")
    ax1.legend(loc="lower right")
    ax1.grid(alpha=0.3)
    ax1.set_title(title or "policy training")
    if len(names):
        ax2.stackplot(it, _smooth_columns(shares, width).T, labels=names, alpha=0.85)
        ax2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("share of chosen operations")
    ax2.set_xlabel("iteration")
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:] or None, dpi=110)   # format from the suffix, as savefig(path)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _smooth_columns(x: np.ndarray, width: int) -> np.ndarray:
    return np.stack([_smooth(x[:, j], width) for j in range(x.shape[1])], axis=1) if x.size else x


def format_comparison(comparison: dict[str, dict[str, Any]]) -> str:
    """A text table of the held-out comparison, best first."""
    lines = [f"{'policy':<34}{'mean return':>12}{'95% CI':>22}{'n':>6}"]
    for name, s in sorted(comparison.items(), key=lambda kv: -kv[1]["mean"]):
        lo, hi = s["ci95"]
        lines.append(f"{name:<34}{s['mean']:>12.4f}{f'[{lo:.4f}, {hi:.4f}]':>22}{s['n']:>6}")
    return "\n".join(lines)


REWRITE_FIELDS = ("rewrites", "kept_fraction", "eliminated", "reviews", "review_scored_fraction", "scored_by")
"""The fields of a metrics row that say what the rewrites became (``rollout.rewrite_stats``)."""


def _pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rewrite fields of several iterations (at least one) together: counts added, shares recomputed."""
    rewrites, reviews = sum(r["rewrites"] for r in rows), sum(r["reviews"] for r in rows)
    eliminated, scored_by = Counter(), Counter()
    for r in rows:
        eliminated.update(r["eliminated"])
        scored_by.update(r["scored_by"])
    scored = sum(scored_by.values())
    return {"rewrites": rewrites, "kept_fraction": reviews / rewrites if rewrites else 0.0,
            "eliminated": {k: eliminated[k] for k in dict.fromkeys([*rows[0]["eliminated"], *eliminated])},
            "reviews": reviews, "review_scored_fraction": scored / reviews if reviews else None,
            "scored_by": dict(scored_by)}


def rewrite_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """For summary.json: ``per_iteration`` (each row's rewrite fields) and ``total``. Rows logged before these
    fields existed (a run resumed across versions) are left out."""
    rows = [r for r in rows if all(k in r for k in REWRITE_FIELDS)]
    return {"per_iteration": [{"iteration": r["iteration"], **{k: r[k] for k in REWRITE_FIELDS}} for r in rows],
            "total": _pooled(rows) if rows else None}


def _share(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"


def format_rewrites(rows: list[dict[str, Any]], max_lines: int = 20) -> str:
    """A text table of what the rewrites became: one line per iteration, or per range of iterations when there
    are more than ``max_lines``, and a total line. Columns: rewrites, share kept, eliminations for each reason
    that occurred, reviews, share of reviews that gave a score, and how many of those came from the token
    probabilities and from the text."""
    rows = [r for r in rows if all(k in r for k in REWRITE_FIELDS)]
    if not rows:
        return "rewrites: none logged"
    size = -(-len(rows) // max_lines)
    groups = [rows[i:i + size] for i in range(0, len(rows), size)]
    lines = [(str(g[0]["iteration"]) if len(g) == 1 else f"{g[0]['iteration']}-{g[-1]['iteration']}", _pooled(g))
             for g in groups] + [("total", _pooled(rows))]
    reasons = [k for k in lines[-1][1]["eliminated"] if lines[-1][1]["eliminated"][k]]
    widths = [max(len(k), 5) + 2 for k in reasons]
    head = (f"{'iteration':<11}{'rewrites':>9}{'kept':>8}" + "".join(f"{k:>{w}}" for k, w in zip(reasons, widths))
            + f"{'reviews':>9}{'scored':>8}{'logprobs':>10}{'text':>6}")
    out = ["rewrites per iteration: kept, eliminated by reason, reviews that gave a score (from logprobs / text)",
           head]
    for label, t in lines:
        out.append(f"{label:<11}{t['rewrites']:>9}{_share(t['kept_fraction']):>8}"
                   + "".join(f"{t['eliminated'].get(k, 0):>{w}}" for k, w in zip(reasons, widths))
                   + f"{t['reviews']:>9}{_share(t['review_scored_fraction']):>8}"
                   f"{t['scored_by'].get('logprobs', 0):>10}{t['scored_by'].get('text', 0):>6}")
    return "\n".join(out)
