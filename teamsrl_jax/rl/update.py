"""One full learning step on a rollout of N parallel chains x T steps: GAE, value fit, TRPO step. Pure, jit-able.

    rollout = Rollout(obs_TxNxD, actions_TxN, rewards_TxN, dones_TxN, last_obs_NxD)
    policy, value, value_opt, metrics = rl_update(policy_def, value_def, cfg, policy, value, value_opt, rollout, key)

``obs`` are the policy's inputs as it saw them (normalised already, where ``cfg.normalize_obs``), ``last_obs``
the input after the last transition (for bootstrapping chains still running). The order is the original's:
advantages and targets with the current value net, then the value fit, then the TRPO step on those advantages.
Value targets follow ``cfg.value.target`` ('gae': advantages + values; 'mc': discounted returns).
To bootstrap time-limit truncations, add ``gamma * V(final_obs)`` to their rewards before calling.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
from flax import nnx

from teamsrl_jax.rl.config import RLConfig
from teamsrl_jax.rl.gae import gae
from teamsrl_jax.rl.trpo import TRPOBatch, trpo_update
from teamsrl_jax.rl.value_fit import fit_value


class Rollout(NamedTuple):
    """Transitions of N chains over T steps; several episodes may follow each other along T."""

    obs: jax.Array       # (T, N, D) policy inputs
    actions: jax.Array   # (T, N) int
    rewards: jax.Array   # (T, N)
    dones: jax.Array     # (T, N) the transition ended its episode
    last_obs: jax.Array  # (N, D) policy input after the last transition


def advantages_and_targets(cfg: RLConfig, rewards, values, dones, last_value) -> tuple[jax.Array, jax.Array]:
    """GAE advantages and the value-regression targets that ``cfg.value.target`` asks for, both ``(T, N)``."""
    adv, returns = gae(rewards, values, dones, last_value, gamma=cfg.gamma, lam=cfg.lam)
    if cfg.value.target == "mc":
        returns = gae(rewards, values, dones, last_value, gamma=cfg.gamma, lam=1.0)[1]
    return adv, returns


def rl_update(policy_def: nnx.GraphDef, value_def: nnx.GraphDef, cfg: RLConfig, policy: nnx.State,
              value: nnx.State, value_opt: Any, rollout: Rollout, key: jax.Array):
    """Returns ``(policy, value, value_opt, metrics)``; metrics are the TRPO ones plus ``value_loss_before``,
    ``value_loss_after`` and ``value_steps``."""
    value_fn = nnx.merge(value_def, value)
    adv, targets = advantages_and_targets(cfg, rollout.rewards, value_fn(rollout.obs), rollout.dones,
                                          value_fn(rollout.last_obs))
    obs = rollout.obs.reshape(-1, rollout.obs.shape[-1])
    value, value_opt, vm = fit_value(value_def, cfg.value, value, value_opt, obs, targets.reshape(-1), key)
    policy, metrics = trpo_update(policy_def, cfg.trpo, policy, TRPOBatch(obs, rollout.actions.reshape(-1),
                                                                         adv.reshape(-1)))
    return policy, value, value_opt, with_value_metrics(metrics, vm)


def with_value_metrics(metrics: dict, value_metrics: dict) -> dict:
    """The TRPO step's metrics plus the value fit's, as ``value_loss_before``, ``value_loss_after``, ``value_steps``."""
    return dict(metrics, value_loss_before=value_metrics["loss_before"], value_loss_after=value_metrics["loss_after"],
                value_steps=value_metrics["steps"])
