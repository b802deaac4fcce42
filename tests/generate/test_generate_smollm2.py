"""The dataset stage on the real SmolLM2 GGUF, offline: our JAX engine rewrites the seeds and answers them
(``--backend jax``), and, as the pipeline's default does, answers the simulator's rewrites."""

from __future__ import annotations

from teamsrl_jax.backends.jax_backend import JaxBackend
from teamsrl_jax.env.simulator import SimulatedBackend
from teamsrl_jax.fileio import read_jsonl
from teamsrl_jax.generate.__main__ import build_parser, config_from_args, generate
from teamsrl_jax.generate.run import Generation

SHORT = ["--instructor-max-tokens", "40", "--responder-max-tokens", "24", "--keep-truncated", "--batch-slots", "4"]


def seeds(tmp_path, *texts):
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(f'{{"instruction": "{t}"}}\n' for t in texts), encoding="utf-8")
    return path


def test_jax_backend_in_both_roles(policy_run, smollm2_gguf, tmp_path):
    out = tmp_path / "gen"
    path = seeds(tmp_path, "Explain why the sky is blue.", "Give three tips for staying healthy.")
    args = ["--policy", str(policy_run), "--out", str(out), "--seeds", str(path), "--chains", "2", "--steps", "2",
            "--backend", "jax", "--model", str(smollm2_gguf), *SHORT]
    report = generate(config_from_args(build_parser().parse_args(args)), out, progress=False)
    records = read_jsonl(out / "data.jsonl")
    assert report["rewrites"] == 4 == report["examples"] + sum(report["drops"].values())
    assert report["requests"]["instructor"]["requests"] == 4
    assert report["requests"]["instructor"]["completion_tokens"] > 0
    assert len(records) == report["examples"]
    for r in records:
        assert r["instructor"] == {"backend": "jax", "model": smollm2_gguf.name} == r["responder"]
        assert len(r["output"].split()) >= 3 and r["response_finish_reason"] in ("stop", "length")


def test_real_model_answers_the_simulators_rewrites(policy_run, smollm2_gguf, tmp_path):
    out = tmp_path / "gen"
    path = seeds(tmp_path, "What is the capital of France?", "Name a fruit that is yellow.",
                 "Write a haiku about rain.")
    args = ["--policy", str(policy_run), "--out", str(out), "--seeds", str(path), "--chains", "3", "--steps", "1",
            "--cache", "", *SHORT]
    cfg = config_from_args(build_parser().parse_args(args))
    responder = JaxBackend(str(smollm2_gguf), batch_slots=4)
    try:
        report = Generation(cfg, out, SimulatedBackend(), responder).run(progress=False)
    finally:
        responder.close()
    records = read_jsonl(out / "data.jsonl")
    assert len(records) == report["examples"] >= 1
    assert report["requests"]["responder"]["completion_tokens"] > 0
    for r in records:
        assert r["responder"]["backend"] == "jax" and r["instructor"]["backend"] == "simulated"
        assert "[simulated response]" not in r["output"] and len(r["output"].split()) >= 3
