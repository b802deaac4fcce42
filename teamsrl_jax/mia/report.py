"""The printed table and ``roc.png`` of a membership-inference run."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from teamsrl_jax.fileio import atomic_write_bytes  # noqa: E402
from teamsrl_jax.mia.metrics import roc_curve  # noqa: E402
from teamsrl_jax.mia.scores import SCORE_LABELS  # noqa: E402


def _with_ci(result: dict, key: str) -> str:
    value, ci = result.get(key), result.get(f"{key}_ci95")
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def format_table(metrics: dict[str, dict]) -> str:
    """One row per score: AUC, TPR at 1% and 0.1% FPR, each with its 95% interval."""
    head = f"{'score':<11}{'AUC [95% CI]':<26}{'TPR@1%FPR [95% CI]':<26}{'TPR@0.1%FPR [95% CI]':<26}{'n':>11}"
    lines = [head, "-" * len(head)]
    for name, r in metrics.items():
        counts = f"{r['n_members']} / {r['n_nonmembers']}"
        lines.append(f"{SCORE_LABELS.get(name, name):<11}{_with_ci(r, 'auc'):<26}{_with_ci(r, 'tpr_at_1pct_fpr'):<26}"
                     f"{_with_ci(r, 'tpr_at_0.1pct_fpr'):<26}{counts:>11}")
    lines.append("scores are oriented higher = member; TPR at FPR a: the best TPR with FPR strictly below a")
    return "\n".join(lines)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], metrics: dict[str, dict],
             path: str | os.PathLike) -> Path:
    """ROC curves of every score on linear axes and on a log-scale FPR axis (where low-FPR TPR is read)."""
    path = Path(path)
    fig, (lin, log) = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    min_fpr = 1.0
    for j, (name, (members, nonmembers)) in enumerate(curves.items()):
        members, nonmembers = members[np.isfinite(members)], nonmembers[np.isfinite(nonmembers)]
        fpr, tpr, _ = roc_curve(members, nonmembers, drop_intermediate=False)
        auc = metrics[name]["auc"]
        label = f"{SCORE_LABELS.get(name, name)} (AUC {auc:.3f})" if auc is not None else name
        for ax in (lin, log):
            ax.step(fpr, tpr, where="post", color=f"C{j}", label=label)
        if len(nonmembers):
            min_fpr = min(min_fpr, 1.0 / len(nonmembers))
    grid = np.geomspace(min(min_fpr / 2, 1e-3), 1, 200)
    lin.plot([0, 1], [0, 1], "k:", lw=1, label="chance")
    log.plot(grid, grid, "k:", lw=1)
    log.set_xscale("log")
    log.set_yscale("log")
    log.set_xlim(grid[0], 1)
    log.set_ylim(grid[0], 1.05)
    for ax, title in ((lin, "ROC"), (log, "ROC, log scale (low FPR)")):
        ax.set_xlabel("false positive rate (nonmembers called members)")
        ax.set_ylabel("true positive rate (members found)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    lin.legend(loc="lower right", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
