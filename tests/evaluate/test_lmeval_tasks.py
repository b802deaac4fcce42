"""The lm-eval task configs written from our data files: lm-evaluation-harness itself builds, from them, the same
requests (context with its few-shot examples, continuation) for the same items as our tasks, ARC and HellaSwag,
0-shot and few-shot, with and without a train file; no model is run (the scores are checked in
``test_lmeval_parity.py``)."""

from __future__ import annotations

import json
import os

import pytest

from teamsrl_jax.evaluate import lmeval_tasks
from teamsrl_jax.evaluate.tasks import load_task

LIMIT = 6


def _lines(path, n):
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:n]


@pytest.fixture(scope="module")
def data(shared_data, tmp_path_factory):
    """Two data folders in the original layouts: one with train files, one with HellaSwag's validation only."""
    full, val_only = tmp_path_factory.mktemp("full"), tmp_path_factory.mktemp("val_only")
    (full / "arc").mkdir()
    for stem in ("ARC-Easy", "ARC-Challenge"):
        for split in ("Train", "Test"):
            name = f"{stem}-{split}.jsonl"
            (full / "arc" / name).write_text("\n".join(_lines(shared_data / "eval" / "arc" / name, 40)) + "\n")
    val = _lines(shared_data / "eval" / "hellaswag" / "hellaswag_val.jsonl", 60)
    (full / "hellaswag").mkdir()
    (full / "hellaswag" / "hellaswag_val.jsonl").write_text("\n".join(val[:20]) + "\n")
    (full / "hellaswag" / "hellaswag_train.jsonl").write_text("\n".join(val[20:]) + "\n")
    (val_only / "hellaswag_val.jsonl").write_text("\n".join(val[:20]) + "\n")
    return full, val_only


def lmeval_requests(folder, name, num_fewshot):
    """{doc_id: [(context, continuation), ...]} as lm-eval builds them from the configs in ``folder``."""
    pytest.importorskip("lm_eval", reason="the reference needs lm_eval==0.4.13 (test extra)")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval.tasks import TaskManager

    task = TaskManager(include_path=str(folder), include_defaults=False).load([name])["tasks"][name]
    task.set_config("num_fewshot", num_fewshot)
    task.set_fewshot_seed(seed=1234)  # simple_evaluate's default fewshot_random_seed
    task.build_all_requests(limit=LIMIT, rank=0, world_size=1)
    out: dict[int, list] = {}
    for inst in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
        out.setdefault(inst.doc_id, []).append(tuple(inst.arguments))
    return out


def our_requests(name, data_dir, num_fewshot):
    task = load_task(name, data_dir)
    contexts = task.contexts(num_fewshot, LIMIT)
    return {d.doc_id: [(ctx, " " + c) for c in d.choices] for d, ctx in zip(task.docs, contexts)}


@pytest.mark.parametrize("name,num_fewshot,which", [
    ("arc_easy", 0, 0), ("arc_challenge", 3, 0), ("hellaswag", 0, 0), ("hellaswag", 2, 0),
    ("hellaswag", 2, 1),  # no train file: examples from the validation split, never the item itself
], ids=["arc_easy-0", "arc_challenge-3", "hellaswag-0", "hellaswag-2", "hellaswag-2-validation-only"])
def test_lmeval_builds_our_requests(data, tmp_path, name, num_fewshot, which):
    names = lmeval_tasks.export(tmp_path, data[which], [name])
    assert names == [f"{name}_local"]
    theirs = lmeval_requests(tmp_path, names[0], num_fewshot)
    ours = our_requests(name, data[which], num_fewshot)
    assert len(ours) == LIMIT and theirs == ours
    assert all(ctx.count("\n\n") == num_fewshot for reqs in theirs.values() for ctx, _ in reqs)


def test_configs_read_the_files_written_beside_them(data, tmp_path):
    lmeval_tasks.export(tmp_path, data[0], ["arc_easy", "hellaswag"], num_fewshot=5, suffix="_x")
    arc = (tmp_path / "arc_easy_x.yaml").read_text()
    assert "num_fewshot: 5" in arc and "training_split: train" in arc and "test_split: test" in arc
    assert json.dumps(str((tmp_path / "arc_easy_x_test.jsonl").resolve())) in arc
    first = json.loads((tmp_path / "arc_easy_x_test.jsonl").read_text().splitlines()[0])
    assert set(first) == {"id", "question", "choices", "answerKey"} and isinstance(first["question"], str)
    row = json.loads((tmp_path / "hellaswag_x_validation.jsonl").read_text().splitlines()[0])
    assert isinstance(row["label"], str) and "ctx_a" in row and "ctx_b" in row
    assert (tmp_path / "utils.py").is_file()


def test_cli_errors_name_the_missing_file(tmp_path, capsys):
    assert lmeval_tasks.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), "--tasks", "arc_easy"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "ARC-Easy-Test.jsonl" in err and str(tmp_path) in err
    bad = tmp_path / "hellaswag_val.jsonl"
    bad.write_text('{"label": 9, "endings": ["a"], "activity_label": "x", "ctx": "y"}\n')
    assert lmeval_tasks.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "out"),
                              "--tasks", "hellaswag"]) == 2
    assert f"{bad}:1" in capsys.readouterr().err and not (tmp_path / "out" / "hellaswag_local.yaml").exists()
