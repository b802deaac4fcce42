"""``python -m teamsrl_jax.pipeline``: the quick configuration end to end (every artefact), kill -9 during the SFT
stage and ``--resume`` (the same results as an uninterrupted run), refused changes, and the default
configuration's stages on the real model at a smaller size."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from teamsrl_jax.pipeline.__main__ import main
from teamsrl_jax.pipeline.config import DEFAULTS, load
from teamsrl_jax.pipeline.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "experiments" / "quick.yaml"
ARTEFACTS = ("report.md", "state.json", "plots/reward_curve.png", "plots/operations.png", "plots/sft_loss.png",
             "plots/roc.png", "policy/summary.json", "data/data.jsonl", "data/report.json", "split/train.jsonl",
             "split/heldout.jsonl", "sft/final/config.json", "eval_base/results.json", "eval_sft/results.json",
             "mia/mia.json", "data_report/report.md")


def _env():
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}


@pytest.fixture(scope="module")
def quick_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "quick"
    proc = subprocess.run([sys.executable, "-m", "teamsrl_jax.pipeline", "--config", str(QUICK), "--out", str(out),
                           "--eval-data", str(shared_data / "eval"), "--no-progress"],
                          capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_quick_pipeline_produces_every_artefact(quick_run):
    out, stdout = quick_run
    for name in ARTEFACTS:
        assert (out / name).exists(), name
    state = json.loads((out / "state.json").read_text())
    assert [s for s in STAGES if state["stages"][s]["status"] == "done"] == list(STAGES)
    for i, stage in enumerate(STAGES, 1):  # a one-line summary per stage
        assert f"[{i}/{len(STAGES)}] {stage}: " in stdout
    report = (out / "report.md").read_text()
    for needle in ("uniform_random", "per kept example", "acc_norm", "items better / worse", "AUC", "SFT",
                   "offline simulator"):
        assert needle in report, needle
    split = state["stages"]["split"]["summary"]
    assert split["members"] + split["nonmembers"] == state["stages"]["data"]["summary"]["report"]["examples"]
    mia = json.loads((out / "mia" / "mia.json").read_text())
    assert mia["n_members"] == split["members"] and mia["n_nonmembers"] == split["nonmembers"]


def test_resume_skips_finished_stages_and_refuses_changes(quick_run, shared_data, tmp_path, capsys):
    out, _ = quick_run
    before = (out / "report.md").read_text()
    assert main(["--config", str(QUICK), "--out", str(out), "--eval-data", str(shared_data / "eval"), "--resume",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("done before") == len(STAGES)
    assert (out / "report.md").read_text() == before
    changed = yaml.safe_load(QUICK.read_text())
    changed["sft"]["learning_rate"] = 5e-4
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    assert main(["--config", str(path), "--out", str(out), "--eval-data", str(shared_data / "eval"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "stage 'sft' ran with sft.learning_rate=0.001" in err and "0.0005" in err
    assert main(["--config", str(QUICK), "--out", str(out)]) == 2  # an existing run without --resume
    assert "already holds a pipeline run" in capsys.readouterr().err


def test_kill_during_sft_then_resume_gives_the_same_results(quick_run, shared_data, tmp_path):
    reference, _ = quick_run
    out = tmp_path / "killed"
    # the stages before the SFT are the reference run's (deterministic; their own resume is tested elsewhere)
    shutil.copytree(reference, out, ignore=shutil.ignore_patterns("sft", "eval_*", "mia", "data_report", "report.md",
                                                                  "plots"))
    state = json.loads((out / "state.json").read_text())
    state["stages"] = {k: v for k, v in state["stages"].items() if STAGES.index(k) < STAGES.index("sft")}
    (out / "state.json").write_text(json.dumps(state))
    args = [sys.executable, "-m", "teamsrl_jax.pipeline", "--config", str(QUICK), "--out", str(out),
            "--eval-data", str(shared_data / "eval"), "--no-progress"]
    proc = subprocess.Popen(args + ["--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env())
    deadline = time.monotonic() + 400
    killed = False
    while proc.poll() is None and time.monotonic() < deadline:
        state = out / "state.json"
        try:
            stages = json.loads(state.read_text())["stages"] if state.exists() else {}
        except json.JSONDecodeError:
            stages = {}
        # once the SFT has saved a checkpoint, kill it mid-stage
        if stages.get("sft", {}).get("status") == "running" and any((out / "sft" / "checkpoints").glob("[0-9]*")):
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.2)
    proc.wait(timeout=60)
    assert killed, "the run ended before the SFT stage could be killed"
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[5/10] sft: resuming" in done.stdout
    ref = json.loads((reference / "state.json").read_text())["stages"]
    got = json.loads((out / "state.json").read_text())["stages"]
    for stage in ("sft", "eval_sft", "mia"):
        a = {k: v for k, v in ref[stage]["summary"].items() if k not in ("seconds", "model", "line")}
        b = {k: v for k, v in got[stage]["summary"].items() if k not in ("seconds", "model", "line")}
        assert a == pytest.approx(b) if stage == "sft" else a == b, stage
    assert (reference / "data" / "data.jsonl").read_text() == (out / "data" / "data.jsonl").read_text()


def test_config_errors_name_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_model: tiny\nsft:\n  learning_rat: 0.1\n")
    assert main(["--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "learning_rat" in capsys.readouterr().err
    bad.write_text("nonsense: 1\n")
    assert main(["--config", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "unknown field 'nonsense'" in capsys.readouterr().err
    bad.write_text("sft: [1, 2\n")
    assert main(["--config", str(bad), "--out", str(tmp_path / "o3")]) == 2
    assert "bad.yaml:" in capsys.readouterr().err
    cfg = load(None)
    assert cfg.sft == DEFAULTS["sft"] and cfg.base_model == "smollm2"
    assert load(QUICK).sft["max_length"] == 256 and load(QUICK).sft["dtype"] == "float32"  # merged over defaults


def test_default_configuration_stages_on_the_real_model(smollm2_gguf, shared_data, tmp_path):
    """The default run's configuration, each stage at a smaller size, in its own process as the command runs:
    the simulator rewrites, SmolLM2 answers, is fine-tuned for a step, evaluated on a few items and attacked."""
    small = {"train_policy": {"iterations": 1, "num_chains": 8, "eval_chains": 8, "eval_episodes": 1,
                              "checkpoint_every": 1},
             "generate": {"chains": 8, "steps": 1, "max_examples": 5, "responder_max_tokens": 8,
                          "responder": {**DEFAULTS["generate"]["responder"], "batch_slots": 4}},
             "sft": {"max_steps": 1, "max_length": 64, "checkpoint_every": 0},
             "evaluate": {"tasks": ["arc_easy"], "limit": 1},
             "mia": {"bootstrap": 5, "max_length": 64}}
    path = tmp_path / "small_default.yaml"
    path.write_text(yaml.safe_dump(small))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "teamsrl_jax.pipeline", "--config", str(path), "--out", str(out),
                           "--eval-data", str(shared_data / "eval"), "--no-progress"],
                          capture_output=True, text=True, timeout=900, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = {k: v["summary"] for k, v in json.loads((out / "state.json").read_text())["stages"].items()}
    assert summaries["base"]["path"] == str(smollm2_gguf.resolve())
    assert summaries["data"]["report"]["examples"] == 5
    records = [json.loads(line) for line in (out / "data" / "data.jsonl").read_text().splitlines()]
    assert all(r["responder"]["backend"] == "jax" and r["instructor"]["backend"] == "simulated" for r in records)
    assert summaries["sft"]["steps"] == 1 and (out / "sft" / "final" / "model.safetensors").exists()
    assert summaries["eval_sft"]["n-samples"]["arc_easy"]["effective"] == 1
    assert set(summaries["mia"]["scores"]) >= {"loss", "ref"}
    assert "offline simulator" in (out / "report.md").read_text()
