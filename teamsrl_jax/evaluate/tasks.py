"""The tasks, as lm-evaluation-harness 0.4.x defines them: documents, prompts, few-shot contexts, requests.

ARC (``arc_easy``, ``arc_challenge``; lm-eval ``tasks/arc/arc_easy.yaml``, version 1.0): the test split is
evaluated, few-shot examples come from the train split. Context ``Question: {question}\\nAnswer:``, choices
``choices.text``, gold ``choices.label.index(answerKey)``.

HellaSwag (``hellaswag``; ``tasks/hellaswag/hellaswag.yaml`` + ``utils.py``, version 1.0): the validation
split is evaluated, few-shot examples come from the train split (from the validation split, never the item
itself, where no train file is at hand). Query ``preprocess(activity_label + ": " + ctx_a + " " +
ctx_b.capitalize())``, choices ``preprocess(ending)``, gold ``int(label)``; ``preprocess`` strips, turns
`` [title]`` into ``. ``, drops ``[...]`` tags and double spaces. A file with ``ctx`` and no ``ctx_a``/``ctx_b``
is read as ``ctx_a = ctx``, ``ctx_b = ""`` (which gives the same query).

Few-shot contexts: each example is ``query + " " + answer + "\\n\\n"``, then the item's query; lm-eval's
``ContextSampler`` draws them with ``random.Random(1234)``, one draw per item in document order, so the same
item gets the same examples. Its one quirk is kept: where the task's few-shot split equals its test split
(both unset for HellaSwag), it draws n + 1 examples and drops the item itself, then keeps the first n.
A request is ``(context, " " + choice)``.

Data: local files in the original layouts (``--data-dir``: ``arc/ARC-Easy-Test.jsonl`` ... as AI2 ships them,
``hellaswag/hellaswag_val.jsonl`` / ``hellaswag_train.jsonl`` as the HellaSwag repository ships them, or the same
names directly in the folder), or TensorFlow Datasets (``ai2_arc``, ``hellaswag``) where prepared or
downloadable. A missing or malformed file is a one-line error naming the file and line.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FEWSHOT_SEED = 1234
"""lm-eval's default ``fewshot_random_seed``."""
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"


@dataclass(frozen=True)
class Doc:
    """One item: lm-eval's document, its prompt, the choices and the gold index."""

    doc_id: int
    doc: dict[str, Any]
    """The document in lm-eval's schema (after its ``process_docs``); few-shot draws compare these."""
    query: str
    choices: tuple[str, ...]
    gold: int


@dataclass(frozen=True)
class Task:
    name: str
    version: float
    docs: list[Doc]
    """The evaluated items, in file order."""
    fewshot_docs: list[Doc]
    fewshot_source: str
    """Which split the few-shot examples come from (``train``, ``validation``)."""
    draws_plus_one: bool
    """lm-eval's rule where the few-shot split equals the test split: draw n + 1, drop the item, keep n."""
    files: dict[str, str] = field(default_factory=dict)

    def contexts(self, num_fewshot: int, limit: int | None = None) -> list[str]:
        """The context of each evaluated item (the first ``limit``), few-shot examples drawn as lm-eval does."""
        docs = self.docs if limit is None else self.docs[:limit]
        if num_fewshot == 0:
            return [d.query for d in docs]
        if len(self.fewshot_docs) < num_fewshot + (1 if self.draws_plus_one else 0):
            raise ValueError(f"{self.name}: {num_fewshot}-shot needs more than the {len(self.fewshot_docs)} "
                             f"few-shot examples of its {self.fewshot_source} split")
        rnd = random.Random(FEWSHOT_SEED)
        pool = self.fewshot_docs
        out = []
        for d in docs:
            if self.draws_plus_one:
                drawn = [x for x in rnd.sample(pool, num_fewshot + 1) if x.doc != d.doc][:num_fewshot]
                if len(drawn) < num_fewshot:  # lm-eval resamples from the pool without the item
                    drawn = rnd.sample([x for x in pool if x.doc != d.doc], num_fewshot)
            else:
                drawn = rnd.sample(pool, num_fewshot)
            shots = "".join(f"{x.query}{TARGET_DELIMITER}{x.choices[x.gold]}{FEWSHOT_DELIMITER}" for x in drawn)
            out.append(shots + d.query)
        return out


TASKS = ("arc_easy", "arc_challenge", "hellaswag")


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}")
        rows.append((i, row))
    if not rows:
        raise ValueError(f"{path}: no records")
    return rows


def _find(data_dir: Path, sub: str, names: tuple[str, ...]) -> Path | None:
    for folder in (data_dir / sub, data_dir):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


# -- ARC -------------------------------------------------------------------------------------------------------

def arc_doc(row: dict, where: str) -> dict[str, Any]:
    """An ARC record in AI2's layout (``question{stem, choices[{text, label}]}``) or the Hugging Face one
    (``question`` a string, ``choices{text[], label[]}``), as lm-eval's document."""
    try:
        q = row["question"]
        if isinstance(q, dict):
            stem, choices = q["stem"], q["choices"]
            text, label = [c["text"] for c in choices], [c["label"] for c in choices]
        else:
            stem, text, label = q, list(row["choices"]["text"]), list(row["choices"]["label"])
        key = row["answerKey"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{where}: not an ARC record (missing {e})") from None
    if not all(isinstance(x, str) for x in (stem, key, *text, *label)) or len(text) != len(label) or not text:
        raise ValueError(f"{where}: not an ARC record (question, choices and answerKey must be text)")
    if key not in label:
        raise ValueError(f"{where}: answerKey {key!r} is not one of the choice labels {label}")
    return {"id": row.get("id", ""), "question": stem, "choices": {"text": text, "label": label}, "answerKey": key}


def _arc(doc_id: int, doc: dict) -> Doc:
    return Doc(doc_id, doc, f"Question: {doc['question']}\nAnswer:", tuple(doc["choices"]["text"]),
               doc["choices"]["label"].index(doc["answerKey"]))


# -- HellaSwag -------------------------------------------------------------------------------------------------

def preprocess(text: str) -> str:
    """lm-eval's HellaSwag ``preprocess``."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag_doc(row: dict, where: str) -> dict[str, Any]:
    """A HellaSwag record (``ctx_a``/``ctx_b`` or ``ctx``) as lm-eval's processed document."""
    try:
        label, endings, activity = row["label"], row["endings"], row["activity_label"]
        ctx_a = row["ctx_a"] if "ctx_a" in row else row["ctx"]
        ctx_b = row.get("ctx_b", "") if "ctx_a" in row else ""
    except KeyError as e:
        raise ValueError(f"{where}: not a HellaSwag record (missing {e})") from None
    if not (isinstance(endings, list) and endings and all(isinstance(e, str) for e in endings)):
        raise ValueError(f"{where}: not a HellaSwag record ('endings' must be a list of text)")
    try:
        gold = int(label)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: HellaSwag label {label!r} is not an integer") from None
    if not 0 <= gold < len(endings):
        raise ValueError(f"{where}: HellaSwag label {gold} is out of range for {len(endings)} endings")
    ctx = ctx_a + " " + ctx_b.capitalize()
    return {**row, "query": preprocess(activity + ": " + ctx), "choices": [preprocess(e) for e in endings],
            "gold": gold}


def _hellaswag(doc_id: int, doc: dict) -> Doc:
    return Doc(doc_id, doc, doc["query"], tuple(doc["choices"]), doc["gold"])


# -- loading ---------------------------------------------------------------------------------------------------

ARC_STEMS = {"arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge"}


def task_files(name: str, data_dir: str | Path) -> tuple[Path, Path | None]:
    """(the evaluated split's file, the few-shot split's file or None) of a task in ``data_dir``, in the original
    layouts (``arc/ARC-Easy-Test.jsonl``, ``hellaswag/hellaswag_val.jsonl``, ... or the same names in the folder)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    data_dir = Path(data_dir)
    if name in ARC_STEMS:
        stem = ARC_STEMS[name]
        test = _find(data_dir, "arc", (f"{stem}-Test.jsonl",))
        if test is None:
            raise ValueError(f"{data_dir}: no {stem}-Test.jsonl (in arc/ or the folder itself)")
        return test, _find(data_dir, "arc", (f"{stem}-Train.jsonl",))
    val = _find(data_dir, "hellaswag", ("hellaswag_val.jsonl", "hellaswag_validation.jsonl"))
    if val is None:
        raise ValueError(f"{data_dir}: no hellaswag_val.jsonl (in hellaswag/ or the folder itself)")
    return val, _find(data_dir, "hellaswag", ("hellaswag_train.jsonl",))


def load_task(name: str, data_dir: str | Path | None = None, *, tfds_data_dir: str | None = None) -> Task:
    """A task's documents from ``data_dir`` (original layouts) or, without one, from TensorFlow Datasets."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    if data_dir is None:
        from teamsrl_jax.evaluate.tfds_source import load_tfds_rows
        rows = load_tfds_rows(name, tfds_data_dir)
        return _build(name, rows["eval"], rows.get("fewshot"), {"eval": "tfds", "fewshot": "tfds"})
    evaluated, fewshot = task_files(name, data_dir)
    files = {"eval": str(evaluated), **({"fewshot": str(fewshot)} if fewshot else {})}
    return _build(name, file_rows(evaluated), file_rows(fewshot) if fewshot else None, files)


def file_rows(path: Path) -> list[tuple[str, dict]]:
    """(``file:line``, record) of each record of a JSON Lines file."""
    return [(f"{path}:{i}", row) for i, row in _read_jsonl(path)]


def _build(name: str, eval_rows: list[tuple[str, dict]], fewshot_rows: list[tuple[str, dict]] | None,
           files: dict[str, str]) -> Task:
    to_doc, make = (arc_doc, _arc) if name in ARC_STEMS else (hellaswag_doc, _hellaswag)
    docs = [make(i, to_doc(row, where)) for i, (where, row) in enumerate(eval_rows)]
    if fewshot_rows is not None:
        fewshot = [make(i, to_doc(row, where)) for i, (where, row) in enumerate(fewshot_rows)]
        source = "train"
    else:
        fewshot, source = (docs, "validation") if name == "hellaswag" else ([], "train (absent)")
    return Task(name, 1.0, docs, fewshot, source, draws_plus_one=name == "hellaswag", files=files)
