"""The side-by-side table (Markdown, one column per dataset) and the JSON report of several datasets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from teamsrl_jax.data_report import complexity
from teamsrl_jax.data_report.config import ReportConfig

TEXT = "the instruction, plus a blank line and the input when there is one"
WORDS = "teamsrl_jax.env.text.words: lower-cased runs of [a-z0-9] with an optional apostrophe suffix (don't)"
ROUGE_TOKENS = "rouge_score's: lower-cased runs of [a-z0-9]"


def settings(cfg: ReportConfig) -> dict[str, Any]:
    """The settings and every rule behind the figures, for report.json."""
    return {
        **dataclasses.asdict(cfg),
        "instruction_text": TEXT,
        "tokenisation": {"lengths_and_distinct_n": WORDS, "near_duplicates": ROUGE_TOKENS},
        "percentiles": "numpy.percentile, linear interpolation",
        "distinct_n": "distinct n-grams / all n-grams over the instructions; none span two instructions",
        "near_duplicates": "share of instructions generate.dedup.NearDuplicateFilter drops in file order "
                           f"(ROUGE-L F >= {cfg.dedup_threshold} against a kept one; token order fitted on the "
                           "dataset itself)",
        "complexity": {
            "constraints": complexity.CONSTRAINT_CUES,
            "reasoning": {**complexity.REASONING_CUES,
                          "numbered list": "1 when item markers 1 and 2 (1. / 1) / (1)) start a line or follow "
                                           "a space, 1 before 2"},
            "structured": "1 when env.text.has_structured_input (markdown table, fenced code, JSON); two lines "
                          "that look like code; two consecutive delimited rows (',', '|' or tab; the same 2+ "
                          "fields of 1-3 words; no sentence end); a bracketed list of 3+ numbers; or XML/HTML "
                          "(an element with its closing tag)",
            "questions": "runs of '?'",
            "summary": "mean count per instruction, and share of instructions with at least one",
        },
    }


def _rounded(x: Any, digits: int = 6) -> Any:
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: _rounded(v, digits) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v, digits) for v in x]
    return x


def build_report(stats: list[dict[str, Any]], cfg: ReportConfig) -> dict[str, Any]:
    """report.json: the settings and, per dataset in the given order, every figure (floats to 6 decimals)."""
    return {"settings": settings(cfg), "datasets": _rounded(stats)}


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _records(s: dict[str, Any]) -> str:
    n, total = s["records"], s["records_in_file"]
    return str(n) if n == total else f"{n} of {total}"


def _length_rows(key: str, label: str) -> list[tuple[str, Callable[[dict], str]]]:
    return [
        (f"{label} words: mean", lambda s: _num(s[key]["mean"])),
        (f"{label} words: median", lambda s: _num(s[key]["median"])),
        (f"{label} words: p10 / p90", lambda s: "-" if s[key]["n"] == 0
         else f"{s[key]['p10']:.0f} / {s[key]['p90']:.0f}"),
        (f"{label} words: max", lambda s: "-" if s[key]["max"] is None else str(s[key]["max"])),
    ]


PROXY_LABELS = {"constraints": "constraint cues", "reasoning": "reasoning-step cues",
                "structured": "structured input", "questions": "questions"}


def table_rows(stats: list[dict[str, Any]], cfg: ReportConfig) -> list[tuple[str, list[str]]]:
    """(figure, one cell per dataset) for every row of the table."""
    rows: list[tuple[str, Callable[[dict], str]]] = [
        ("format", lambda s: s["format"]),
        ("records", _records),
        ("with input", lambda s: _pct(s["with_input"])),
        ("with output", lambda s: _pct(s["with_output"])),
        *_length_rows("instruction_words", "instruction (+input)"),
        *_length_rows("output_words", "output"),
        *[(f"distinct-{n} (instructions)", lambda s, n=n: _num(s[f"distinct_{n}"], 3)) for n in (1, 2, 3)],
        (f"near-duplicates (ROUGE-L >= {cfg.dedup_threshold:g})",
         lambda s: f"{_pct(s['near_duplicates']['rate'])} ({s['near_duplicates']['count']})"),
        *[(f"{label}: mean / share >= 1",
           lambda s, k=k: f"{s['complexity'][k]['mean']:.2f} / {_pct(s['complexity'][k]['share'])}")
          for k, label in PROXY_LABELS.items()],
    ]
    mixes = [s["operations"] for s in stats if s["operations"]]
    if mixes:
        rows.append(("with provenance (operation)",
                     lambda s: _pct(s["operations"]["share_of_records"]) if s["operations"] else "-"))
        ops = list(dict.fromkeys(op for m in mixes for op in m["share"]))
        rows += [(f"operation: {op}", lambda s, op=op: _pct(s["operations"]["share"].get(op, 0.0))
                  if s["operations"] else "-") for op in ops]
    return [(label, [cell(s) for s in stats]) for label, cell in rows]


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def format_table(stats: list[dict[str, Any]], cfg: ReportConfig) -> str:
    """The Markdown table: a row per figure, a column per dataset, padded so it reads as plain text too."""
    head = ["figure", *(_escape(s["name"]) for s in stats)]
    body = [[_escape(label), *map(_escape, cells)] for label, cells in table_rows(stats, cfg)]
    widths = [max(len(r[j]) for r in [head, *body]) for j in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if j == 0 else c.rjust(w)
                                 for j, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if j else "-" * (w + 2) for j, w in enumerate(widths)) + "|"
    return "\n".join([line(head), rule, *map(line, body)])


def format_markdown(report: dict[str, Any], cfg: ReportConfig) -> str:
    """report.md: the datasets, the table, and how each figure is defined."""
    stats = report["datasets"]
    sample = f"a seeded random sample (seed {cfg.seed}) of at most {cfg.limit} records per dataset" \
        if cfg.limit else "every record"
    lines = ["# Dataset report", "", f"Datasets ({sample}):", ""]
    lines += [f"- **{s['name']}**: `{s['path']}` ({s['format']}, {s['records_in_file']} records)" for s in stats]
    lines += ["", format_table(stats, cfg), "", "## Definitions", "",
              f"- Instruction text: {TEXT}. Outputs: the examples with a non-empty output.",
              f"- Words: {WORDS}. Lengths: mean, median, p10, p90 (linear percentiles), max.",
              "- distinct-n: distinct word n-grams / all word n-grams over the instructions (none span two). It falls "
              "as a dataset grows, and the near-duplicate rate rises: compare datasets of one size (`--limit N`).",
              f"- Near-duplicates: share of instructions the generation stage's ROUGE-L filter drops in file order "
              f"(F >= {cfg.dedup_threshold:g} against an instruction kept before; tokens: {ROUGE_TOKENS}).",
              "- Constraint cues: " + ", ".join(complexity.CONSTRAINT_CUES) + " (matches counted).",
              "- Reasoning-step cues: " + ", ".join(complexity.REASONING_CUES) + " (matches counted), plus 1 for a "
              "numbered list (items 1 and 2).",
              "- Structured input (1 or 0): markdown table, fenced code, JSON, code lines, delimited rows (CSV, TSV, "
              "`|`), a bracketed list of numbers, XML/HTML.",
              "- Questions: runs of `?`.",
              "- Operation shares: over the records with an `operation` field (per `step` in report.json).", ""]
    return "\n".join(lines)
