"""What a generation run produced and what it cost: ``report.json``, the printed table, ``operations.png`` and
``lengths.png``.

Query accounting follows REFERENCE.md section 3, where the paper's "5.73%" comes from: TeaMs-RL's dataset cost
two expert queries per example (one rewrite, one response: 17,878 x 2 = 35,756), against WizardLM's
Evol-Instruct at 52K seeds x 4 rounds x 3 queries (rewrite, response, elimination check) = 624,000. Ours
counts every instructor request (eliminated rewrites included) and every responder request, so
``expert_queries_per_example`` is at least 1 + (rewrites that became no example) / examples. The report
gives the ratio both ways: against Evol-Instruct run on the same seeds (12 queries per seed, 3 per example),
and against WizardLM's 624,000, the paper's own comparison.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from teamsrl_jax.fileio import atomic_write_bytes, atomic_write_json  # noqa: E402

if TYPE_CHECKING:
    from teamsrl_jax.generate.run import Generation

EVOL_ROUNDS = 4
"""Evolution rounds per seed in WizardLM's Evol-Instruct."""
EVOL_QUERIES_PER_ROUND = 3
"""Queries per round and seed in Evol-Instruct: the rewrite, the response, the elimination check."""
WIZARDLM_SEEDS = 52_000
WIZARDLM_QUERIES = WIZARDLM_SEEDS * EVOL_ROUNDS * EVOL_QUERIES_PER_ROUND  # 624,000
PAPER = {"examples": 17_878, "expert_queries": 35_756, "ratio_vs_wizardlm": 35_756 / WIZARDLM_QUERIES}


def _lengths(values: list[int]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "mean": None, "median": None, "p90": None, "max": None}
    x = np.asarray(values, float)
    return {"n": int(x.size), "mean": round(float(x.mean()), 2), "median": float(np.median(x)),
            "p90": float(np.percentile(x, 90)), "max": int(x.max())}


def build_report(gen: Generation) -> dict[str, Any]:
    """The report of a finished run (also written to ``report.json``, with the two plots)."""
    from teamsrl_jax.generate.run import DROP_REASONS

    instructor, responder = gen.roles["instructor"], gen.roles["responder"]
    expert = instructor.requests + responder.requests
    examples = gen.written
    evol_same_seeds = gen.seeds_used * EVOL_ROUNDS * EVOL_QUERIES_PER_ROUND
    names = list(gen.env.operations.names)
    report = {
        "examples": examples,
        "seeds": len(gen.seeds), "seeds_used": gen.seeds_used, "steps": gen.horizon,
        "rewrites": gen.rewrites, "sent_to_responder": responder.requests,
        "drops": {reason: gen.drops.get(reason, 0) for reason in DROP_REASONS},
        "operations_chosen_by_step": [{n: c.get(n, 0) for n in names} for c in gen.chosen],
        "examples_by_step": [{n: c.get(n, 0) for n in names} for c in gen.kept_ops],
        "requests": {role: dataclasses.asdict(counts) for role, counts in gen.roles.items()},
        "backend_accounting": {"instructor": gen.instructor.accounting.to_dict(),
                               "responder": gen.responder.accounting.to_dict()},
        "expert_queries": expert,
        "expert_queries_per_example": round(expert / examples, 4) if examples else None,
        "evol_instruct": {"queries_same_seeds": evol_same_seeds,
                          "queries_per_example": float(EVOL_QUERIES_PER_ROUND),
                          "wizardlm_queries": WIZARDLM_QUERIES},
        "ratio_vs_evol_instruct_same_seeds": round(expert / evol_same_seeds, 6) if evol_same_seeds else None,
        "ratio_vs_wizardlm": round(expert / WIZARDLM_QUERIES, 6),
        "paper": PAPER,
        "lengths": {"instruction_words": _lengths(gen.instruction_words),
                    "response_words": _lengths(gen.response_words)},
        "provenance": gen.provenance,
        "resumed_records": gen.resumed_records,
        "wall_time_s": round(gen.wall_time_s, 2),
    }
    atomic_write_json(gen.out / "report.json", report)
    plot_operations(report, gen.out / "operations.png")
    plot_lengths(gen.instruction_words, gen.response_words, gen.out / "lengths.png")
    return report


def format_report(report: dict[str, Any], data_path: str | os.PathLike) -> str:
    """The printed summary: examples, drops by reason, requests per role, the query ratios."""
    lines = [f"dataset: {report['examples']} examples from {report['seeds_used']} of {report['seeds']} seeds "
             f"({report['steps']} steps each) -> {data_path}"]
    drops = {k: v for k, v in report["drops"].items() if v}
    lines.append(f"rewrites: {report['rewrites']}, sent to the responder: {report['sent_to_responder']}, "
                 f"dropped: {sum(drops.values())}")
    for reason, count in drops.items():
        lines.append(f"  {reason:<22}{count:>8}")
    lines.append(f"{'role':<12}{'requests':>10}{'cache hits':>12}{'prompt tok':>12}{'completion tok':>16}")
    for role, r in report["requests"].items():
        lines.append(f"{role:<12}{r['requests']:>10}{r['cache_hits']:>12}{r['prompt_tokens']:>12}"
                     f"{r['completion_tokens']:>16}")
    per = report["expert_queries_per_example"]
    lines.append(f"expert queries: {report['expert_queries']} "
                 f"({'n/a' if per is None else f'{per:.2f}'} per example; Evol-Instruct: "
                 f"{report['evol_instruct']['queries_per_example']:.0f} per example, "
                 f"{EVOL_ROUNDS * EVOL_QUERIES_PER_ROUND} per seed)")
    same = report["ratio_vs_evol_instruct_same_seeds"]
    lines.append(f"vs Evol-Instruct on these seeds: {'n/a' if same is None else f'{100 * same:.1f}%'}; "
                 f"vs WizardLM's {WIZARDLM_QUERIES:,} queries: {100 * report['ratio_vs_wizardlm']:.3f}% "
                 f"(the paper: {100 * PAPER['ratio_vs_wizardlm']:.2f}% for {PAPER['examples']:,} examples)")
    return "\n".join(lines)


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_operations(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Operation mix per step: shares of the operations chosen, and examples written per operation."""
    path = Path(path)
    chosen, kept = report["operations_chosen_by_step"], report["examples_by_step"]
    names = list(chosen[0]) if chosen else []
    steps = np.arange(1, len(chosen) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, rows, ylabel in ((ax1, chosen, "share of chosen operations"), (ax2, kept, "examples written")):
        counts = np.array([[r[n] for n in names] for r in rows], float).reshape(len(rows), len(names))
        values = counts / np.maximum(counts.sum(1, keepdims=True), 1) if ax is ax1 else counts
        bottom = np.zeros(len(rows))
        for j, name in enumerate(names):
            ax.bar(steps, values[:, j], bottom=bottom, label=name, color=f"C{j}")
            bottom += values[:, j]
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_xticks(steps)
        ax.grid(axis="y", alpha=0.3)
    ax1.set_ylim(0, 1)
    ax1.set_title("operations chosen per step")
    ax2.set_title(f"examples per step ({report['examples']} in all)")
    if names:
        ax2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    _save(fig, path)
    return path


def plot_lengths(instruction_words: list[int], response_words: list[int], path: str | os.PathLike) -> Path:
    """Histograms of instruction and response lengths (words) of the written examples."""
    path = Path(path)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, values, title in ((axes[0], instruction_words, "instruction"), (axes[1], response_words, "response")):
        if values:
            ax.hist(values, bins=min(40, max(5, len(set(values)))), color="C0", alpha=0.85)
            ax.axvline(float(np.median(values)), color="C3", lw=1.5, label=f"median {np.median(values):.0f}")
            ax.legend()
        ax.set_title(f"{title} length ({len(values)} examples)")
        ax.set_xlabel("words")
        ax.set_ylabel("examples")
        ax.grid(alpha=0.3)
    _save(fig, path)
    return path
