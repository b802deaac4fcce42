"""The run's picture: reward over training and how often each operation was chosen, from ``metrics.jsonl``."""

from __future__ import annotations

import io
import os
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
