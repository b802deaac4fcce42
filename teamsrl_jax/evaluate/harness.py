"""Multiple-choice evaluation with lm-evaluation-harness's definitions and output layout.

For each item: every choice's continuation log-likelihood given the context (``scorer``), then ``acc`` (the
argmax of the log-likelihoods is the gold choice) and ``acc_norm`` (the argmax of log-likelihood divided by the
choice's length in characters), ties to the first choice as NumPy's argmax gives them. Each metric's
``_stderr`` is the sample standard deviation (n - 1) over sqrt(n), lm-eval's ``mean_stderr``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from teamsrl_jax.evaluate.scorer import Scorer, Tokenization
from teamsrl_jax.evaluate.tasks import FEWSHOT_DELIMITER, FEWSHOT_SEED, TARGET_DELIMITER, Task
from teamsrl_jax.fileio import atomic_write_text, read_jsonl

METRICS = ("acc", "acc_norm")


def mean_stderr(values: list[float]) -> float | str:
    """lm-eval's ``mean_stderr``: sample std (ddof 1) / sqrt(n); "N/A" for fewer than two values."""
    n = len(values)
    if n < 2:
        return "N/A"
    mu = sum(values) / n
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


def paired_difference(before: str | Path, after: str | Path, metric: str = "acc_norm") -> dict[str, Any]:
    """The change of ``metric`` between two runs on the same items, from their samples files (``--log-samples``):
    the mean of the per-item differences (after - before), its standard error (``mean_stderr`` of those
    differences: paired, so much tighter than the two runs' own standard errors), and the items that went from
    wrong to right (``better``) and from right to wrong (``worse``)."""
    runs = []
    for path in (before, after):
        rows = {}
        for i, row in enumerate(read_jsonl(path), 1):
            if not isinstance(row, dict) or "doc_id" not in row or metric not in row:
                raise ValueError(f"{path}:{i}: a samples record needs 'doc_id' and {metric!r}")
            rows[row["doc_id"]] = float(row[metric])
        runs.append(rows)
    if runs[0].keys() != runs[1].keys():
        raise ValueError(f"{before} and {after} hold different items ({len(runs[0])} and {len(runs[1])}): "
                         "a paired difference needs the same ones")
    diffs = [runs[1][k] - runs[0][k] for k in sorted(runs[0])]
    return {"metric": metric, "n": len(diffs), "mean": sum(diffs) / len(diffs) if diffs else None,
            "stderr": mean_stderr(diffs), "better": sum(d > 0 for d in diffs), "worse": sum(d < 0 for d in diffs)}


@dataclass
class ItemResult:
    doc_id: int
    doc: dict[str, Any]
    context: str
    choices: tuple[str, ...]
    gold: int
    loglikelihoods: list[float]
    greedy: list[bool]

    @property
    def pred(self) -> int:
        return int(np.argmax(self.loglikelihoods))

    @property
    def pred_norm(self) -> int:
        lengths = np.array([float(len(c)) for c in self.choices])
        return int(np.argmax(np.asarray(self.loglikelihoods) / lengths))

    @property
    def acc(self) -> float:
        return 1.0 if self.pred == self.gold else 0.0

    @property
    def acc_norm(self) -> float:
        return 1.0 if self.pred_norm == self.gold else 0.0


def evaluate_task(scorer: Scorer, tokenization: Tokenization, task: Task, num_fewshot: int, *,
                  limit: int | None = None, progress=None) -> list[ItemResult]:
    """Every evaluated item of ``task`` (the first ``limit``), scored."""
    docs = task.docs if limit is None else task.docs[:limit]
    contexts = task.contexts(num_fewshot, limit)
    groups, owners = [], []   # one group per distinct encoded context within an item
    for d, context in zip(docs, contexts):
        by_context: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = {}
        for c, choice in enumerate(d.choices):
            request = tokenization.pair(context, TARGET_DELIMITER + choice)
            by_context.setdefault(request.context, []).append((c, request.continuation))
        for ctx, members in by_context.items():
            groups.append((ctx, [cont for _, cont in members]))
            owners.append((d.doc_id, [c for c, _ in members]))
    scored = scorer.score(groups, progress=None)
    per_doc: dict[int, dict[int, tuple[float, bool]]] = {}
    for (doc_id, choice_ids), answers in zip(owners, scored):
        per_doc.setdefault(doc_id, {}).update(zip(choice_ids, answers))
    out = []
    for d, context in zip(docs, contexts):
        answers = [per_doc[d.doc_id][c] for c in range(len(d.choices))]
        lls = [a[0] for a in answers]
        if not all(math.isfinite(v) for v in lls):
            raise FloatingPointError(f"{task.name} item {d.doc_id}: non-finite log-likelihoods {lls}")
        out.append(ItemResult(d.doc_id, d.doc, context, d.choices, d.gold, lls, [a[1] for a in answers]))
    if progress is not None:
        progress(len(docs))
    return out


def task_metrics(items: list[ItemResult]) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for name in METRICS:
        values = [getattr(i, name) for i in items]
        out[f"{name},none"] = sum(values) / len(values) if values else float("nan")
        out[f"{name}_stderr,none"] = mean_stderr(values)
    return out


def results_json(per_task: dict[str, tuple[Task, int, list[ItemResult]]], *, model: str, model_args: str,
                 batch_size: int, limit: int | None, seconds: float, extra_config: dict[str, Any]) -> dict:
    """The results in lm-evaluation-harness's layout (``results``, ``versions``, ``n-shot``, ``config``, ...)."""
    results, configs, versions, nshot, higher, nsamples = {}, {}, {}, {}, {}, {}
    for name, (task, k, items) in per_task.items():
        results[name] = {"alias": name, **task_metrics(items)}
        versions[name] = task.version
        nshot[name] = k
        higher[name] = {m: True for m in METRICS}
        nsamples[name] = {"original": len(task.docs), "effective": len(items)}
        configs[name] = {
            "task": name, "output_type": "multiple_choice", "data_files": task.files,
            "fewshot_split": task.fewshot_source, "num_fewshot": k, "target_delimiter": TARGET_DELIMITER,
            "fewshot_delimiter": FEWSHOT_DELIMITER, "fewshot_config": {"sampler": "default", "seed": FEWSHOT_SEED},
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in METRICS],
            "metadata": {"version": task.version},
        }
    return {
        "results": results, "group_subtasks": {name: [] for name in per_task}, "configs": configs,
        "versions": versions, "n-shot": nshot, "higher_is_better": higher, "n-samples": nsamples,
        "config": {"model": model, "model_args": model_args, "batch_size": batch_size, "limit": limit,
                   "fewshot_seed": FEWSHOT_SEED, **extra_config},
        "date": time.time(), "total_evaluation_time_seconds": str(round(seconds, 3)),
        "model_name": model_args.split(",")[0].removeprefix("pretrained="),
    }


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_samples(path: str | Path, items: list[ItemResult]) -> None:
    """Per-item JSONL as lm-eval's ``--log_samples`` writes it (plus our ``loglikelihoods``/``pred`` fields)."""
    lines = []
    for i in items:
        arguments = {f"gen_args_{c}": {"arg_0": i.context, "arg_1": TARGET_DELIMITER + choice}
                     for c, choice in enumerate(i.choices)}
        resps = [[[str(ll), str(g)]] for ll, g in zip(i.loglikelihoods, i.greedy)]
        row = {"doc_id": i.doc_id, "doc": i.doc, "target": i.gold, "arguments": arguments, "resps": resps,
               "filtered_resps": [r[0] for r in resps], "filter": "none", "metrics": list(METRICS),
               "doc_hash": _hash(json.dumps(i.doc, indent=2, default=str, ensure_ascii=False)),
               "prompt_hash": _hash(i.context), "target_hash": _hash(str(i.gold)),
               "loglikelihoods": i.loglikelihoods, "pred": i.pred, "pred_norm": i.pred_norm,
               "acc": i.acc, "acc_norm": i.acc_norm}
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")


def now_stamp() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
