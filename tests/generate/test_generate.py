"""``python -m teamsrl_jax.generate`` end to end on the offline simulator: counts, filters, provenance, the
paper schedule's forced steps, resume after kill -9, and bad input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from teamsrl_jax.backends import Completion
from teamsrl_jax.env.simulator import SimulatedBackend
from teamsrl_jax.env.text import words
from teamsrl_jax.fileio import read_jsonl
from teamsrl_jax.generate.__main__ import build_parser, config_from_args, generate, main
from teamsrl_jax.generate.dedup import rouge_l_f, rouge_tokens
from teamsrl_jax.generate.policy import PAPER_FORCED_BREADTH
from teamsrl_jax.generate.run import DROP_REASONS, Generation

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT.parent / "shared" / "data" / "seeds" / "self_instruct_seed_tasks.jsonl"


def seed_file(tmp_path: Path, n: int) -> Path:
    """``n`` real seed tasks where the shared data is present, else the bundled default seeds."""
    if SEEDS.exists():
        lines = SEEDS.read_text(encoding="utf-8").splitlines()[:n]
    else:
        from teamsrl_jax.env.seeds import DEFAULT_SEED_FILE
        lines = DEFAULT_SEED_FILE.read_text(encoding="utf-8").splitlines()[:n]
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli_config(*args: str):
    return config_from_args(build_parser().parse_args(list(args)))


def run(policy: Path, out: Path, *args: str, resume: bool = False) -> dict:
    cfg = cli_config("--policy", str(policy), "--out", str(out), *args)
    return generate(cfg, out, resume=resume, progress=False)


def test_counts_filters_and_provenance(policy_run, tmp_path, capsys):
    seeds = seed_file(tmp_path, 24)
    out = tmp_path / "gen"
    report = run(policy_run, out, "--seeds", str(seeds), "--chains", "10", "--steps", "4")
    records = read_jsonl(out / "data.jsonl")
    # every rewrite is either an example or a drop with its reason
    assert report["examples"] == len(records) > 0
    assert report["rewrites"] == 24 * 4 == report["examples"] + sum(report["drops"].values())
    assert set(report["drops"]) == set(DROP_REASONS)
    assert report["sent_to_responder"] == report["examples"] + report["drops"]["empty_response"] \
        + report["drops"]["truncated_response"]
    assert report["requests"]["instructor"]["requests"] == 24 * 4
    assert report["expert_queries"] == 24 * 4 + report["sent_to_responder"]
    assert report["ratio_vs_evol_instruct_same_seeds"] == pytest.approx(report["expert_queries"] / (24 * 12), abs=1e-6)
    assert sum(sum(step.values()) for step in report["operations_chosen_by_step"]) == 24 * 4
    assert sum(sum(step.values()) for step in report["examples_by_step"]) == len(records)
    # provenance: the seed, the operation path that produced the instruction, the policy and both roles
    seed_texts = [json.loads(line)["instruction"] for line in seeds.read_text().splitlines()]
    ids = set()
    for r in records:
        assert r["input"] == "" and r["output"].strip()
        assert r["id"] == f"{r['seed_id']}-{r['step']}" and r["id"] not in ids
        ids.add(r["id"])
        assert r["seed"].startswith(seed_texts[r["seed_id"]]) and r["seed_source"].endswith(f":{r['seed_id'] + 1}")
        assert 1 <= r["step"] <= 4 and r["operation"] == r["operations"][-1] and len(r["operations"]) <= r["step"]
        assert r["policy"]["checkpoint"] == 2 and r["policy"]["schedule"] == "policy"
        assert r["instructor"] == {"backend": "simulated", "model": "simulated-v1"} == r["responder"]
        assert r["instruction"] != r["parent"]
    # records come in (batch, step, chain) order
    order = [(r["seed_id"] // 10, r["step"], r["seed_id"]) for r in records]
    assert order == sorted(order)
    # the filters: no two kept instructions are near-duplicates, lengths within bounds
    tokens = [rouge_tokens(r["instruction"]) for r in records]
    for i in range(len(tokens)):
        for j in range(i):
            assert rouge_l_f(tokens[i], tokens[j]) < 0.7
    assert all(3 <= len(words(r["instruction"])) <= 2048 for r in records)
    assert report["drops"]["near_duplicate"] > 0
    printed = capsys.readouterr().out
    assert f"dataset: {len(records)} examples" in printed and "expert queries" in printed
    for name in ("report.json", "operations.png", "lengths.png", "config.json", "cache.sqlite"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "report.json").read_text())["examples"] == len(records)


def test_length_bounds_dedup_off_and_max_examples(policy_run, tmp_path):
    seeds = seed_file(tmp_path, 12)
    report = run(policy_run, tmp_path / "a", "--seeds", str(seeds), "--chains", "12", "--steps", "3",
                 "--dedup-threshold", "none", "--min-words", "15", "--max-words", "40")
    assert report["drops"]["near_duplicate"] == 0 and report["drops"]["too_short"] > 0
    lengths = [len(words(r["instruction"])) for r in read_jsonl(tmp_path / "a" / "data.jsonl")]
    assert lengths and all(15 <= n <= 40 for n in lengths)
    capped = run(policy_run, tmp_path / "b", "--seeds", str(seeds), "--chains", "4", "--steps", "3",
                 "--dedup-threshold", "none", "--max-examples", "5")
    assert capped["examples"] == 5 == len(read_jsonl(tmp_path / "b" / "data.jsonl"))
    assert capped["seeds_used"] < 12  # stopped early


def test_greedy_is_deterministic_and_sampling_depends_on_the_seed(policy_run, tmp_path):
    seeds = seed_file(tmp_path, 8)
    common = ("--seeds", str(seeds), "--chains", "8", "--steps", "3", "--dedup-threshold", "none")
    ops = []
    for name, extra in (("g1", ("--greedy",)), ("g2", ("--greedy", "--seed", "5")), ("s1", ()), ("s2", ("--seed", "5"))):
        report = run(policy_run, tmp_path / name, *common, *extra)
        ops.append(report["operations_chosen_by_step"])
    assert ops[0] == ops[1]      # argmax ignores the sampling seed
    assert ops[2] != ops[3]      # samples depend on it


def test_paper_schedule_forces_the_originals_pattern(policy_run, tmp_path):
    seeds = seed_file(tmp_path, 16)
    report = run(policy_run, tmp_path / "p", "--seeds", str(seeds), "--chains", "8", "--steps", "6",
                 "--schedule", "paper", "--dedup-threshold", "none")
    for t, chosen in enumerate(report["operations_chosen_by_step"]):
        if t in PAPER_FORCED_BREADTH:   # the 2nd and 5th steps: breadth for every chain
            assert chosen["breadth"] == 16 and sum(chosen.values()) == 16
        else:                            # elsewhere breadth is replaced by add_constraints
            assert chosen["breadth"] == 0
    records = read_jsonl(tmp_path / "p" / "data.jsonl")
    assert {r["step"] for r in records if r["operation"] == "breadth"} <= {2, 5}
    assert all(r["operation"] == "breadth" for r in records if r["step"] in (2, 5))
    assert all(r["policy"]["schedule"] == "paper" for r in records)
    # +0.7 on add_constraints makes it the most chosen operation outside the forced steps
    free = Counter()
    for t, chosen in enumerate(report["operations_chosen_by_step"]):
        if t not in PAPER_FORCED_BREADTH:
            free.update(chosen)
    assert free.most_common(1)[0][0] == "add_constraints"


class EmptyOnSome(SimulatedBackend):
    """Answers every third responder prompt with empty text, and every fifth with a reply cut at the cap."""

    def generate(self, prompts, params, role, sample_indices=None):
        out = super().generate(prompts, params, role, sample_indices)
        if role != "responder":
            return out
        for i, p in enumerate(prompts):
            h = sum(map(ord, p))
            if h % 3 == 0:
                out[i] = Completion("  \n", 5, 1, "stop")
            elif h % 5 == 0:
                out[i] = Completion(out[i].text, out[i].prompt_tokens, out[i].completion_tokens, "length")
        return out


def test_empty_and_truncated_responses_are_counted_drops(policy_run, tmp_path):
    seeds = seed_file(tmp_path, 16)
    cfg = cli_config("--policy", str(policy_run), "--out", str(tmp_path / "e"), "--seeds", str(seeds),
                     "--chains", "16", "--steps", "3", "--cache", "")
    backend = EmptyOnSome()
    gen = Generation(cfg, tmp_path / "e", backend, backend)
    report = gen.run(progress=False)
    records = read_jsonl(tmp_path / "e" / "data.jsonl")
    assert report["drops"]["empty_response"] > 0 and report["drops"]["truncated_response"] > 0
    assert report["sent_to_responder"] == len(records) + report["drops"]["empty_response"] \
        + report["drops"]["truncated_response"]
    assert all(r["output"].strip() and r["response_finish_reason"] == "stop" for r in records)


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "teamsrl_jax.generate", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, **kw)


def test_resume_after_kill_gives_the_same_file(policy_run, tmp_path):
    seeds = seed_file(tmp_path, 8)
    common = ["--policy", str(policy_run), "--seeds", str(seeds), "--chains", "4", "--steps", "3",
              "--sim-latency", "0.02", "--concurrency", "4"]
    ref = tmp_path / "ref"
    proc = _cli(*common, "--out", str(ref))
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    expected = (ref / "data.jsonl").read_text(encoding="utf-8")
    assert expected.count("\n") > 5
    out = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    for attempt in range(4):
        proc = _cli(*common, "--out", str(out), *(["--resume"] if attempt else []))
        deadline = time.monotonic() + 300
        while not (out / "data.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if proc.returncode == 0:
            break
    assert kills >= 1
    if proc.returncode != 0:  # finish the run
        proc = _cli(*common, "--out", str(out), "--resume")
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    assert (out / "data.jsonl").read_text(encoding="utf-8") == expected
    # a rerun of the finished run asks the backend nothing and leaves the file as it is
    proc = _cli(*common, "--out", str(out), "--resume")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert all(a["queries"] == 0 for role in report["backend_accounting"].values() for a in role.values())
    assert report["resumed_records"] == expected.count("\n")
    assert (out / "data.jsonl").read_text(encoding="utf-8") == expected


def test_resume_drops_a_torn_line_and_refuses_changed_inputs(policy_run, tmp_path):
    seeds = seed_file(tmp_path, 8)
    out = tmp_path / "g"
    common = ("--seeds", str(seeds), "--chains", "8", "--steps", "2")
    run(policy_run, out, *common)
    full = (out / "data.jsonl").read_text(encoding="utf-8")
    lines = full.splitlines(keepends=True)
    (out / "data.jsonl").write_text("".join(lines[:2]) + lines[2][:25], encoding="utf-8")  # a kill mid-write
    run(policy_run, out, *common, resume=True)
    assert (out / "data.jsonl").read_text(encoding="utf-8") == full
    with pytest.raises(ValueError, match="already holds a dataset"):
        run(policy_run, out, *common)
    with pytest.raises(ValueError, match="different steps"):
        run(policy_run, out, "--seeds", str(seeds), "--chains", "8", "--steps", "3", resume=True)
    with pytest.raises(ValueError, match="different responder.model"):
        run(policy_run, out, *common, "--responder-model", "other", resume=True)
    edited = full.replace('"output": "', '"output": "EDITED ', 1)
    (out / "data.jsonl").write_text(edited, encoding="utf-8")
    with pytest.raises(ValueError, match=r"data.jsonl:1: the record there differs"):
        run(policy_run, out, *common, resume=True)


def test_bad_input_is_one_line_and_exit_2(policy_run, tmp_path, capsys):
    def fails(args, match):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar, if one started
        assert err.startswith("error: ") and match in err, err

    empty_run = tmp_path / "untrained"
    empty_run.mkdir()
    (empty_run / "config.json").write_text((policy_run / "config.json").read_text())
    fails(["--policy", str(empty_run), "--out", str(tmp_path / "o1")], "has no checkpoint")
    fails(["--policy", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")], "not a train_policy run folder")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Say hi."}\n{"instruction": 3}\n', encoding="utf-8")
    fails(["--policy", str(policy_run), "--seeds", str(bad), "--out", str(tmp_path / "o3")], f"{bad}:2:")
    fails(["--policy", str(policy_run), "--out", str(tmp_path / "o4"), "--backend", "openai", "--model", "m",
           "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0", "--timeout", "2"], "")
    assert not (tmp_path / "o4" / "data.jsonl").exists() or not (tmp_path / "o4" / "data.jsonl").read_text()


def test_paper_preset_policy_float64(tmp_path, smollm2_gguf):
    """The paper preset (float64 RL core, one-hot features) trained and used with the paper schedule, in a
    subprocess (jax_enable_x64 is process-wide), with the real model answering: the engine keeps its own float32
    programs while the RL core runs in float64."""
    pol, out = tmp_path / "pol", tmp_path / "gen"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    train = subprocess.run([sys.executable, "-m", "teamsrl_jax.train_policy", "--preset", "paper", "--out", str(pol),
                            "--iterations", "2", "--checkpoint-every", "2", "--eval-episodes", "0"],
                           capture_output=True, text=True, timeout=300, env=env)
    assert train.returncode == 0, train.stderr[-2000:]
    gen = subprocess.run([sys.executable, "-m", "teamsrl_jax.generate", "--policy", str(pol), "--out", str(out),
                          "--schedule", "paper", "--chains", "8", "--dedup-threshold", "none", "--max-examples", "4",
                          "--responder-backend", "jax", "--responder-model", str(smollm2_gguf),
                          "--responder-max-tokens", "8", "--keep-truncated", "--batch-slots", "4"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert gen.returncode == 0, gen.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 6 and report["examples"] == 4
    for t, chosen in enumerate(report["operations_chosen_by_step"]):  # the forced pattern, where steps ran
        assert chosen["breadth"] == (sum(chosen.values()) if t in PAPER_FORCED_BREADTH else 0)
    records = read_jsonl(out / "data.jsonl")
    assert all(r["responder"]["backend"] == "jax" and r["output"].strip() for r in records)
