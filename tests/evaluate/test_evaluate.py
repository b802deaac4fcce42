"""The evaluator's parts: packed scoring against plain per-request forwards, the few-shot draws against
lm-eval's own sampler, the tasks' documents and errors, and the command line."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import nnx

from teamsrl_jax.evaluate.__main__ import main
from teamsrl_jax.evaluate.harness import ItemResult, mean_stderr, paired_difference
from teamsrl_jax.evaluate.scorer import Scorer
from teamsrl_jax.evaluate.tasks import FEWSHOT_SEED, Doc, Task, load_task, preprocess
from teamsrl_jax.model import LlamaConfig, init_model

TINY = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512)


PAD = 320


def reference_loglikelihood(forward, ctx, cont):
    """log P(cont | ctx) and all-greedy from one plain forward over ctx + cont (right-padded: causal)."""
    ids = np.zeros((1, PAD), np.int32)
    ids[0, :len(ctx) + len(cont)] = list(ctx) + list(cont)
    logp = forward(ids)
    n = len(ctx)
    rows = np.asarray(logp[n - 1:n - 1 + len(cont)])
    return float(sum(rows[i, t] for i, t in enumerate(cont))), all(rows[i].argmax() == t for i, t in enumerate(cont))


def test_packed_scoring_equals_one_forward_per_request():
    model = init_model(LlamaConfig(**TINY), seed=3)
    rng = np.random.default_rng(0)
    groups = []
    for _ in range(23):
        ctx = tuple(rng.integers(0, 97, rng.integers(1, 40)).tolist())
        conts = [tuple(rng.integers(0, 97, rng.integers(1, 9)).tolist()) for _ in range(rng.integers(1, 6))]
        groups.append((ctx, conts))
    groups.append((tuple(rng.integers(0, 97, 300).tolist()), [(5, 6), (7,)]))  # longer than a row: its own row
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda ids: jax.nn.log_softmax(nnx.merge(graphdef, state)(ids)[0], axis=-1))
    scorer = Scorer(model, batch_tokens=256, row_length=64)
    got = scorer.score(groups)
    assert scorer.stats.batches > 2 and scorer.stats.tokens == sum(len(c) + sum(len(x) - 1 for x in k) for c, k in groups)
    for (ctx, conts), answers in zip(groups, got):
        for cont, (ll, greedy) in zip(conts, answers):
            ref_ll, ref_greedy = reference_loglikelihood(forward, ctx, cont)
            assert ll == pytest.approx(ref_ll, abs=1e-4)
            assert greedy == ref_greedy


def _docs(n):
    return [Doc(i, {"id": i, "q": f"q{i}"}, f"Question {i}?", ("yes", "no"), i % 2) for i in range(n)]


@pytest.mark.parametrize("plus_one", [False, True])
def test_fewshot_draws_equal_lm_evals_sampler(plus_one):
    samplers = pytest.importorskip("lm_eval.api.samplers", reason="lm_eval is the reference")
    docs, pool = _docs(7), _docs(40)
    if plus_one:
        pool = docs + pool[7:]  # the items themselves are in the pool: lm-eval drops them after drawing n + 1
    task = Task("t", 1.0, docs, pool, "train", draws_plus_one=plus_one)
    contexts = task.contexts(3)
    sampler = samplers.ContextSampler([d.doc for d in pool], rnd=FEWSHOT_SEED)
    by_doc = {json.dumps(d.doc): d for d in pool}
    for d, context in zip(docs, contexts):
        drawn = [by_doc[json.dumps(x)] for x in sampler.sample(3, eval_doc=d.doc if plus_one else None)]
        assert context == "".join(f"{x.query} {x.choices[x.gold]}\n\n" for x in drawn) + d.query
        if plus_one:
            assert f"{d.query} " not in context  # never the item itself


def test_metrics_and_stderr():
    item = ItemResult(0, {}, "ctx", ("a", "bbbb", "cc"), 1, [-4.0, -6.0, -5.0], [False] * 3)
    assert (item.pred, item.acc) == (0, 0.0)
    assert (item.pred_norm, item.acc_norm) == (1, 1.0)   # -6/4 is the best per character
    tie = ItemResult(0, {}, "ctx", ("a", "b"), 1, [-1.0, -1.0], [False] * 2)
    assert tie.pred == 0  # ties go to the first choice, as numpy's argmax
    values = [1.0, 0.0, 1.0, 1.0]
    assert mean_stderr(values) == pytest.approx(np.std(values, ddof=1) / 2)
    assert mean_stderr([1.0]) == "N/A"


def test_paired_difference_of_two_runs_on_the_same_items(tmp_path):
    rng = np.random.default_rng(0)
    before, after = rng.integers(0, 2, 50).astype(float), rng.integers(0, 2, 50).astype(float)
    order = rng.permutation(50)  # the files need not list the items in the same order
    paths = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    for path, acc, ids in zip(paths, (before, after), (range(50), order)):
        path.write_text("".join(json.dumps({"doc_id": int(i), "acc": acc[i], "acc_norm": 0.0}) + "\n" for i in ids))
    change = paired_difference(*paths, "acc")
    d = after - before  # float64 reference
    assert change["n"] == 50 and change["mean"] == pytest.approx(d.mean(), abs=1e-12)
    assert change["stderr"] == pytest.approx(np.std(d, ddof=1) / np.sqrt(50), rel=1e-12)
    assert (change["better"], change["worse"]) == (int((d > 0).sum()), int((d < 0).sum()))
    assert paired_difference(*paths, "acc_norm") == {"metric": "acc_norm", "n": 50, "mean": 0.0, "stderr": 0.0,
                                                     "better": 0, "worse": 0}

    paths[1].write_text(paths[1].read_text().split("\n", 1)[1])  # one item fewer
    with pytest.raises(ValueError, match="hold different items \\(50 and 49\\)"):
        paired_difference(*paths, "acc")
    paths[1].write_text('{"doc_id": 0}\n')
    with pytest.raises(ValueError, match=f"{paths[1]}:1: a samples record needs 'doc_id' and 'acc'"):
        paired_difference(*paths, "acc")


def test_hellaswag_preprocess_and_documents(tmp_path):
    reference = pytest.importorskip("lm_eval.tasks.hellaswag.utils", reason="lm_eval is the reference")
    for text in ("  A man [header] walks.  [title] Then  he sits. ", "[title] How to cook [step] Boil.", "plain"):
        assert preprocess(text) == reference.preprocess(text)
    (tmp_path / "hellaswag").mkdir()
    rows = [{"ind": 0, "activity_label": "Cooking", "ctx_a": "A chef chops onions.", "ctx_b": "then HE",
             "endings": ["adds salt.", "[step] leaves."], "label": "1"},
            {"ind": 1, "activity_label": "Running", "ctx": "A man runs.", "endings": ["a", "b"], "label": 0}]
    (tmp_path / "hellaswag" / "hellaswag_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = load_task("hellaswag", tmp_path)
    assert task.docs[0].query == "Cooking: A chef chops onions. Then he"   # ctx_b capitalised, as lm-eval
    assert task.docs[0].choices == ("adds salt.", " leaves.")  # lm-eval strips before dropping tags and task.docs[0].gold == 1
    assert task.docs[1].query == "Running: A man runs."
    assert task.fewshot_source == "validation" and task.draws_plus_one


def test_arc_documents_and_fewshot_split(shared_data):
    task = load_task("arc_challenge", shared_data / "eval")
    assert len(task.docs) == 1172 and len(task.fewshot_docs) == 1119 and not task.draws_plus_one
    numeric = [d for d in task.docs if d.doc["choices"]["label"][0] == "1"]
    assert numeric and all(d.doc["choices"]["label"][d.gold] == d.doc["answerKey"] for d in numeric)
    assert task.docs[0].query.startswith("Question: ") and task.docs[0].query.endswith("\nAnswer:")
    assert {len(d.choices) for d in task.docs} >= {4}


def _fails(args, capsys, match):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and match in err, err


def test_bad_input(tmp_path, capsys):
    out = str(tmp_path / "r.json")
    _fails(["--model", "m", "--tasks", "arc_easy", "--data-dir", str(tmp_path), "--out", out], capsys,
           "no ARC-Easy-Test.jsonl")
    (tmp_path / "ARC-Easy-Test.jsonl").write_text('{"id": "x", "question": {"stem": "Q?", "choices": '
                                                  '[{"text": "a", "label": "A"}]}, "answerKey": "A"}\n{oops\n')
    _fails(["--model", "m", "--tasks", "arc_easy", "--data-dir", str(tmp_path), "--out", out], capsys,
           "ARC-Easy-Test.jsonl:2: invalid JSON")
    (tmp_path / "ARC-Easy-Test.jsonl").write_text('{"id": "x", "question": {"stem": "Q?", "choices": '
                                                  '[{"text": "a", "label": "A"}]}, "answerKey": "B"}\n')
    _fails(["--model", "m", "--tasks", "arc_easy", "--data-dir", str(tmp_path), "--out", out], capsys,
           "ARC-Easy-Test.jsonl:1: answerKey 'B'")
    _fails(["--model", "m", "--tasks", "mmlu", "--out", out], capsys, "unknown task 'mmlu'")
    (tmp_path / "ARC-Easy-Test.jsonl").write_text('{"id": "x", "question": {"stem": "Q?", "choices": '
                                                  '[{"text": "a", "label": "A"}]}, "answerKey": "A"}\n')
    _fails(["--model", str(tmp_path / "missing"), "--tasks", "arc_easy", "--data-dir", str(tmp_path),
            "--out", out], capsys, "no such file or folder")
    _fails(["--model", "m", "--tasks", "arc_easy", "--data-dir", str(tmp_path), "--num-fewshot", "2",
            "--out", out], capsys, "")  # a few-shot run needs the train split


class _FakeBuilder:
    def __init__(self, splits):
        self.splits = splits

    def is_prepared(self):
        return True

    def as_data_source(self):
        return self.splits


def test_tfds_source(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    arc = {"id": b"q1", "question": b"Which is a gas?", "answerKey": b"B",
           "choices": {"text": np.array([b"ice", b"steam"], object), "label": np.array([b"A", b"B"], object)}}
    hs = {"activity_label": b"Cooking", "context": b"A chef chops onions. Then he", "endings": [b"a", b"b"],
          "label": 1, "source_id": b"x", "split_type": b"indomain"}
    builders = {"ai2_arc/ARC-Easy": _FakeBuilder({"test": [arc], "train": [arc, arc]}),
                "hellaswag": _FakeBuilder({"validation": [hs]})}
    monkeypatch.setattr(tfds, "builder", lambda name, **kw: builders[name])
    task = load_task("arc_easy")
    assert task.docs[0].query == "Question: Which is a gas?\nAnswer:" and task.docs[0].gold == 1
    assert len(task.fewshot_docs) == 2
    hellaswag = load_task("hellaswag")
    assert hellaswag.docs[0].query == "Cooking: A chef chops onions. Then he" and hellaswag.docs[0].gold == 1

    def unavailable(name, **kw):
        raise ConnectionError("no route to host\nretry later")

    monkeypatch.setattr(tfds, "builder", unavailable)
    with pytest.raises(ValueError, match=r"^tensorflow-datasets ai2_arc/ARC-Challenge is not prepared .*--data-dir"):
        load_task("arc_challenge")


def test_packed_scoring_on_a_mesh_equals_one_device():
    """The model sharded over 8 CPU devices (data x tensor), batches of any size: the same answers."""
    from teamsrl_jax.model.sharding import MeshConfig, make_mesh

    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices (tests/conftest.py forces 8 CPU devices)")
    config = LlamaConfig(**TINY)
    rng = np.random.default_rng(1)
    groups = [(tuple(rng.integers(0, 97, rng.integers(2, 30)).tolist()),
               [tuple(rng.integers(0, 97, rng.integers(1, 6)).tolist()) for _ in range(rng.integers(1, 5))])
              for _ in range(6)]
    plain = Scorer(init_model(config, seed=5), batch_tokens=128, row_length=64).score(groups)
    mesh = make_mesh(MeshConfig.parse("data=4,tensor=2"))
    sharded = Scorer(init_model(config, seed=5, mesh=mesh), batch_tokens=128, row_length=64, mesh=mesh).score(groups)
    for a, b in zip(plain, sharded):
        assert [x[0] for x in a] == pytest.approx([x[0] for x in b], abs=1e-4)
        assert [x[1] for x in a] == [x[1] for x in b]
