"""``python -m teamsrl_jax.sft`` end to end on the tiny preset: outputs, exact resume, HF export, and
one-line errors with exit code 2."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from teamsrl_jax.sft.__main__ import main
from teamsrl_jax.sft.config import load_config

from .conftest import make_records

ARGS = ["--preset", "tiny", "--max-steps", "6", "--global-batch-size", "8", "--max-length", "128",
        "--eval-count", "8", "--eval-every", "0", "--checkpoint-every", "3", "--tiny-vocab-size", "512",
        "--no-progress", "--no-tensorboard"]


def losses(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["loss"], r["grad_norm"]) for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "alpaca.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_records(48)))
    return path


@pytest.fixture(scope="module")
def full_run(data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    assert main([*ARGS, "--data", str(data_file), "--out", str(out)]) == 0
    return out


def test_cli_tiny_preset_writes_metrics_checkpoints_and_hf_export(full_run):
    rows = [json.loads(line) for line in (full_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(r["loss"]) and r["loss_tokens"] > 0 for r in rows if "loss" in r)
    assert "tokens_per_s" in rows[-2] and "mfu" not in rows[-2]  # CPU: MFU n/a, not written
    assert any("eval_loss" in r for r in rows)
    assert sorted(p.name for p in (full_run / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]

    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(full_run / "final")
    tok = AutoTokenizer.from_pretrained(full_run / "final")
    assert model.config.vocab_size == len(tok)
    ids = torch.tensor([tok("### Instruction:\nadd two numbers")["input_ids"]])
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_resumed_run_reproduces_uninterrupted_losses(full_run, data_file, tmp_path, capsys):
    common = [*ARGS, "--data", str(data_file), "--out", str(tmp_path), "--no-export"]
    assert main([*common, "--stop-after", "3"]) == 0
    assert sorted(losses(tmp_path)) == [1, 2, 3]
    # another data stream (batch, seed) cannot continue this checkpoint: one line naming the fields
    capsys.readouterr()
    assert main([*common, "--resume", "--global-batch-size", "16", "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot resume") and "\n" not in err
    assert "global_batch_size 8 -> 16" in err and "seed 0 -> 1" in err and "max_length" not in err
    assert sorted(losses(tmp_path)) == [1, 2, 3]  # the refused resume wrote nothing
    # bookkeeping may change on resume
    assert main([*common, "--resume", "--checkpoint-every", "6", "--keep-checkpoints", "3"]) == 0
    assert losses(tmp_path) == losses(full_run)  # bitwise: same floats in metrics.jsonl


@pytest.mark.parametrize("extra, want", [
    (["--mesh", "data=3,fsdp=five"], "bad mesh 'data=3,fsdp=five'"),
    (["--mesh", "data=3"], "bad mesh 'data=3'"),
    (["--lr-schedule", "cubic"], "'lr_schedule' must be one of"),
    (["--learning-rate", "fast"], "bad value 'fast' for 'learning_rate'"),
])
def test_bad_options_fail_in_one_line(data_file, tmp_path, capsys, extra, want):
    assert main([*ARGS, "--data", str(data_file), "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and want in err and "\n" not in err


def test_value_error_outside_config_checks_exits_2_in_one_line(data_file, tmp_path, capsys):
    # the eval split takes every example: a plain ValueError from the data pipeline, not a ConfigError
    assert main([*ARGS, "--data", str(data_file), "--out", str(tmp_path), "--eval-count", "48"]) == 2
    assert capsys.readouterr().err.strip() == "error: eval split of 48 examples leaves no training data out of 48"


def test_bad_data_record_fails_with_file_and_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": 7}\n')
    assert main([*ARGS, "--data", str(path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {path}:2: 'output' must be a string, got int"


def test_unknown_yaml_key_exits_2_from_the_real_entry_point(tmp_path, data_file):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: 1e-4\nlearnig_rate: 3\n")
    proc = subprocess.run([sys.executable, "-m", "teamsrl_jax.sft", "--config", str(cfg), "--preset", "tiny",
                           "--data", str(data_file), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {cfg}: unknown key 'learnig_rate'"


def test_experiment_configs_load():
    root = pathlib.Path(__file__).resolve().parents[2] / "experiments"
    paper = load_config(str(root / "sft_llama2_7b.yaml"), {"model": "m", "data": "d.json"})
    assert (paper.max_length, paper.epochs, paper.global_batch_size, paper.learning_rate, paper.warmup_steps,
            paper.lr_schedule, paper.adam_eps, paper.weight_decay, paper.dtype, paper.remat) == \
        (512, 3, 256, 2e-5, 2, "cosine", 1e-8, 0.0, "bfloat16", "full")
    tiny = load_config(str(root / "sft_tiny.yaml"), {"max_steps": "7"})
    assert tiny.preset == "tiny" and tiny.max_steps == 7 and tiny.learning_rate == 1e-3
