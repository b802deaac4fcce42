"""The instruction-evolution MDP: textual operations (actions), seed instructions, state features,
the reviewer-based reward, the batched environment that steps many instruction chains at once, and the
offline simulator of its instructor and reviewer (``env.simulator``)."""

from teamsrl_jax.env.environment import ENV_PRESETS, EnvConfig, InstructionEnv, LLMRequest, run_step
from teamsrl_jax.env.operations import DEFAULT_OPERATIONS, Operation, OperationSet, load_operations, parse_rewrite
from teamsrl_jax.env.reward import (ELIMINATION_REASONS, Reward, RewardConfig, RewardResult, parse_score,
                                    parse_verdict)
from teamsrl_jax.env.seeds import DEFAULT_SEED_FILE, Seed, SeedPool, read_seeds

__all__ = ["DEFAULT_OPERATIONS", "DEFAULT_SEED_FILE", "ELIMINATION_REASONS", "ENV_PRESETS", "EnvConfig",
           "InstructionEnv", "LLMRequest", "Operation", "OperationSet", "Reward", "RewardConfig", "RewardResult",
           "Seed", "SeedPool", "load_operations", "parse_rewrite", "parse_score", "parse_verdict", "read_seeds",
           "run_step"]
