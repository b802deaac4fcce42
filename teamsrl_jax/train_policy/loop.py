"""The policy-training loop: collect episodes from the batched instruction environment, update with TRPO.

Per iteration: ``episodes_per_update`` episodes of all N chains (each step = one batched instructor call and
one batched reviewer call per group of chains; ``rollout_groups`` groups are stepped out of phase so that the
CPU work overlaps the LLM calls, see :mod:`teamsrl_jax.train_policy.rollout`), then one ``Agent.learn`` (GAE,
value fit, TRPO step). Outputs in the run folder:

- ``config.json``: the run's configuration (``--resume`` refuses a folder whose config differs);
- ``metrics.jsonl``: one row per iteration (return, KL, entropy, operation histogram, what the rewrites
  became: ``rewrites``, ``kept_fraction``, ``eliminated`` per reason, ``reviews``, ``review_scored_fraction``,
  ``scored_by`` logprobs/text; queries, cache hits, ``generated_tokens`` and ``generated_tokens_per_s`` of
  the rollout);
- ``instructions.jsonl``: every rewrite produced in training, with its operation, parent and reward;
- ``checkpoints/``: orbax checkpoints every ``checkpoint_every`` iterations;
- ``cache.sqlite``: the completion cache (so a resumed run re-queries nothing it already asked).

Resume after a kill -9: the newest checkpoint restores the agent (parameters, normaliser, value optimiser,
PRNG key) and the environment (seed order, chains, novelty memory); the logs are cut back to it; the
iterations after it are recomputed, and since every prompt and sampling index is the same, all their LLM
calls are cache hits. The resumed run ends in the same state as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from teamsrl_jax.backends import Backend
from teamsrl_jax.env.environment import EnvConfig, InstructionEnv
from teamsrl_jax.fileio import JsonlLog, atomic_write_json
from teamsrl_jax.rl import RLConfig, preset as rl_preset
from teamsrl_jax.train_policy import rollout
from teamsrl_jax.train_policy.agent import Agent
from teamsrl_jax.train_policy.checkpoint import RunCheckpointer
from teamsrl_jax.train_policy.config import RESUME_KEYS, TrainConfig


def rl_config(cfg: TrainConfig) -> RLConfig:
    """The RL preset of ``cfg.preset`` with the run's seed."""
    base = rl_preset(cfg.preset)
    return base if cfg.seed is None else dataclasses.replace(base, seed=cfg.seed)


def env_config(cfg: TrainConfig, **overrides: Any) -> EnvConfig:
    """The environment preset of ``cfg.preset`` with the run's chains, horizon, seeds, held-out split and
    reviewer log-probabilities."""
    fields: dict[str, Any] = {"seed_file": cfg.seeds, "held_out_fraction": cfg.held_out_fraction}
    for name in ("num_chains", "horizon", "seed"):
        if getattr(cfg, name) is not None:
            fields[name] = getattr(cfg, name)
    if cfg.reviewer_logprobs is not None:
        fields["reviewer"] = {"logprobs": cfg.reviewer_logprobs}
    if cfg.reviewer_prefill:
        fields["reward"] = {"prefill": True}
    for role in ("instructor", "reviewer"):
        if getattr(cfg, f"{role}_max_tokens") is not None:
            fields[role] = {**fields.get(role, {}), "max_tokens": getattr(cfg, f"{role}_max_tokens")}
    return EnvConfig.from_preset(cfg.preset, **{**fields, **overrides})


def _check_resume_config(run_dir: Path, cfg: TrainConfig) -> None:
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    for key in RESUME_KEYS:
        if saved.get(key) != getattr(cfg, key):
            raise ValueError(f"{run_dir / 'config.json'}: --resume with a different {key} "
                             f"({saved.get(key)!r} saved, {getattr(cfg, key)!r} now)")
    for key in ("kind", "model", "base_url"):
        if saved["backend"].get(key) != getattr(cfg.backend, key):
            raise ValueError(f"{run_dir / 'config.json'}: --resume with a different backend.{key} "
                             f"({saved['backend'].get(key)!r} saved, {getattr(cfg.backend, key)!r} now)")


class Trainer:
    """Owns the environment, the agent, the logs and the checkpoints of one run folder."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, backend: Backend, *, resume: bool = False):
        self.cfg, self.run_dir, self.backend = cfg, Path(run_dir), backend
        config_path = self.run_dir / "config.json"
        if resume and config_path.exists():
            _check_resume_config(self.run_dir, cfg)
        elif not resume and ((self.run_dir / "metrics.jsonl").exists() or (self.run_dir / "checkpoints").exists()):
            raise ValueError(f"{self.run_dir}: run folder already holds a run; pass --resume or choose a new --out")
        self.rl = rl_config(cfg)
        self.rl.enable_x64_if_needed()
        self.env = InstructionEnv(env_config(cfg), backend)
        self.agent = Agent(self.rl, self.env.obs_dim, self.env.num_actions)
        self.metrics = JsonlLog(self.run_dir / "metrics.jsonl")          # creates the run folder
        self.instructions = JsonlLog(self.run_dir / "instructions.jsonl")
        atomic_write_json(config_path, cfg.to_dict())
        self.checkpoints = RunCheckpointer(self.run_dir / "checkpoints", keep=cfg.keep_checkpoints)
        self.iteration = 0
        self.elapsed = 0.0
        if resume:
            self._restore()

    def _restore(self) -> None:
        latest = self.checkpoints.latest_iteration()
        if latest is not None:
            state, env_state, meta = self.checkpoints.restore(latest, self.agent.state, self.env.state_dict())
            self.agent.load_state(state)
            self.env.load_state_dict(env_state)
            self.iteration, self.elapsed = int(meta["iteration"]), float(meta.get("elapsed_s", 0.0))
        self.metrics.truncate("iteration", self.iteration)
        self.instructions.truncate("iteration", self.iteration)

    def save(self) -> None:
        self.checkpoints.save(self.iteration, self.agent.state_for_checkpoint(), self.env.state_dict(),
                              {"iteration": self.iteration, "elapsed_s": self.elapsed})

    def run(self, progress: bool = True) -> list[dict[str, Any]]:
        """Train up to ``cfg.iterations``; returns the metrics rows of this call."""
        rows = []
        bar = tqdm(total=self.cfg.iterations, initial=self.iteration, desc="train_policy", unit="it",
                   disable=not progress, dynamic_ncols=True)
        try:
            while self.iteration < self.cfg.iterations:
                rows.append(self.step())
                bar.update(1)
                bar.set_postfix(ret=f"{rows[-1]['episode_return']:.3f}", kl=f"{rows[-1]['kl']:.4f}",
                                queries=rows[-1]["queries"], hits=rows[-1]["cache_hits"],
                                tok_s=rows[-1]["generated_tokens_per_s"])
                if self.iteration % self.cfg.checkpoint_every == 0 or self.iteration == self.cfg.iterations:
                    self.save()
        finally:
            bar.close()
        return rows

    def step(self) -> dict[str, Any]:
        """One iteration: collect, learn, log."""
        start = time.perf_counter()
        before = self.backend.accounting.total()
        # The agent's pending value fit is dispatched once the first LLM request is in flight.
        batch, stats = rollout.collect(self.env, self.agent, self.cfg.episodes_per_update, self.cfg.rollout_groups,
                                       in_flight=self.agent.fit_value)
        collect_s = time.perf_counter() - start
        learn = self.agent.learn(batch)
        after = self.backend.accounting.total()
        generated = after["completion_tokens"] - before["completion_tokens"]
        self.elapsed += time.perf_counter() - start
        row = {
            "iteration": self.iteration, **stats,
            "kl": learn["trpo/kl"], "entropy": learn["trpo/entropy"], "accepted": bool(learn["trpo/accepted"]),
            "step_fraction": learn["trpo/step_fraction"], "surrogate_gain":
                learn["trpo/surrogate_after"] - learn["trpo/surrogate_before"],
            "value_error": learn["value/error"],
            "queries": after["queries"] - before["queries"], "cache_hits": after["cache_hits"] - before["cache_hits"],
            # tokens the LLM generated in this iteration's rollout (cache hits generate none), per second of it
            "generated_tokens": generated, "generated_tokens_per_s": round(generated / max(collect_s, 1e-9), 1),
            "elapsed_s": round(self.elapsed, 3),
        }
        self.metrics.append(row)
        self.instructions.append({"iteration": self.iteration, **r} for r in self.env.pop_records())
        self.iteration += 1
        return row

    def close(self) -> None:
        self.checkpoints.close()
