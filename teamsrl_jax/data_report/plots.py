"""The report's figures, rendered to PNG bytes (written by the caller, atomically, once all are made).

``lengths``: box plots of instruction and output lengths per dataset (box: quartiles, whiskers: p10 and p90
as in the table, triangle: mean). ``diversity``: distinct-1/2/3 and the near-duplicate rate per dataset.
``complexity``: mean count and share with at least one, per proxy and dataset. ``operations``: per dataset
with provenance, the operation shares over all its records and per step.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from teamsrl_jax.data_report.complexity import PROXIES  # noqa: E402
from teamsrl_jax.data_report.report import PROXY_LABELS  # noqa: E402


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _name_ticks(ax: Any, names: list[str]) -> None:
    ax.set_xticks(np.arange(1, len(names) + 1))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)


def plot_lengths(names: list[str], instruction_words: list[list[int]], output_words: list[list[int]]) -> bytes:
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.6 * len(names)), 4.2), constrained_layout=True)
    for ax, values, title in ((axes[0], instruction_words, "instruction (+input)"), (axes[1], output_words, "output")):
        present = [j for j, v in enumerate(values) if v]
        if present:
            ax.boxplot([values[j] for j in present], positions=[j + 1 for j in present], whis=(10, 90),
                       showfliers=False, showmeans=True, widths=0.6)
        for j, v in enumerate(values):
            if not v:
                ax.text(j + 1, 0.5, "none", transform=ax.get_xaxis_transform(), ha="center", color="0.5")
        ax.set_xlim(0.4, len(names) + 0.6)
        _name_ticks(ax, names)
        ax.set_title(f"{title} length")
        ax.set_ylabel("words")
        ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _grouped_bars(ax: Any, groups: list[str], names: list[str], values: np.ndarray, percent: bool) -> None:
    """Bars of values [datasets, groups]: one cluster per group, one bar (colour) per dataset."""
    width = 0.8 / len(names)
    x = np.arange(len(groups))
    for i, name in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * width, np.nan_to_num(values[i]), width, label=name, color=f"C{i}")
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.grid(axis="y", alpha=0.3)
    if percent:
        ax.set_ylim(0, 1)


def plot_diversity(stats: list[dict[str, Any]]) -> bytes:
    names = [s["name"] for s in stats]
    groups = ["distinct-1", "distinct-2", "distinct-3", "near-duplicates"]
    values = np.array([[s["distinct_1"], s["distinct_2"], s["distinct_3"], s["near_duplicates"]["rate"]]
                       for s in stats], float)
    fig, ax = plt.subplots(figsize=(max(7, 3 + 0.5 * len(names) * len(groups)), 4), constrained_layout=True)
    _grouped_bars(ax, groups, names, values, percent=True)
    ax.set_ylabel("share")
    ax.set_title("lexical diversity of instructions, and near-duplicate rate")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig)


def plot_complexity(stats: list[dict[str, Any]]) -> bytes:
    names = [s["name"] for s in stats]
    groups = [PROXY_LABELS[k] for k in PROXIES]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.2), constrained_layout=True)
    for ax, field, ylabel in ((ax1, "mean", "mean count per instruction"), (ax2, "share", "share with at least one")):
        values = np.array([[s["complexity"][k][field] for k in PROXIES] for s in stats], float)
        _grouped_bars(ax, groups, names, values, percent=field == "share")
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelsize=8)
    ax1.set_title("complexity proxies")
    ax2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig)


def plot_operations(stats: list[dict[str, Any]]) -> bytes:
    """One panel per dataset with provenance: stacked operation shares over all records, then per step."""
    tagged = [s for s in stats if s["operations"]]
    ops = list(dict.fromkeys(op for s in tagged for op in s["operations"]["share"]))
    fig, axes = plt.subplots(len(tagged), 1, figsize=(9, 3.2 * len(tagged)), constrained_layout=True, squeeze=False)
    for ax, s in zip(axes[:, 0], tagged):
        mix = s["operations"]
        columns = [("all", mix["share"], mix["records"])] + [
            (f"step {step}", m["share"], m["records"]) for step, m in mix["by_step"].items()]
        x = np.arange(len(columns))
        bottom = np.zeros(len(columns))
        for j, op in enumerate(ops):
            share = np.array([c[1].get(op, 0.0) for c in columns])
            ax.bar(x, share, bottom=bottom, label=op, color=f"C{j}")
            bottom += share
        ax.set_xticks(x)
        ax.set_xticklabels([f"{label}\n({n})" for label, _, n in columns], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of records")
        ax.set_title(f"{s['name']}: operation mix ({mix['records']} records with provenance)")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig)
