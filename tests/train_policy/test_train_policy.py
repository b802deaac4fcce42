"""Policy training end to end on the simulated backend: learning, kill -9 + resume, CLI errors, outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from teamsrl_jax.env.reward import ELIMINATION_REASONS
from teamsrl_jax.env.simulator import SimulatedBackend
from teamsrl_jax.fileio import read_jsonl
from teamsrl_jax.llm import BackendConfig
from teamsrl_jax.train_policy.__main__ import build_parser, config_from_args, main, train_and_report
from teamsrl_jax.train_policy.config import TrainConfig
from teamsrl_jax.train_policy.evaluate import compare_policies, mean_ci
from teamsrl_jax.train_policy.loop import Trainer


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(iterations=4, num_chains=8, checkpoint_every=2, eval_episodes=0,
                backend=BackendConfig(cache_path=str(tmp_path / "cache.sqlite")))
    return TrainConfig(**{**base, **kw})


def _strip(rows):
    """Rows without the fields that legitimately differ after a resume (timing, and queries that the
    resumed run answers from the cache)."""
    return [{k: v for k, v in r.items()
             if k not in ("elapsed_s", "queries", "cache_hits", "generated_tokens", "generated_tokens_per_s")}
            for r in rows]


def test_trained_policy_beats_uniform_random(tmp_path):
    cfg = _cfg(tmp_path, iterations=25, num_chains=32, checkpoint_every=100)
    backend = cfg.backend.build()
    trainer = Trainer(cfg, tmp_path / "run", backend)
    rows = trainer.run(progress=False)
    result = compare_policies(trainer.agent, backend, trainer.env.config, trainer.env.held_out_seeds, episodes=2,
                              chains=32, include_fixed=True)
    trainer.close()
    policy, random = result["policy"], result["uniform_random"]
    best_fixed = max(v["mean"] for k, v in result.items() if k.startswith("fixed:"))
    assert policy["n"] == random["n"] == 64
    # Clear margins: the intervals do not overlap, and random beats every fixed operation.
    assert policy["ci95"][0] > random["ci95"][1], result
    assert random["mean"] > best_fixed, result
    # The learning curve goes up and the policy became more decided.
    assert np.mean([r["episode_return"] for r in rows[-5:]]) > np.mean([r["episode_return"] for r in rows[:5]])
    assert rows[-1]["entropy"] < rows[0]["entropy"] - 0.1


_KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from teamsrl_jax.llm import BackendConfig
    from teamsrl_jax.train_policy.config import TrainConfig
    from teamsrl_jax.train_policy.loop import Trainer
    out, cache = sys.argv[1], sys.argv[2]
    cfg = TrainConfig(iterations=4, num_chains=8, checkpoint_every=2, eval_episodes=0,
                      backend=BackendConfig(cache_path=cache))
    trainer = Trainer(cfg, out, cfg.backend.build())
    for _ in range(3):                      # iterations 0, 1 (checkpoint at 2), 2: then killed before 4
        trainer.step()
        if trainer.iteration % cfg.checkpoint_every == 0:
            trainer.save()
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    whole = _cfg(tmp_path / "a")
    backend = whole.backend.build()
    trainer = Trainer(whole, tmp_path / "a" / "run", backend)
    trainer.run(progress=False)
    expected_state = jax.device_get(trainer.agent.state)
    expected_rows = _strip(trainer.metrics.rows())
    expected_instructions = trainer.instructions.rows()
    trainer.close()
    backend.close()

    run, cache = tmp_path / "b" / "run", tmp_path / "b" / "cache.sqlite"
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(run), str(cache)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(read_jsonl(run / "metrics.jsonl")) == 3           # iteration 2 was logged but not checkpointed

    resumed_cfg = TrainConfig(**{**whole.to_dict(), "backend": BackendConfig(cache_path=str(cache))})
    backend = resumed_cfg.backend.build()
    trainer = Trainer(resumed_cfg, run, backend, resume=True)
    assert trainer.iteration == 2
    trainer.run(progress=False)
    rows = trainer.metrics.rows()
    # Iteration 2 is recomputed entirely from the cache: no repeated query.
    assert rows[2]["queries"] == 0 and rows[2]["cache_hits"] > 0
    assert _strip(rows) == expected_rows
    assert trainer.instructions.rows() == expected_instructions
    for got, want in zip(jax.tree_util.tree_leaves(jax.device_get(trainer.agent.state)),
                         jax.tree_util.tree_leaves(expected_state)):
        np.testing.assert_array_equal(got, want)
    trainer.close()
    backend.close()


def test_cli_writes_summary_plot_and_refuses_reuse(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--out", str(out), "--iterations", "2", "--num-chains", "4", "--eval-episodes", "1",
            "--eval-chains", "4", "--no-eval-fixed"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "rewrites per iteration" in printed and "\ntotal " in printed
    summary = json.loads((out / "summary.json").read_text())
    rows = read_jsonl(out / "metrics.jsonl")
    rewrites = summary["training_rewrites"]
    assert [r["iteration"] for r in rewrites["per_iteration"]] == [0, 1]
    assert set(rows[0]["eliminated"]) == set(ELIMINATION_REASONS) and rows[0]["rewrites"] == 4 * 6
    assert rewrites["total"]["rewrites"] == 48 == rewrites["total"]["reviews"] + sum(
        rewrites["total"]["eliminated"].values())
    assert rewrites["total"]["scored_by"]["text"] == rewrites["total"]["reviews"]  # the default: scores from text
    assert set(summary["held_out"]) == {"policy", "uniform_random"}
    assert summary["held_out"]["policy"]["n"] == 4
    assert summary["queries"]["instructor"]["queries"] > 0
    assert (out / "training.png").stat().st_size > 10_000
    assert len(read_jsonl(out / "metrics.jsonl")) == 2
    assert read_jsonl(out / "instructions.jsonl")[0]["operation"]
    # A second run into the same folder without --resume is refused with one line.
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--resume" in err and "\n" not in err
    # --resume with a different number of chains is refused, naming the field.
    assert main(args + ["--resume", "--num-chains", "5"]) == 2
    assert "num_chains" in capsys.readouterr().err


def test_resume_of_finished_run_queries_nothing(tmp_path):
    cfg = _cfg(tmp_path, iterations=2, num_chains=4, eval_episodes=1, eval_chains=4, eval_fixed=False)
    first = train_and_report(cfg, tmp_path / "run", progress=False)
    again = train_and_report(cfg, tmp_path / "run", resume=True, progress=False)
    assert again["final_episode_return"] == first["final_episode_return"]
    assert again["queries"]["instructor"]["queries"] == 0 and again["queries"]["reviewer"]["queries"] == 0
    assert again["held_out"] == first["held_out"]


@pytest.mark.parametrize("field,value", [("iterations", 0), ("preset", "nope"), ("held_out_fraction", 1.0),
                                         ("num_chains", -3), ("reviewer_logprobs", 21), ("reviewer_logprobs", True)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_mean_ci_against_numpy():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    s = mean_ci(x)
    half = 1.96 * np.std(x, ddof=1) / 2
    assert s["mean"] == pytest.approx(3.5) and s["ci95"] == pytest.approx([3.5 - half, 3.5 + half])


def test_paper_preset_cli_runs_in_float64(tmp_path):
    """The paper preset (Gaussian-argmax policy, float64, one never-reset chain) end to end; a subprocess,
    because it switches on jax_enable_x64 for the whole process."""
    out = tmp_path / "paper"
    proc = subprocess.run([sys.executable, "-m", "teamsrl_jax.train_policy", "--preset", "paper", "--out", str(out),
                           "--iterations", "3", "--eval-episodes", "1", "--eval-chains", "4", "--no-eval-fixed"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_jsonl(out / "metrics.jsonl")
    assert len(rows) == 3 and all(sum(r["operations"].values()) == 6 for r in rows)   # 6 transitions per update
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chains"] == 1 and summary["horizon"] == 6
    assert {r["seed"] for r in read_jsonl(out / "instructions.jsonl")} and \
        len({r["seed"] for r in read_jsonl(out / "instructions.jsonl")}) == 1          # the chain is never reset


class FakeJaxBackend(SimulatedBackend):
    """Stands in for ``backends.jax_backend.JaxBackend`` (same constructor): the simulator, under kind "jax"."""

    name = "jax"

    def __init__(self, model: str, *, dtype: str = "float32", mesh: str = "", batch_slots: int = 16, seed: int = 0):
        super().__init__(seed, model=model)
        self.args = dict(model=model, dtype=dtype, mesh=mesh, batch_slots=batch_slots, seed=seed)


def test_cli_backend_jax_scores_from_probabilities(tmp_path, monkeypatch, capsys):
    """--backend jax --model PATH builds the JAX backend with the backend flags, and the reviewer is asked for
    logprobs through the config (20 by default), so the run's scores come from probabilities."""
    import types

    module = types.ModuleType("teamsrl_jax.backends.jax_backend")
    module.JaxBackend = FakeJaxBackend
    monkeypatch.setitem(sys.modules, "teamsrl_jax.backends.jax_backend", module)
    out = tmp_path / "run"
    flags = ["--backend", "jax", "--model", str(tmp_path / "m.gguf"), "--dtype", "bfloat16", "--mesh", "fsdp=-1",
             "--batch-slots", "4", "--iterations", "1", "--num-chains", "4", "--eval-episodes", "0"]
    cfg = config_from_args(build_parser().parse_args(["--out", str(out), *flags]))
    assert (cfg.backend.kind, cfg.backend.dtype, cfg.backend.mesh, cfg.backend.batch_slots) == (
        "jax", "bfloat16", "fsdp=-1", 4)
    assert cfg.reviewer_logprobs == 20
    def cli(*args):
        return config_from_args(build_parser().parse_args(["--out", "x", *args]))

    assert cli("--reviewer-logprobs", "none", *flags).reviewer_logprobs is None
    assert cli("--reviewer-logprobs", "5").reviewer_logprobs == 5 and cli().reviewer_logprobs is None
    assert main(["--out", str(out), *flags]) == 0
    summary = json.loads((out / "summary.json").read_text())
    total = summary["training_rewrites"]["total"]
    assert summary["backend"] == "jax" and total["reviews"] > 0
    assert total["scored_by"] == {"logprobs": total["reviews"], "text": 0}
    assert json.loads((out / "config.json").read_text())["reviewer_logprobs"] == 20
    scores = [r["components"]["score"] for r in read_jsonl(out / "instructions.jsonl") if r["kept"]]
    assert all(r["components"]["from_logprobs"] == 1.0 for r in read_jsonl(out / "instructions.jsonl") if r["kept"])
    assert any(s != round(s) for s in scores)
    capsys.readouterr()
    assert main(["--out", str(tmp_path / "other"), "--backend", "jax"]) == 2  # no --model: one line naming it
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: BackendConfig.model") and "\n" not in err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--out", "x", "--reviewer-logprobs", "21"])
