"""Held-out comparison of the trained policy with uniform random choice and with each fixed operation.

Every compared policy runs the same episodes: the same held-out seeds in the same order (a fresh
``SeedPool`` with the same seed for each), ``eval_chains`` chains, ``eval_episodes`` episodes. The unit of
measurement is one chain-episode's return (sum of its H rewards): n = chains x episodes per policy. The
interval is mean +- 1.96 standard errors (normal approximation; n is in the tens or more). The trained
policy acts by sampling, as it does when it generates data, and without updating its normaliser.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from teamsrl_jax.backends import Backend
from teamsrl_jax.env.environment import EnvConfig, InstructionEnv
from teamsrl_jax.env.operations import OperationSet
from teamsrl_jax.env.seeds import SeedPool
from teamsrl_jax.train_policy.agent import Agent

ActFn = Callable[[np.ndarray], np.ndarray]


def mean_ci(values: np.ndarray) -> dict[str, Any]:
    """Mean, sample std, n and the 95% normal-approximation interval of ``values``."""
    values = np.asarray(values, np.float64)
    n = values.size
    mean = float(values.mean()) if n else math.nan
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    half = 1.96 * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "n": int(n), "ci95": [mean - half, mean + half]}


def run_episodes(env: InstructionEnv, act: ActFn, episodes: int) -> np.ndarray:
    """Returns of every chain-episode, shape (episodes * N,)."""
    out = []
    for _ in range(episodes):
        obs = env.reset()
        total = np.zeros(env.config.num_chains)
        for _ in range(env.config.horizon):
            obs, rewards, _, _ = env.step(act(obs))
            total += rewards
        out.append(total)
        env.pop_records()
    return np.concatenate(out)


def compare_policies(agent: Agent, backend: Backend, config: EnvConfig, held_out: SeedPool, *, episodes: int,
                     chains: int, include_fixed: bool, seed: int = 0,
                     operations: OperationSet | None = None) -> dict[str, dict[str, Any]]:
    """Returns ``{policy name: mean_ci(...)}`` for ``policy``, ``uniform_random`` and ``fixed:<operation>``.

    ``operations``: the operations the agent was trained with (``trainer.env.operations``); None loads them
    from ``config``, as the training environment did."""
    eval_cfg = dataclasses.replace(config, num_chains=chains, reset_chains="fresh_seeds", held_out_fraction=0.0)
    if operations is None:
        operations = (OperationSet.from_file(config.operations_file, config.operations_mode)
                      if config.operations_file else OperationSet())

    def make_env() -> InstructionEnv:
        return InstructionEnv(eval_cfg, backend, seeds=SeedPool(held_out.seeds, seed=seed), operations=operations)

    rng = np.random.default_rng(seed)
    policies: dict[str, ActFn] = {
        "policy": lambda obs: agent.act(obs, update_norm=False)[0],
        "uniform_random": lambda obs: rng.integers(0, len(operations), size=chains),
    }
    if include_fixed:
        for k, name in enumerate(operations.names):
            policies[f"fixed:{name}"] = lambda obs, k=k: np.full(chains, k)
    return {name: mean_ci(run_episodes(make_env(), act, episodes)) for name, act in policies.items()}
