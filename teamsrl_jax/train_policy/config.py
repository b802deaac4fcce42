"""Typed configuration of ``python -m teamsrl_jax.train_policy``, shared by the CLI and the code.

A run is a preset (``paper`` or ``default``: picks the RL preset of :mod:`teamsrl_jax.rl.config` and the
environment preset of :mod:`teamsrl_jax.env.environment`) plus the fields below. ``TRAIN_PRESETS`` holds
the per-preset values of this module's own fields; CLI flags override them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from teamsrl_jax.llm import BackendConfig


@dataclass
class TrainConfig:
    """One policy-training run."""

    preset: str = "default"
    """'paper' (the original MDP, policy and TRPO constants) or 'default' (ours)."""
    iterations: int = 60
    """TRPO updates (the paper: 200)."""
    episodes_per_update: int = 1
    """Episodes of all chains collected per update (the paper: 1 episode of 1 chain = 6 transitions)."""
    num_chains: int | None = None
    """Parallel instruction chains; None keeps the preset's (paper: 1, default: 64)."""
    horizon: int | None = None
    """Steps per episode; None keeps the preset's (6)."""
    rollout_groups: int = 2
    """Groups of chains stepped out of phase, so that one group's LLM calls are in flight while another's CPU
    work (policy, features, gates, rewards) runs; 1 steps all chains together. Groups act as separate policy
    batches, so this is part of a run's identity (resume checks it). Capped at the number of chains."""
    seeds: str | None = None
    """Seed instructions (Alpaca JSON/JSONL or Self-Instruct JSONL); None uses the bundled default set."""
    held_out_fraction: float = 0.2
    """Fraction of the seeds kept out of training for the final comparison."""
    seed: int | None = None
    """Seed of initialisation, sampling and seed order; None keeps the preset's (paper: 543, default: 0)."""
    checkpoint_every: int = 10
    """Save a checkpoint every this many iterations (and after the last one)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (the newest ones)."""
    eval_episodes: int = 2
    """Held-out episodes per compared policy in the final summary (0 skips the comparison)."""
    eval_chains: int = 32
    """Parallel chains in each held-out episode."""
    eval_fixed: bool = True
    """Also compare every fixed single operation (6 more policies to evaluate)."""
    reviewer_logprobs: int | None = None
    """Alternatives per reviewer token to ask for (0-20), so that the reward reads each score from the
    reviewer's token probabilities (falling back to the text where they hold none); None: scores are parsed
    from the text. The CLI asks for 20 with --backend jax."""
    reviewer_prefill: bool = False
    """Open every review with its answer label ("Score:" / "Answer:") so that the reply starts with the score
    (``RewardConfig.prefill``); for models too small to follow the format. The CLI turns it on with --backend jax."""
    instructor_max_tokens: int | None = None
    """Cap on the tokens of one rewrite; None keeps the preset's (default 1024, paper 2048)."""
    reviewer_max_tokens: int | None = None
    """Cap on the tokens of one review; None keeps the preset's (default 128, paper 2048)."""
    backend: BackendConfig = field(default_factory=BackendConfig)
    """The instructor/reviewer LLM (one endpoint serves both roles, as in the paper)."""

    def __post_init__(self) -> None:
        if isinstance(self.backend, dict):
            self.backend = BackendConfig(**self.backend)
        if self.preset not in TRAIN_PRESETS:
            raise ValueError(f"TrainConfig.preset must be one of {', '.join(TRAIN_PRESETS)}, got {self.preset!r}")
        for name in ("iterations", "episodes_per_update", "checkpoint_every", "keep_checkpoints", "eval_chains",
                     "rollout_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("num_chains", "horizon", "instructor_max_tokens", "reviewer_max_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.eval_episodes, int) or self.eval_episodes < 0:
            raise ValueError(f"TrainConfig.eval_episodes must be an integer >= 0, got {self.eval_episodes!r}")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"TrainConfig.held_out_fraction must be in (0, 1), got {self.held_out_fraction!r}")
        lp = self.reviewer_logprobs
        if lp is not None and (isinstance(lp, bool) or not isinstance(lp, int) or not 0 <= lp <= 20):
            raise ValueError(f"TrainConfig.reviewer_logprobs must be None or an integer in [0, 20], got {lp!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Per-preset values of TrainConfig fields that differ from the dataclass defaults.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # REFERENCE.md section 2: 200 iterations of one 6-step episode of one never-reset chain.
    "paper": {"iterations": 200, "episodes_per_update": 1},
}

# Fields whose change makes a checkpoint meaningless; --resume refuses a run directory that differs in them.
RESUME_KEYS = ("preset", "episodes_per_update", "num_chains", "horizon", "seeds", "held_out_fraction", "seed",
               "rollout_groups", "reviewer_logprobs", "reviewer_prefill")
