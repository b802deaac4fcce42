"""The figures of one dataset, each a pure function of its examples.

Text: every figure about instructions reads ``Example.text``, the instruction plus a blank line and the input
when there is one (what a model is asked, and what the generation stage evolves and filters); outputs are
the ``output`` field, over the examples that have a non-empty one.

- Lengths: ``env.text.words`` tokens (lower-cased runs of letters and digits, with an optional apostrophe
  suffix such as ``don't``; punctuation dropped); n, mean, median, p10, p90 (NumPy's linear percentiles)
  and max.
- distinct-n (n = 1, 2, 3): distinct word n-grams / all word n-grams over the instructions, on the same
  tokens; n-grams never span two instructions, and an instruction with fewer than n tokens adds none.
- Near-duplicate rate: the share of instructions that the generation stage's filter
  (``generate.dedup.NearDuplicateFilter``) drops when offered in file order: ROUGE-L F (rouge_score's
  tokens, lower-cased runs of ``[a-z0-9]``) at or above the threshold against an instruction kept before.
- Operation mix: over the examples with an ``operation`` field, the share of each operation, overall and
  per ``step`` (where a step is given).
- Complexity proxies (``complexity``): the mean count per instruction and the share with at least one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from teamsrl_jax.data_report.complexity import PROXIES, proxies
from teamsrl_jax.data_report.readers import Dataset, Example
from teamsrl_jax.env.text import words
from teamsrl_jax.generate.dedup import NearDuplicateFilter

DISTINCT_N = (1, 2, 3)
PROGRESS_FROM = 5000
"""Datasets at least this large show a progress bar over the near-duplicate pass."""


def length_summary(values: list[int]) -> dict[str, Any]:
    """n, mean, median, p10, p90, max of word counts (None for each when there are none)."""
    if not values:
        return {"n": 0, "mean": None, "median": None, "p10": None, "p90": None, "max": None}
    x = np.asarray(values, float)
    return {"n": int(x.size), "mean": float(x.mean()), "median": float(np.median(x)),
            "p10": float(np.percentile(x, 10)), "p90": float(np.percentile(x, 90)), "max": int(x.max())}


def distinct_n(token_lists: list[list[str]], n: int) -> float | None:
    """Distinct n-grams / all n-grams over the token lists (None when there is no n-gram at all)."""
    grams = Counter()
    for tokens in token_lists:
        grams.update(zip(*(tokens[i:] for i in range(n))))
    total = sum(grams.values())
    return len(grams) / total if total else None


def near_duplicates(texts: list[str], threshold: float, progress: bool = False) -> dict[str, Any]:
    """How many texts the ROUGE-L filter drops in order (its token order fitted on the texts themselves)."""
    kept = NearDuplicateFilter(threshold, vocabulary=texts).filter(texts, progress=progress)
    dropped = len(kept) - sum(kept)
    return {"count": dropped, "rate": dropped / len(kept) if kept else None}


def operation_mix(examples: list[Example] | tuple[Example, ...]) -> dict[str, Any] | None:
    """Operation shares where provenance exists (None when no example has an ``operation``)."""
    tagged = [e for e in examples if e.operation is not None]
    if not tagged:
        return None
    counts = Counter(e.operation for e in tagged)
    order = sorted(counts, key=lambda op: (-counts[op], op))
    by_step: dict[int, Counter] = {}
    for e in tagged:
        if e.step is not None:
            by_step.setdefault(e.step, Counter())[e.operation] += 1
    return {
        "records": len(tagged), "share_of_records": len(tagged) / len(examples),
        "count": {op: counts[op] for op in order},
        "share": {op: counts[op] / len(tagged) for op in order},
        "by_step": {str(step): {"records": sum(c.values()), "share": {op: c[op] / sum(c.values()) for op in order
                                                                      if c[op]}}
                    for step, c in sorted(by_step.items())},
    }


def complexity_summary(texts: list[str]) -> dict[str, dict[str, float]]:
    """Per proxy: the mean count per instruction and the share of instructions with at least one."""
    counts = np.array([[p[k] for k in PROXIES] for p in map(proxies, texts)], float).reshape(len(texts),
                                                                                             len(PROXIES))
    return {k: {"mean": float(counts[:, j].mean()), "share": float((counts[:, j] >= 1).mean())}
            for j, k in enumerate(PROXIES)}


def word_counts(ds: Dataset) -> tuple[list[int], list[int]]:
    """(words per instruction text, words per non-empty output)."""
    return ([len(words(e.text)) for e in ds.examples],
            [len(words(e.output)) for e in ds.examples if e.output.strip()])


def dataset_stats(ds: Dataset, dedup_threshold: float = 0.7, progress: bool = False) -> dict[str, Any]:
    """Every figure of one dataset (plain JSON values)."""
    texts = [e.text for e in ds.examples]
    tokens = [words(t) for t in texts]
    outputs = [len(words(e.output)) for e in ds.examples if e.output.strip()]
    return {
        "name": ds.name, "path": ds.path, "format": ds.format,
        "records_in_file": ds.records_in_file, "records": len(texts),
        "with_input": sum(bool(e.input) for e in ds.examples) / len(texts),
        "with_output": len(outputs) / len(texts),
        "instruction_words": length_summary([len(t) for t in tokens]),
        "output_words": length_summary(outputs),
        **{f"distinct_{n}": distinct_n(tokens, n) for n in DISTINCT_N},
        "near_duplicates": near_duplicates(texts, dedup_threshold, progress and len(texts) >= PROGRESS_FROM),
        "complexity": complexity_summary(texts),
        "operations": operation_mix(ds.examples),
    }
