"""The dataset stage on the real SmolLM2 GGUF, offline: our JAX engine rewrites the seeds and answers them
(``--backend jax``). The pipeline's default (the simulator rewrites, SmolLM2 answers) is tested in tests/pipeline."""

from __future__ import annotations

from teamsrl_jax.fileio import read_jsonl
from teamsrl_jax.generate.__main__ import build_parser, config_from_args, generate

SHORT = ["--instructor-max-tokens", "40", "--responder-max-tokens", "24", "--keep-truncated", "--batch-slots", "4"]


def seeds(tmp_path, *texts):
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(f'{{"instruction": "{t}"}}\n' for t in texts), encoding="utf-8")
    return path


def test_jax_backend_in_both_roles(policy_run, smollm2_gguf, tmp_path):
    out = tmp_path / "gen"
    path = seeds(tmp_path, "Explain why the sky is blue.", "Give three tips for staying healthy.")
    args = ["--policy", str(policy_run), "--out", str(out), "--seeds", str(path), "--chains", "2", "--steps", "1",
            "--backend", "jax", "--model", str(smollm2_gguf), *SHORT]
    report = generate(config_from_args(build_parser().parse_args(args)), out, progress=False)
    records = read_jsonl(out / "data.jsonl")
    assert report["rewrites"] == 2 == report["examples"] + sum(report["drops"].values())
    assert report["requests"]["instructor"]["requests"] == 2
    assert report["requests"]["instructor"]["completion_tokens"] > 0
    assert len(records) == report["examples"]
    for r in records:
        assert r["instructor"] == {"backend": "jax", "model": smollm2_gguf.name} == r["responder"]
        assert len(r["output"].split()) >= 3 and r["response_finish_reason"] in ("stop", "length")
