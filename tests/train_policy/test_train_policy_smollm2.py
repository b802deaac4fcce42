"""``python -m teamsrl_jax.train_policy --backend jax`` on the real SmolLM2 GGUF, offline: the model rewrites the
instructions, its reviews (opened with their label, read from its probabilities) are the reward, and the logs
say what became of every rewrite and how fast the model generated."""

import json

from teamsrl_jax.fileio import read_jsonl
from teamsrl_jax.train_policy.__main__ import main

SHORT = ["--eval-episodes", "0", "--instructor-max-tokens", "40", "--reviewer-max-tokens", "4"]


def check_rows(rows, chains, horizon):
    for row in rows:
        assert row["rewrites"] == chains * horizon
        eliminated = sum(row["eliminated"].values())
        assert row["reviews"] == row["rewrites"] - eliminated
        assert row["kept_fraction"] == row["reviews"] / row["rewrites"]
        # every review that was made yielded a score, from the model's probabilities
        assert row["reviews"] == 0 or row["review_scored_fraction"] == 1.0
        assert row["scored_by"]["logprobs"] == row["reviews"] and row["scored_by"]["text"] == 0
        assert row["generated_tokens"] > 0 and row["generated_tokens_per_s"] > 0


def test_default_preset_on_the_real_model(smollm2_gguf, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--backend", "jax", "--model", str(smollm2_gguf), "--out", str(out), "--num-chains", "2",
            "--horizon", "2", "--iterations", "1", "--rollout-groups", "1", "--batch-slots", "4", *SHORT]
    assert main(args) == 0
    rows = read_jsonl(out / "metrics.jsonl")
    check_rows(rows, chains=2, horizon=2)
    records = read_jsonl(out / "instructions.jsonl")
    assert len(records) == 4 and all(r["backend"] == "jax" for r in records)
    assert all(r["instruction"] is None or len(r["instruction"].split()) >= 3 for r in records)  # no fragments
    summary = json.loads((out / "summary.json").read_text())
    assert summary["queries"]["reviewer"]["queries"] == rows[0]["reviews"]
    assert "rewrites per iteration" in capsys.readouterr().out
