"""The command on the real SmolLM2-135M GGUF with a handful of short Alpaca records: files written, AUC in
[0, 1], and every example's LOSS equal to a plain recomputation with our model (no transformers).

The command's one ``load_pretrained`` call is answered from the session's ``smollm2_jax`` fixture, the same
float32 load of the same file (checked by its arguments): loading the GGUF costs ~10 s on two cores, the
fixture is shared with the other real-model tests, and the loader has its own tests.
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import teamsrl_jax.model
from teamsrl_jax.mia.__main__ import main
from teamsrl_jax.sft import data as sft_data
from teamsrl_jax.sft.records import Record

from .conftest import write_jsonl

MEMBERS = [
    {"instruction": "Name a primary colour.", "output": "Red is a primary colour."},
    {"instruction": "What is 2 + 3?", "output": "2 + 3 = 5."},
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour."},
    {"instruction": "Give a synonym of happy.", "output": "Joyful."},
]
NONMEMBERS = [
    {"instruction": "Name a large mammal.", "output": "The elephant."},
    {"instruction": "What is 10 - 4?", "output": "10 - 4 = 6."},
    {"instruction": "Translate to Spanish.", "input": "Thank you", "output": "Gracias."},
    {"instruction": "Give an antonym of cold.", "output": "Hot."},
]
MAX_LENGTH = 64


def test_smollm2_end_to_end(smollm2_gguf, smollm2_jax, tmp_path, capsys, monkeypatch):
    calls = []

    def load_pretrained(path, **kwargs):
        calls.append((path, kwargs))
        return smollm2_jax

    monkeypatch.setattr(teamsrl_jax.model, "load_pretrained", load_pretrained)
    members = write_jsonl(tmp_path / "members.jsonl", MEMBERS)
    nonmembers = write_jsonl(tmp_path / "nonmembers.jsonl", NONMEMBERS)
    out = tmp_path / "mia"
    assert main(["--model", str(smollm2_gguf), "--members", members, "--nonmembers", nonmembers, "--out", str(out),
                 "--max-length", str(MAX_LENGTH), "--batch-size", "8", "--bootstrap", "50", "--no-progress"]) == 0
    result = json.loads((out / "mia.json").read_text())
    assert set(result["metrics"]) == {"loss", "zlib", "min_k", "min_k_pp"}
    assert all(0 <= m["auc"] <= 1 and m["n_members"] == 4 for m in result["metrics"].values())
    assert (out / "roc.png").is_file() and "LOSS" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]

    # the recomputation: the SFT's tokens, one plain forward of all eight, float64 log-softmax
    assert calls == [(str(smollm2_gguf), {"mesh": None, "dtype": "float32", "param_dtype": "float32"})]
    model, _, tokenizer = smollm2_jax
    records = [Record(**r) for r in MEMBERS + NONMEMBERS]
    tokens = [ex.tokens for ex in sft_data.encode(tokenizer, records, MAX_LENGTH)]
    ids = np.zeros((len(tokens), max(map(len, tokens)) - 1), np.int32)
    for r, t in enumerate(tokens):
        ids[r, :len(t) - 1] = t[:-1]
    logits = np.asarray(model(jnp.asarray(ids)), np.float64)
    for row, t, lg in zip(rows, tokens, logits):
        lg = lg[:len(t) - 1]
        top = lg.max(-1, keepdims=True)
        logp = lg - top - np.log(np.exp(lg - top).sum(-1, keepdims=True))
        nll = -logp[np.arange(len(t) - 1), t[1:]].mean()
        assert row["n_tokens"] == len(t) and not row["truncated"]
        assert row["nll"] == pytest.approx(nll, rel=1e-4)
        assert row["scores"]["loss"] == pytest.approx(-nll, rel=1e-4)
