"""The dataset stage against a local OpenAI-compatible server that misbehaves (429 with Retry-After, 5xx, slow
replies, truncated bodies, dropped connections): every example is answered exactly once, each answer belongs
to its instruction, and a rerun with ``--resume`` asks the server nothing."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import zlib
from pathlib import Path

from teamsrl_jax.fileio import read_jsonl
from teamsrl_jax.generate.__main__ import build_parser, config_from_args, generate
from teamsrl_jax.llm import BackendConfig

_spec = importlib.util.spec_from_file_location("fake_openai_server",
                                               Path(__file__).parents[1] / "backends" / "conftest.py")
_server_module = sys.modules.setdefault("fake_openai_server", importlib.util.module_from_spec(_spec))
if not hasattr(_server_module, "FakeOpenAIServer"):
    _spec.loader.exec_module(_server_module)

FAULTS = ("429", "500", "503", "slow", "truncated", "truncated_cl", "drop", "ok", "ok")


class FaultyServer(_server_module.FakeOpenAIServer):
    """The first attempt of each prompt meets a fault chosen by the prompt's hash; the second a 429 for some."""

    def next_fault(self, prompt: str) -> str:
        with self.lock:
            n = self.attempts[prompt]
            self.attempts[prompt] += 1
        h = zlib.crc32(prompt.encode())
        if n == 0:
            return FAULTS[h % len(FAULTS)]
        if n == 1 and h % 4 == 0:
            return "429"
        return "ok"


def test_every_example_answered_once_and_resume_asks_nothing(policy_run, tmp_path):
    out = tmp_path / "gen"
    with FaultyServer(retry_after="0.05", slow_s=4.0) as server:  # ok replies stay far inside the timeout, under load too
        args = ["--policy", str(policy_run), "--out", str(out), "--chains", "12", "--steps", "2",
                "--responder-backend", "openai", "--responder-model", "expert", "--responder-base-url", server.url]
        cfg = config_from_args(build_parser().parse_args(args))
        cfg.responder = dataclasses.replace(cfg.responder, timeout_s=2.0, max_retries=8, backoff_base_s=0.01,
                                            backoff_max_s=0.05, concurrency=8)
        assert isinstance(cfg.responder, BackendConfig) and cfg.backend.kind == "simulated"
        report = generate(cfg, out, progress=False)
        records = read_jsonl(out / "data.jsonl")
        assert len(records) == report["examples"] == report["sent_to_responder"] > 10
        faults = {entry.fault for entry in server.log}
        assert {"429", "500", "slow", "drop", "truncated"} <= faults
        for r in records:
            assert r["output"] == server.reply_text(r["instruction"])   # the answer to this instruction
            assert server.successes[r["instruction"]] == 1              # answered exactly once
            assert r["responder"] == {"backend": "openai", "model": "expert"}
        assert sum(server.successes.values()) == len(records)
        errors = report["backend_accounting"]["responder"]["responder"]
        assert errors["queries"] == len(records) and errors["errors"] > 0 and errors["retries"] > 0
        before = server.total_requests
        again = generate(cfg, out, resume=True, progress=False)
        assert server.total_requests == before
        assert again["examples"] == len(records) and read_jsonl(out / "data.jsonl") == records
        assert again["requests"]["responder"]["cache_hits"] == len(records)
