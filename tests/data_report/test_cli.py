"""``python -m teamsrl_jax.data_report`` end to end on real datasets and a generated-style data.jsonl: the
files, the Markdown table (a column per dataset), every figure in report.json, operations.png where there
is provenance; bad inputs give one line and exit code 2, and write nothing."""

import json
import subprocess
import sys

import pytest

from teamsrl_jax.data_report.__main__ import main

FIGURES = {"name", "path", "format", "records_in_file", "records", "with_input", "with_output",
           "instruction_words", "output_words", "distinct_1", "distinct_2", "distinct_3", "near_duplicates",
           "complexity", "operations"}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def generated(tmp_path):
    """A small data.jsonl as the generation stage writes it (provenance on every record)."""
    ops = [("add_constraints", 1), ("deepen", 1), ("add_constraints", 2), ("breadth", 2), ("add_constraints", 3)]
    rows = [{"instruction": f"Write a {k}-line poem about topic {k} using at least {k + 2} rhymes.", "input": "",
             "output": "Roses are red.", "id": f"{k}-{step}", "seed_id": k, "seed": "Write a poem.",
             "seed_source": "seeds.jsonl:1", "step": step, "operation": op, "operations": [op], "parent": "Write."}
            for k, (op, step) in enumerate(ops)]
    path = tmp_path / "run" / "data.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def table_lines(text):
    return [line for line in text.splitlines() if line.startswith("|")]


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def test_real_datasets_and_generated_provenance(shared_data, generated, tmp_path, capsys):
    out = tmp_path / "report"
    seeds = shared_data / "seeds" / "self_instruct_seed_tasks.jsonl"
    wizard = shared_data / "reference" / "wizardlm_testset_218.jsonl"
    alpaca = shared_data / "seeds" / "alpaca_sample_999.json"
    assert main([str(seeds), f"wizard={wizard}", str(alpaca), f"ours={generated}", "--out", str(out),
                 "--limit", "300", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    names = ["self_instruct_seed_tasks", "wizard", "alpaca_sample_999", "ours"]

    assert sorted(p.name for p in out.iterdir()) == ["complexity.png", "diversity.png", "lengths.png",
                                                     "operations.png", "report.json", "report.md"]
    assert all((out / name).read_bytes().startswith(PNG) for name in ("lengths.png", "diversity.png",
                                                                       "complexity.png", "operations.png"))
    lines = table_lines((out / "report.md").read_text())
    assert lines == table_lines(printed)
    assert cells(lines[0]) == ["figure", *names]
    assert all(len(cells(line)) == 1 + len(names) for line in lines[2:])
    rows = {cells(line)[0]: cells(line)[1:] for line in lines[2:]}
    assert rows["records"] == ["175", "218", "300 of 999", "5"]
    assert rows["format"] == ["self-instruct", "wizardlm", "alpaca", "alpaca"]
    assert rows["output words: mean"][1] == "-"
    assert rows["operation: add_constraints"] == ["-", "-", "-", "60.0%"]
    assert rows["with provenance (operation)"] == ["-", "-", "-", "100.0%"]

    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["dedup_threshold"] == 0.7 and report["settings"]["limit"] == 300
    assert [d["name"] for d in report["datasets"]] == names
    for d in report["datasets"]:
        assert set(d) == FIGURES
        assert set(d["instruction_words"]) == {"n", "mean", "median", "p10", "p90", "max"}
        assert set(d["complexity"]) == {"constraints", "reasoning", "structured", "questions"}
        assert all(set(v) == {"mean", "share"} for v in d["complexity"].values())
    ours = report["datasets"][3]
    assert ours["operations"]["share"] == {"add_constraints": 0.6, "breadth": 0.2, "deepen": 0.2}
    assert ours["operations"]["by_step"]["2"] == {"records": 2, "share": {"add_constraints": 0.5, "breadth": 0.5}}
    assert ours["complexity"]["constraints"] == {"mean": 2.0, "share": 1.0}  # "k-line", "at least" in each
    assert report["datasets"][0]["instruction_words"]["n"] == 175

    # the same folder again without provenance: no stale operations.png
    assert main([str(seeds), "--out", str(out), "--no-progress"]) == 0
    assert not (out / "operations.png").exists()
    assert [d["name"] for d in json.loads((out / "report.json").read_text())["datasets"]] == names[:1]


@pytest.mark.parametrize("args, message", [
    (["missing.jsonl"], "missing.jsonl: no such file"),
    (["=x.jsonl"], "expected PATH or NAME=PATH"),
    (["bad.jsonl"], "bad.jsonl:2: invalid JSON"),
    (["empty.jsonl"], "empty.jsonl: no records"),
    (["good.jsonl", "good.jsonl"], "two datasets named 'good'"),
    (["good.jsonl", "--name", "a", "b"], "--name gives 2 names for 1 datasets"),
    (["good.jsonl", "--dedup-threshold", "1.5"], "--dedup-threshold must be in (0, 1]"),
    (["good.jsonl", "--limit", "0"], "--limit must be at least 1"),
])
def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n')
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "good.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    assert main([*args, "--out", "out", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_python_dash_m_entry_point(tmp_path):
    run = subprocess.run([sys.executable, "-m", "teamsrl_jax.data_report", str(tmp_path / "nope.json"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr == f"error: {tmp_path / 'nope.json'}: no such file\n"
