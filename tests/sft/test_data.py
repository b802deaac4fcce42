"""The SFT input pipeline: template text, loss masks, truncation, packing, order, resume, bad records."""

import json

import numpy as np
import pytest

from teamsrl_jax.sft import data
from teamsrl_jax.sft.records import DataError, Record, read_records


def _n(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_alpaca_template_text_exact():
    with_input = Record(instruction="Add the numbers.", input="2 and 3", output="5")
    assert data.alpaca_prompt(with_input) == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n")
    assert data.alpaca_prompt(Record(instruction="Say hi.", output="hi")) == (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nSay hi.\n\n### Response:\n")


def test_alpaca_loss_tokens_are_response_plus_eos(tokenizer):
    recs = [Record(instruction="Add the numbers.", input="2 and 3", output="The sum is 5."),
            Record(instruction="Name a colour.", output="Blue is a colour.")]
    for rec, ex in zip(recs, data.encode(tokenizer, recs, 512)):
        prompt_len = len(tokenizer(data.alpaca_prompt(rec))["input_ids"])
        assert ex.num_loss_tokens == _n(tokenizer, rec.output) + 1
        assert len(ex.tokens) == prompt_len + _n(tokenizer, rec.output) + 1
        assert not ex.mask[:prompt_len].any() and ex.mask[prompt_len:].all()
        assert ex.tokens[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ex.tokens[ex.mask][:-1]) == rec.output


def test_chat_loss_only_on_assistant_turns(tokenizer):
    rec = Record(messages=(("system", "Be brief."), ("user", "Hi there"), ("assistant", "Hello you"),
                           ("user", "Bye now"), ("assistant", "Goodbye")))
    ex = data.encode(tokenizer, [rec], 512)[0]
    eos = tokenizer.eos_token
    learned = tokenizer.decode(ex.tokens[ex.mask], skip_special_tokens=False)
    assert learned == f"Hello you{eos}Goodbye{eos}"
    assert ex.num_loss_tokens == _n(tokenizer, "Hello you") + _n(tokenizer, "Goodbye") + 2


def test_truncation_keeps_prompt_cuts_response(tokenizer):
    rec = Record(instruction="Write words.", output=" ".join(["word"] * 400))
    prompt_len = len(tokenizer(data.alpaca_prompt(rec))["input_ids"])
    ex = data.encode(tokenizer, [rec], prompt_len + 40)[0]
    assert len(ex.tokens) == prompt_len + 40 and int(ex.mask.sum()) == 40
    assert not ex.mask[:prompt_len].any()
    long_prompt = Record(instruction=" ".join(["ask"] * 400), output=" ".join(["word"] * 400))
    ex = data.encode(tokenizer, [long_prompt], 64)[0]
    assert len(ex.tokens) == 64 and int(ex.mask.sum()) == 16  # the response keeps a quarter


def test_pack_rows_layout():
    ex = [data.Example(np.arange(1, n + 1, dtype=np.int32), np.r_[np.zeros(2, bool), np.ones(n - 2, bool)])
          for n in (5, 4, 7)]
    rows = data.pack_order([5, 4, 7], [0, 1, 2], seq_len=8, packing=True)
    assert rows == [[0, 1], [2]]
    b = data.make_rows(ex, rows, seq_len=8)
    np.testing.assert_array_equal(b["segment_ids"][0], [1, 1, 1, 1, 2, 2, 2, 0])
    np.testing.assert_array_equal(b["positions"][0], [0, 1, 2, 3, 0, 1, 2, 0])
    np.testing.assert_array_equal(b["input_ids"][0], [1, 2, 3, 4, 1, 2, 3, 0])
    np.testing.assert_array_equal(b["targets"][0], [2, 3, 4, 5, 2, 3, 4, 0])
    np.testing.assert_array_equal(b["loss_mask"][0], [0, 1, 1, 1, 0, 1, 1, 0])
    assert data.pack_order([5, 4, 7], [0, 1, 2], seq_len=8, packing=False) == [[0], [1], [2]]


def _toy_examples(n, seed=0):
    rng = np.random.default_rng(seed)
    return [data.Example(rng.integers(1, 50, k).astype(np.int32), np.ones(k, bool)) for k in rng.integers(3, 12, n)]


def test_loader_order_is_seeded_and_resumable():
    ex = _toy_examples(40)
    a = data.PackedLoader(ex, seq_len=16, global_batch=4, seed=3)
    stream = [next(a) for _ in range(12)]  # crosses an epoch boundary
    assert a.position["epoch"] >= 1
    b = data.PackedLoader(ex, seq_len=16, global_batch=4, seed=3)
    b.set_position({"epoch": 0, "index": 5})
    for want in stream[5:]:
        got = next(b)
        for k in data.BATCH_KEYS:
            np.testing.assert_array_equal(got[k], want[k])
    c = data.PackedLoader(ex, seq_len=16, global_batch=4, seed=4)
    assert not np.array_equal(next(c)["input_ids"], stream[0]["input_ids"])
    # every example appears exactly once per epoch
    seen = sorted(i for row in a.rows(1) for i in row)
    assert seen == list(range(40))


def test_loader_process_slices_tile_the_global_batch():
    ex = _toy_examples(30)
    full = next(data.PackedLoader(ex, seq_len=16, global_batch=4, seed=1))
    parts = [next(data.PackedLoader(ex, seq_len=16, global_batch=4, seed=1, process_index=p, process_count=2))
             for p in range(2)]
    for k in data.BATCH_KEYS:
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), full[k])


def test_eval_split_deterministic_and_disjoint():
    tr, ev = data.split_eval(100, eval_fraction=0.1, seed=0)
    tr2, ev2 = data.split_eval(100, eval_fraction=0.1, seed=0)
    assert len(ev) == 10 and set(tr) | set(ev) == set(range(100)) and not set(tr) & set(ev)
    np.testing.assert_array_equal(ev, ev2)
    assert len(data.split_eval(100, eval_count=7, eval_fraction=0.5)[1]) == 7


@pytest.mark.parametrize("line, want", [
    ('{"instruction": "a", "output": "b"', "malformed JSON"),
    ('{"output": "b"}', "missing 'instruction'"),
    ('{"instruction": "a"}', "missing 'output'"),
    ('{"instruction": 3, "output": "b"}', "'instruction' must be a string"),
    ('{"instruction": "  ", "output": "b"}', "'instruction' is empty"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "no assistant turn"),
    ('{"messages": [{"role": "bot", "content": "x"}]}', "role must be one of"),
    ('[1, 2]', "must be a JSON object"),
])
def test_bad_jsonl_record_names_file_and_line(tmp_path, line, want):
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "ok", "output": "fine"}\n\n' + line + "\n")
    with pytest.raises(DataError) as e:
        read_records(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:3: ") and want in msg and "\n" not in msg


def test_json_array_lines_and_errors(tmp_path):
    path = tmp_path / "d.json"
    recs = [{"instruction": "a", "input": "", "output": "b"}, {"instruction": "c", "output": "d", "extra": 1}]
    path.write_text(json.dumps(recs, indent=2))
    got = read_records(path)
    assert [(r.instruction, r.output, r.line) for r in got] == [("a", "b", 2), ("c", "d", 7)]
    path.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c"}\n]')
    with pytest.raises(DataError, match=r"d\.json:3: missing 'output'"):
        read_records(path)


def test_tfds_path_matches_jsonl_path(tmp_path, tokenizer):
    pytest.importorskip("tensorflow_datasets")
    from teamsrl_jax.sft.tfds_builder import load_tfds_records

    path = tmp_path / "mixed.jsonl"
    rows = [{"instruction": f"Task {i} é", "input": "ctx" if i % 2 else "", "output": f"Answer {i}"} for i in range(9)]
    rows.insert(4, {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = read_records(path)
    via_tfds = load_tfds_records(path, tmp_path / "tfds")
    assert via_tfds == plain
    assert load_tfds_records(path, tmp_path / "tfds") == plain  # second call reuses the built dataset
    for a, b in zip(data.encode(tokenizer, plain, 128), data.encode(tokenizer, via_tfds, 128)):
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_array_equal(a.mask, b.mask)
