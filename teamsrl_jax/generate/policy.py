"""The trained policy of a ``train_policy`` run folder, acting over batches of instruction chains.

``read_run(folder)`` reads the run's configuration; ``PolicyActor`` restores the newest checkpoint into an
agent built for the generation environment (same preset, features and operations as in training) and picks
one operation per chain per step:

- ``policy`` schedule: the policy alone, by sampling (with its configured action bias, as in training and in
  the held-out comparison) or, with ``greedy``, by its most likely operation. The normaliser is not updated.
- ``paper`` schedule, the original's generation script: the policy's draw gets +0.7 on ``add_constraints``
  (replacing the training bias), the 2nd and 5th steps are forced to ``breadth``, and ``breadth`` chosen at
  any other step becomes ``add_constraints``. (The original also read the policy's output index under a
  rotated operation order, index 0 meaning breadth; we apply its overrides by operation name on the policy's
  own order, which is what its comments and the paper describe.)

Every draw uses a key folded from (seed, batch, step): a batch's operations do not depend on what ran before
it, so a resumed run draws exactly what an uninterrupted one drew.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from teamsrl_jax.rl import norm_apply
from teamsrl_jax.train_policy.agent import Agent
from teamsrl_jax.train_policy.checkpoint import RunCheckpointer
from teamsrl_jax.train_policy.config import TrainConfig
from teamsrl_jax.train_policy.loop import rl_config

PAPER_BIAS = 0.7
"""Added to ``add_constraints`` in the original's generation script."""
PAPER_FORCED_BREADTH = (1, 4)
"""0-based steps at which the original's generation script forces ``breadth`` (the 2nd and 5th)."""


def read_run(run_dir: str | Path) -> TrainConfig:
    """The ``TrainConfig`` saved in a ``train_policy`` run folder; a one-line error when it is not one."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise ValueError(f"{run_dir}: not a train_policy run folder (no config.json)")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return TrainConfig(**saved)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except TypeError as e:
        raise ValueError(f"{path}: not a train_policy config ({e})") from None


def check_policy_folder(run_dir: str | Path) -> TrainConfig:
    """``read_run`` plus a check that the run saved a checkpoint (before any backend is loaded)."""
    train = read_run(run_dir)
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir() or not any(p.name.isdigit() for p in folder.iterdir()):
        raise ValueError(f"{run_dir}: the policy run has no checkpoint (train it first, or name another folder)")
    return train


def paper_overrides(actions: np.ndarray, step: int, names: tuple[str, ...]) -> np.ndarray:
    """The original generation's forced operations at 0-based ``step`` (see the module docstring)."""
    breadth, constraints = _index(names, "breadth"), _index(names, "add_constraints")
    actions = np.asarray(actions).copy()
    if step in PAPER_FORCED_BREADTH:
        actions[:] = breadth
    else:
        actions[actions == breadth] = constraints
    return actions


def _index(names: tuple[str, ...], name: str) -> int:
    if name not in names:
        raise ValueError(f"the paper schedule needs an operation named {name!r}; this policy has {', '.join(names)}")
    return names.index(name)


def _act(policy_def, normalize: bool, clip: float, policy, norm, key, obs, bias, *, deterministic: bool):
    if normalize:
        obs = norm_apply(norm, obs, clip)
    obs = obs.astype(norm.mean.dtype)
    return nnx.merge(policy_def, policy).act(obs, key, deterministic=deterministic, bias=bias)


class PolicyActor:
    """Restores a run's newest checkpoint and picks operations for batches of ``chains`` chains."""

    def __init__(self, run_dir: str | Path, train: TrainConfig, obs_dim: int, names: tuple[str, ...], *,
                 schedule: str, greedy: bool, seed: int, chains: int):
        run_dir = Path(run_dir)
        folder = run_dir / "checkpoints"
        if not folder.is_dir():
            raise ValueError(f"{run_dir}: the run has no checkpoints/ folder (train the policy first)")
        rl = rl_config(train)
        rl.enable_x64_if_needed()
        self.agent = Agent(rl, obs_dim, len(names))
        checkpoints = RunCheckpointer(folder, keep=max(1, train.keep_checkpoints))
        try:
            latest = checkpoints.latest_iteration()
            if latest is None:
                raise ValueError(f"{folder}: no checkpoint in the policy run (train it first)")
            state, _ = checkpoints.restore_agent(latest, self.agent.state)
        finally:
            checkpoints.close()
        self.agent.load_state(state)
        self.iteration = int(latest)
        self.names, self.schedule, self.greedy, self.seed, self.chains = names, schedule, greedy, seed, chains
        self._bias = None
        if schedule == "paper":
            bias = np.zeros(len(names))
            bias[_index(names, "add_constraints")] = PAPER_BIAS
            _index(names, "breadth")
            self._bias = jnp.asarray(bias, self.agent.state.norm.mean.dtype)
        self._fn = jax.jit(functools.partial(_act, self.agent.policy_def, rl.normalize_obs, rl.obs_clip),
                           static_argnames=("deterministic",))

    def __call__(self, obs: np.ndarray, batch: int, step: int) -> np.ndarray:
        """Operations [n] for the observations [n, D] of batch ``batch`` at 0-based ``step``."""
        n = obs.shape[0]
        if n > self.chains:
            raise ValueError(f"{n} chains in a batch of at most {self.chains}")
        padded = np.zeros((self.chains, obs.shape[1]), obs.dtype)
        padded[:n] = obs  # one compiled shape for every batch, the last short one included
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), batch), step)
        state = self.agent.state
        actions = np.asarray(self._fn(state.policy, state.norm, key, jnp.asarray(padded), self._bias,
                                      deterministic=self.greedy))[:n].astype(np.int64)
        if self.schedule == "paper":
            actions = paper_overrides(actions, step, self.names)
        return actions

    def describe(self) -> dict[str, Any]:
        return {"checkpoint": self.iteration, "schedule": self.schedule, "greedy": self.greedy, "seed": self.seed}
