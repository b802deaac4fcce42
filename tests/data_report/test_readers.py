"""The readers on the real public files (record counts as SOURCES.md states) and on hand-made ones:
formats, provenance, chat turns, sampling, dataset names, and one-line ``file:line:`` errors."""

import json

import pytest

from teamsrl_jax.data_report.readers import (dataset_names, parse_dataset_arg, read_dataset, read_examples,
                                             sample)


@pytest.mark.parametrize("rel, fmt, count, with_input", [
    ("seeds/self_instruct_seed_tasks.jsonl", "self-instruct", 175, 125),
    ("seeds/alpaca_sample_999.json", "alpaca", 999, 412),
    ("seeds/self_instruct_user_oriented_252.jsonl", "self-instruct", 252, 208),
    ("reference/teams_rl_original_generated_1386.jsonl", "alpaca", 1386, 336),
    ("reference/wizardlm_testset_218.jsonl", "wizardlm", 218, 0),
])
def test_reads_the_real_files(shared_data, rel, fmt, count, with_input):
    path = shared_data / rel
    got_format, examples = read_examples(path)
    assert (got_format, len(examples)) == (fmt, count)
    assert sum(bool(e.input) for e in examples) == with_input
    assert all(e.instruction.strip() for e in examples) and all(e.operation is None for e in examples)
    first = (json.loads(path.read_text())[0] if path.suffix == ".json"
             else json.loads(path.read_text().splitlines()[0]))
    assert examples[0].instruction == first.get("instruction", first.get("Instruction")).strip()
    assert examples[0].source == (f"{path}:2: record 0" if path.suffix == ".json" else f"{path}:1")


def test_self_instruct_takes_the_first_instance_and_wizardlm_has_no_output(shared_data):
    _, seeds = read_examples(shared_data / "seeds" / "self_instruct_seed_tasks.jsonl")
    assert seeds[1].instruction == "What is the relation between the given pairs?"
    assert seeds[1].input == "Night : Day :: Right : Left" and seeds[1].output
    _, wizard = read_examples(shared_data / "reference" / "wizardlm_testset_218.jsonl")
    assert wizard[0].instruction.startswith("If a car travels 120 miles") and wizard[0].output == ""


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_generated_records_keep_their_provenance(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [
        {"instruction": "Evolved task.", "input": "", "output": "Done.", "id": "0-1", "seed_id": 0, "step": 1,
         "operation": "deepen", "operations": ["deepen"], "parent": "Task.", "policy": {"run": "x"}},
        {"instruction": "Another.", "output": "Ok.", "step": 2, "operation": "breadth"},
        {"instruction": "A seed.", "output": "Ok."},
    ])
    fmt, examples = read_examples(path)
    assert fmt == "alpaca"
    assert [(e.operation, e.step) for e in examples] == [("deepen", 1), ("breadth", 2), (None, None)]


def test_chat_records_first_user_and_assistant_turns(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Name a fruit. "},
                      {"role": "assistant", "content": "Apple."}, {"role": "user", "content": "Another?"},
                      {"role": "assistant", "content": "Pear."}]},
    ])
    fmt, [example] = read_examples(path)
    assert fmt == "chat" and (example.instruction, example.input, example.output) == ("Name a fruit.", "", "Apple.")


def test_format_is_detected_from_content_not_suffix(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('\ufeff[{"instruction": "a", "output": "b"},\n {"instruction": "c"}]')  # with a BOM
    fmt, examples = read_examples(path)
    assert fmt == "alpaca" and [e.instruction for e in examples] == ["a", "c"]


@pytest.mark.parametrize("name, content, where, message", [
    ("a.jsonl", '{"instruction": "ok"}\n\n{"instruction": "x"\n', ":3", "invalid JSON"),
    ("a.jsonl", '{"instruction": "ok"}\n{"instruction": "  "}\n', ":2", "field 'instruction' is empty"),
    ("a.jsonl", '{"question": "ok"}\n', ":1", "unknown record format (keys: question)"),
    ("a.jsonl", '{"instruction": "ok"}\n{"messages": []}\n', ":2", "a chat record, but the file's first record"),
    ("a.jsonl", '{"Instruction": "ok"}\n{"Instruction": 3}\n', ":2", "'Instruction' must be a non-empty string"),
    ("a.jsonl", '{"instruction": "ok", "output": "x", "step": "one"}\n', ":1", "'step' must be an integer"),
    ("a.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n', ":1", "no assistant turn"),
    ("a.jsonl", '{"messages": [{"role": "assistant", "content": "hi"}]}\n', ":1", "no user turn"),
    ("a.json", '[\n {"instruction": "ok"},\n {"instruction": "x",}\n]', ":3: record 1", "invalid JSON"),
    ("a.jsonl", "\n\n", "", "no records"),
    ("a.json", "[]", "", "no records"),
])
def test_bad_files_fail_in_one_line_at_file_and_line(tmp_path, name, content, where, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError) as err:
        read_examples(path)
    text = str(err.value)
    assert text.startswith(f"{path}{where}:") and message in text and "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_examples(tmp_path / "nope.jsonl")


def test_sample_is_seeded_and_keeps_file_order(shared_data):
    path = shared_data / "seeds" / "alpaca_sample_999.json"
    ds = read_dataset("a", path, limit=50, seed=3)
    assert (len(ds.examples), ds.records_in_file) == (50, 999)
    lines = [int(e.source.split(":")[-2]) for e in ds.examples]
    assert lines == sorted(lines)
    assert ds.examples == read_dataset("a", path, limit=50, seed=3).examples
    assert ds.examples != read_dataset("a", path, limit=50, seed=4).examples
    assert sample(list(ds.examples), 80, 0) == list(ds.examples)


def test_dataset_arguments_and_names():
    assert parse_dataset_arg("ours=runs/a/data.jsonl") == ("ours", "runs/a/data.jsonl")
    assert parse_dataset_arg("runs/a=b/data.jsonl") == (None, "runs/a=b/data.jsonl")
    assert parse_dataset_arg("seeds.json") == (None, "seeds.json")
    for bad in ("=x.jsonl", "ours=", " =x"):
        with pytest.raises(ValueError, match="NAME=PATH"):
            parse_dataset_arg(bad)
    args = [(None, "runs/a/data.jsonl"), (None, "runs/b/data.jsonl"), ("alpaca", "x.json"), (None, "s.jsonl")]
    assert dataset_names(args, None) == ["a/data", "b/data", "alpaca", "s"]
    assert dataset_names([(None, "a"), (None, "b")], ["x", "y"]) == ["x", "y"]
    with pytest.raises(ValueError, match="2 names for 1 datasets"):
        dataset_names([(None, "a")], ["x", "y"])
    with pytest.raises(ValueError, match="two datasets named 'x'"):
        dataset_names([("x", "a"), ("x", "b")], None)
