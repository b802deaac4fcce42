"""Our evaluator against lm-evaluation-harness's own run (its Hugging Face backend on our converted folder of the
real SmolLM2, the task configs ``teamsrl_jax.evaluate.lmeval_tasks`` writes from its ``arc_easy.yaml`` /
``hellaswag.yaml``), on real items from
``../shared/data/eval``: the same prompts, few-shot examples, per-choice log-likelihoods (float32 on both sides:
within 2e-3), greedy flags, ``acc`` and ``acc_norm`` per item and the aggregated results with their standard
errors, 0-shot and few-shot, ARC and HellaSwag."""

from __future__ import annotations

import json
import os

import pytest

from teamsrl_jax.evaluate.harness import evaluate_task, results_json
from teamsrl_jax.evaluate.scorer import Scorer, Tokenization
from teamsrl_jax.evaluate.lmeval_tasks import arc_task, hellaswag_task
from teamsrl_jax.evaluate.tasks import load_task

# (our task, lm-eval task name, num_fewshot, limit)
LIMIT = 4
# HellaSwag 0-shot is the 2-shot case's last turn; both ARC tasks share one prompt format, so these three cover
# every prompt, few-shot rule and tokenisation path
CASES = [("arc_easy", "arc_easy_local", 0, LIMIT), ("arc_challenge", "arc_challenge_local", 3, LIMIT),
         ("hellaswag", "hellaswag_2shot_local", 2, LIMIT)]
HELLASWAG_TRAIN = range(200, 300)  # validation items standing in for the (absent) train split

def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def data(shared_data, tmp_path_factory):
    """Our data folder (original layouts) and lm-eval's task folder made from the same items."""
    ours, theirs = tmp_path_factory.mktemp("eval_data"), tmp_path_factory.mktemp("lmeval_tasks")
    (ours / "arc").mkdir()
    (ours / "hellaswag").mkdir()
    for stem, name, shots in (("ARC-Easy", "arc_easy_local", 0), ("ARC-Challenge", "arc_challenge_local", 3)):
        docs = {}
        for split in ("Train", "Test"):
            src = shared_data / "eval" / "arc" / f"{stem}-{split}.jsonl"
            (ours / "arc" / src.name).symlink_to(src)
            lines = [line for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
            docs[split] = [json.loads(line) for line in lines]
        arc_task(theirs, name, docs["Test"], docs["Train"], num_fewshot=shots)
    val = [json.loads(line) for line in (shared_data / "eval" / "hellaswag" / "hellaswag_val.jsonl")
           .read_text(encoding="utf-8").splitlines()[:300]]
    _jsonl(ours / "hellaswag" / "hellaswag_val.jsonl", val[:10])
    _jsonl(ours / "hellaswag" / "hellaswag_train.jsonl", [val[i] for i in HELLASWAG_TRAIN])
    for name, shots in (("hellaswag_local", 0), ("hellaswag_2shot_local", 2)):
        hellaswag_task(theirs, name, val[:10], [val[i] for i in HELLASWAG_TRAIN], num_fewshot=shots)
    return ours, theirs


@pytest.fixture(scope="module")
def lmeval_run(data, smollm2_hf_dir):
    pytest.importorskip("lm_eval", reason="the reference needs lm_eval==0.4.13 (test extra)")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    names = [c[1] for c in CASES]
    res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={smollm2_hf_dir},dtype=float32",
                                  tasks=names, limit=LIMIT, log_samples=True, batch_size=8, device="cpu",
                                  task_manager=TaskManager(include_path=str(data[1]), include_defaults=False))
    return {name: (res["results"][name], res["samples"][name], res["n-shot"][name]) for name in names}


@pytest.fixture(scope="module")
def our_run(data, smollm2_jax):
    model, config, tokenizer = smollm2_jax
    scorer, tokenization = Scorer(model, batch_tokens=2048), Tokenization(tokenizer, config.max_position_embeddings)
    out = {}
    for task_name, name, shots, limit in CASES:
        task = load_task(task_name, data[0])
        out[name] = (task, shots, evaluate_task(scorer, tokenization, task, shots, limit=limit))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[1] for c in CASES])
def test_items_equal_lmeval(case, lmeval_run, our_run):
    _, name, shots, limit = case
    their_results, samples, their_shots = lmeval_run[name]
    task, _, items = our_run[name]
    assert their_shots == shots and len(samples) == len(items) == limit
    for sample in samples:
        item = items[sample["doc_id"]]
        contexts = [args[0] for args in sample["arguments"]]
        continuations = [args[1] for args in sample["arguments"]]
        assert contexts == [item.context] * len(item.choices)               # same prompt, same few-shot examples
        assert continuations == [" " + c for c in item.choices]
        their_lls = [float(r[0][0]) for r in sample["resps"]]
        assert item.loglikelihoods == pytest.approx(their_lls, abs=2e-3)
        assert item.greedy == [bool(r[0][1]) for r in sample["resps"]]
        assert int(sample["target"]) == item.gold
        assert (item.acc, item.acc_norm) == (sample["acc"], sample["acc_norm"])
    ours = results_json({name: (task, shots, items)}, model="teamsrl_jax", model_args="pretrained=x", batch_size=1,
                        limit=limit, seconds=1.0, extra_config={})["results"][name]
    for key in ("acc,none", "acc_stderr,none", "acc_norm,none", "acc_norm_stderr,none"):
        assert ours[key] == pytest.approx(their_results[key], abs=1e-12), key


def test_fewshot_contexts_use_other_items(our_run):
    """Sanity of the few-shot cases themselves: examples are present, differ across items, end in the query."""
    for name in ("arc_challenge_local", "hellaswag_2shot_local"):
        task, shots, items = our_run[name]
        assert all(i.context.count("\n\n") == shots for i in items)
        assert len({i.context.split("\n\n")[0] for i in items}) > 1
        assert all(i.context.endswith(task.docs[i.doc_id].query) for i in items)
