"""Seed readers (real Alpaca / Self-Instruct files and broken ones) and the SeedPool."""

import json

import pytest

from teamsrl_jax.env.seeds import DEFAULT_SEED_FILE, Seed, SeedPool, read_seeds


def test_reads_real_alpaca_list(shared_data):
    path = shared_data / "seeds" / "alpaca_sample_999.json"
    seeds = read_seeds(path)
    assert len(seeds) == 999
    records = json.loads(path.read_text())
    with_input = [i for i, r in enumerate(records) if r["input"].strip()]
    i = with_input[0]
    assert seeds[i].text == records[i]["instruction"].strip() + "\n\n" + records[i]["input"].strip()
    assert seeds[0].text == records[0]["instruction"].strip() and seeds[0].source == f"{path}:2: record 0"
    assert len(SeedPool(seeds)) == 985  # duplicates dropped


def test_json_list_sources_name_each_records_first_line(tmp_path):
    records = [{"instruction": f"task {i}", "input": "a\nb" * (i % 3)} for i in range(40)]
    text = "[\n" + ",\n\n".join(json.dumps(r, indent=i % 4 or None) for i, r in enumerate(records)) + "\n]\n"
    path = tmp_path / "a.json"
    path.write_text(text)
    starts = [text.index(json.dumps(r, indent=i % 4 or None)) for i, r in enumerate(records)]
    expected = [f"{path}:{text[:s].count(chr(10)) + 1}: record {i}" for i, s in enumerate(starts)]
    assert [seed.source for seed in read_seeds(path)] == expected and expected[-1] != expected[-2]


def test_reads_real_self_instruct(shared_data):
    seeds = read_seeds(shared_data / "seeds" / "self_instruct_seed_tasks.jsonl")
    assert len(seeds) == 175
    assert seeds[1].instruction == "What is the relation between the given pairs?"
    assert seeds[1].text.endswith("\n\nNight : Day :: Right : Left")
    assert seeds[0].input == "" and seeds[0].text == seeds[0].instruction
    assert len(read_seeds(shared_data / "seeds" / "self_instruct_user_oriented_252.jsonl")) == 252


@pytest.mark.parametrize("name, content, location, message", [
    ("a.jsonl", '{"instruction": "ok"}\n\n{"instruction": "x"\n', ":3:", "invalid JSON"),
    ("a.jsonl", '{"instruction": "ok"}\n{"input": "x"}\n', ":2:", "missing field 'instruction'"),
    ("a.jsonl", '{"instruction": "   "}\n', ":1:", "field 'instruction' is empty"),
    ("a.jsonl", '{"instruction": "ok", "input": 3}\n', ":1:", "field 'input' must be a string"),
    ("a.jsonl", '["instruction"]\n', ":1:", "expected a JSON object"),
    ("a.jsonl", '{"instruction": "ok", "instances": {"input": ""}}\n', ":1:", "'instances' must be a list"),
    ("a.json", '[\n  {"instruction": "ok"},\n  {"instruction": ""}\n]', ":3: record 1", "is empty"),
    ("a.json", '[\n  {"instruction": "ok"},\n  {"instruction": "x",}\n]', ":3: record 1", "invalid JSON"),
    ("a.json", '[\n  {"instruction": "ok"}\n  {"instruction": "x"}\n]', ":3: record 1", "expected ','"),
    ("a.json", '[]', "", "no seed records"),
])
def test_bad_seed_files_report_file_and_line(tmp_path, name, content, location, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError) as err:
        read_seeds(path)
    text = str(err.value)
    assert text.startswith(f"{path}{location}") and message in text and "\n" not in text


def test_bundled_default_seeds():
    seeds = read_seeds(DEFAULT_SEED_FILE)
    assert 40 <= len(seeds) <= 60 and len({s.text for s in seeds}) == len(seeds)
    assert sum(bool(s.input) for s in seeds) >= 5


def test_pool_draws_without_replacement_then_reshuffles_deterministically():
    pool = SeedPool([f"instruction {i}" for i in range(10)], seed=3)
    first, second = pool.draw(10), pool.draw(10)
    assert len({s.text for s in first}) == 10 and len({s.text for s in second}) == 10
    assert [s.text for s in first] != [s.text for s in second]
    again = SeedPool([f"instruction {i}" for i in range(10)], seed=3)
    assert again.draw(20) == first + second
    assert [s.text for s in SeedPool([f"instruction {i}" for i in range(10)], seed=4).draw(10)] != \
        [s.text for s in first]


def test_pool_split_is_deterministic_and_disjoint():
    pool = SeedPool([Seed(f"i{i}") for i in range(50)])
    train, held = pool.split(0.2, seed=1)
    assert len(train) == 40 and len(held) == 10
    assert not {s.text for s in train.seeds} & {s.text for s in held.seeds}
    assert [s.text for s in pool.split(0.2, seed=1)[1].seeds] == [s.text for s in held.seeds]
    assert [s.text for s in pool.split(0.2, seed=2)[1].seeds] != [s.text for s in held.seeds]
    with pytest.raises(ValueError, match="held_out_fraction"):
        pool.split(1.0)
