"""lm-evaluation-harness task configs for the items we evaluate, read from the same local files: lm-eval (its
``--include_path``) then scores, offline, exactly the items ``python -m teamsrl_jax.evaluate`` scores, a cross-check
of any figure we report.

    python -m teamsrl_jax.evaluate.lmeval_tasks --data-dir ../shared/data/eval --out runs/lmeval_tasks
    lm_eval --model hf --model_args pretrained=runs/pipeline/sft/final,dtype=float32 \\
        --include_path runs/lmeval_tasks --tasks arc_easy_local,hellaswag_local --num_fewshot 0

Each task is lm-eval 0.4's own definition (``tasks/arc/arc_easy.yaml``, ``tasks/hellaswag/hellaswag.yaml``, version
1.0: prompt, choices, gold, metrics, splits) with its dataset read from JSON Lines written beside it: ARC records in
the Hugging Face layout (AI2's layout is converted), HellaSwag records with ``ctx_a``/``ctx_b`` (a file with ``ctx``
only gets ``ctx_a = ctx``, ``ctx_b = ""``, which gives the same query) and a text label, processed by lm-eval's own
``process_docs``. Few-shot examples come from the train file where there is one; without it HellaSwag draws them
from the validation split (as :func:`teamsrl_jax.evaluate.tasks.load_task` does), and ARC has none.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from teamsrl_jax.cli import main_guard
from teamsrl_jax.evaluate.tasks import ARC_STEMS, TASKS, arc_doc, file_rows, hellaswag_doc, task_files
from teamsrl_jax.fileio import atomic_write_text

_METRICS = """metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def hellaswag_row(row: dict, where: str) -> dict:
    """A HellaSwag record as lm-eval's ``process_docs`` reads it (``ctx_a``, ``ctx_b``, a text ``label``);
    checked as :func:`hellaswag_doc` checks it."""
    hellaswag_doc(row, where)
    if "ctx_a" not in row:
        row = {**row, "ctx_a": row["ctx"], "ctx_b": ""}
    return {**row, "label": str(row["label"])}


class _Kind(NamedTuple):
    convert: Callable[[dict, str], dict]
    """A record (and where it is, for errors) as the task's data file holds it."""
    evaluated: str
    """The split that is evaluated."""
    definition: str
    """The YAML after the data files: the evaluated split's keys, the prompt, the choices, the gold."""
    helper: str = ""
    """``utils.py`` written beside the YAML ("" for none)."""


_ARC = _Kind(arc_doc, "test", 'test_split: test\n'
             'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
             'doc_to_target: "{{choices.label.index(answerKey)}}"\n'
             'doc_to_choice: "{{choices.text}}"\n')
_HELLASWAG = _Kind(hellaswag_row, "validation", "validation_split: validation\ntest_split: null\n"
                   "process_docs: !function utils.process_docs\n"
                   'doc_to_text: "{{query}}"\n'
                   'doc_to_target: "{{label}}"\n'
                   'doc_to_choice: "choices"\n',
                   helper="from lm_eval.tasks.hellaswag.utils import process_docs  # noqa: F401\n")


def _write_task(folder: str | Path, name: str, kind: _Kind, evaluated: Sequence[tuple[str, dict]],
                train: Sequence[tuple[str, dict]] | None, num_fewshot: int | None) -> Path:
    """``NAME.yaml`` and its data files (from (where, record) pairs) in ``folder``; returns the YAML's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, items in ((kind.evaluated, evaluated), ("train", train)):
        if items is not None:
            files[split] = folder / f"{name}_{split}.jsonl"
            _write_jsonl(files[split], (kind.convert(row, where) for where, row in items))
    if kind.helper:
        atomic_write_text(folder / "utils.py", kind.helper)
    lines = [f"task: {name}", "dataset_path: json", "dataset_kwargs:", "  data_files:"]
    lines += [f"    {split}: {json.dumps(str(path.resolve()))}" for split, path in files.items()]  # YAML-quoted
    lines.append("output_type: multiple_choice")
    if num_fewshot is not None:
        lines.append(f"num_fewshot: {num_fewshot}")
    if train is not None:
        lines.append("training_split: train")
    path = folder / f"{name}.yaml"
    atomic_write_text(path, "\n".join(lines) + "\n" + kind.definition + _METRICS)
    return path


def _numbered(name: str, split: str, docs: Sequence[dict] | None) -> list[tuple[str, dict]] | None:
    return None if docs is None else [(f"{name} {split} item {i}", d) for i, d in enumerate(docs)]


def arc_task(folder: str | Path, name: str, test_docs: Sequence[dict], train_docs: Sequence[dict] | None = None,
             num_fewshot: int | None = None) -> Path:
    """Writes ``NAME.yaml`` and its data into ``folder``: ARC items (:func:`arc_doc` documents, or records in
    either original layout) as lm-eval's ``arc_easy.yaml`` defines the task. Returns the YAML's path."""
    return _write_task(folder, name, _ARC, _numbered(name, "test", test_docs), _numbered(name, "train", train_docs),
                       num_fewshot)


def hellaswag_task(folder: str | Path, name: str, val_rows: Sequence[dict], train_rows: Sequence[dict] | None = None,
                   num_fewshot: int | None = None) -> Path:
    """Writes ``NAME.yaml``, its data and ``utils.py`` (lm-eval's ``process_docs``) into ``folder``: HellaSwag
    records as lm-eval's ``hellaswag.yaml`` defines the task. Returns the YAML's path."""
    return _write_task(folder, name, _HELLASWAG, _numbered(name, "validation", val_rows),
                       _numbered(name, "train", train_rows), num_fewshot)


def export(folder: str | Path, data_dir: str | Path, tasks: Sequence[str] = TASKS, *, num_fewshot: int | None = None,
           suffix: str = "_local") -> list[str]:
    """lm-eval tasks ``<task><suffix>`` for ``tasks`` from ``data_dir`` (the layouts ``load_task`` reads) in
    ``folder``; returns their names. A bad record is an error naming its file and line."""
    names = []
    for task in tasks:
        evaluated, fewshot = task_files(task, data_dir)
        names.append(task + suffix)
        _write_task(folder, names[-1], _ARC if task in ARC_STEMS else _HELLASWAG, file_rows(evaluated),
                    file_rows(fewshot) if fewshot else None, num_fewshot)
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m teamsrl_jax.evaluate.lmeval_tasks", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", required=True, help="the folder python -m teamsrl_jax.evaluate --data-dir reads")
    p.add_argument("--out", required=True, help="folder for the task configs and their data (lm-eval --include_path)")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from: {', '.join(TASKS)}")
    p.add_argument("--num-fewshot", type=int, default=None,
                   help="written into each config (default: none; lm-eval's --num_fewshot then decides)")
    p.add_argument("--suffix", default="_local", help="appended to each task's name")
    args = p.parse_args(argv)

    def run():
        if args.num_fewshot is not None and args.num_fewshot < 0:
            raise ValueError(f"--num-fewshot must be >= 0, got {args.num_fewshot}")
        names = export(args.out, args.data_dir, [t.strip() for t in args.tasks.split(",") if t.strip()],
                       num_fewshot=args.num_fewshot, suffix=args.suffix)
        print(f"{', '.join(names)} -> {args.out} (lm_eval --include_path {args.out} --tasks {','.join(names)})")

    return main_guard(run)


if __name__ == "__main__":
    sys.exit(main())
