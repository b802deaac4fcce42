"""The learning agent of the instruction MDP: policy, value net and observation normaliser as one pure state.

    agent = Agent(rl_config, obs_dim=env.obs_dim, num_actions=env.num_actions)
    actions, obs_n = agent.act(obs_NxD)                      # samples; updates the normaliser (training)
    metrics = agent.learn(Rollout(obs_TxNxD, actions_TxN, rewards_TxN, dones_TxN, last_obs_NxD))

The JAX parts are jitted pure functions (``_act``, ``_policy_step``, the value fit) over an :class:`AgentState`; the class
only holds the state between calls, so checkpoints save and restore exactly one pytree (``agent.state``).
The LLM calls stay outside, in the environment: nothing here blocks on I/O.

One update follows the original: advantages by GAE with the current value net, the value fit (L-BFGS or
Adam) on the return targets, and one TRPO step of the policy on the normalised observations it acted on.
The policy step does not depend on the fitted values, and the fit is only needed by the *next* update's GAE,
so ``learn`` does GAE + TRPO at once and leaves the fit pending; ``fit_value()`` dispatches it. The
pipelined rollout calls it once the next iteration's first LLM request is in flight, so the fit runs during
the request instead of before it. The computation and its inputs are the same whenever it runs: results do
not depend on the timing, and ``learn``/``state_for_checkpoint`` run a fit still pending first.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from teamsrl_jax.rl import RLConfig, TRPOBatch, ValueNet, make_policy, norm_apply, norm_init, norm_update
from teamsrl_jax.rl.trpo import trpo_update
from teamsrl_jax.rl.update import Rollout, advantages_and_targets
from teamsrl_jax.rl.value_fit import fit_value, value_fit_init


class AgentState(NamedTuple):
    """Everything that changes during training (one pytree: what a checkpoint holds)."""

    policy: Any          # nnx.State of the policy network
    value: Any           # nnx.State of the value network
    value_opt: Any       # Adam moments of the value fit (None with L-BFGS)
    norm: Any            # RunningNorm of the observations
    key: jax.Array       # PRNG key for action sampling and minibatch order


def _as_state(tree: Any) -> Any:
    return jax.tree_util.tree_map(jnp.asarray, tree)


class Agent:
    """Holds an :class:`AgentState` and the jitted functions that act with it and update it."""

    def __init__(self, config: RLConfig, obs_dim: int, num_actions: int):
        self.config = config
        if "float64" in (config.policy.dtype, config.value.dtype) and not jax.config.jax_enable_x64:
            raise ValueError("RLConfig asks for float64 networks: enable jax_enable_x64 before building the agent "
                             "(the train_policy CLI does this for you)")
        rngs = nnx.Rngs(config.seed)
        self.policy_def, policy = nnx.split(make_policy(config.policy, obs_dim, num_actions, rngs=rngs))
        self.value_def, value = nnx.split(ValueNet(obs_dim, config.value, rngs=rngs))
        dtype = jnp.float64 if config.policy.dtype == "float64" else jnp.float32
        self.state = AgentState(policy=policy, value=value, value_opt=value_fit_init(config.value, value),
                                norm=norm_init(obs_dim, dtype), key=jax.random.key_data(jax.random.key(config.seed)))
        self._act = jax.jit(functools.partial(_act, self.policy_def, config),
                            static_argnames=("update_norm",))
        self._policy_step = jax.jit(functools.partial(_policy_step, self.policy_def, self.value_def, config))
        self._fit_value = jax.jit(functools.partial(fit_value, self.value_def, config.value))
        self._pending: tuple | None = None   # (obs, targets, key) of a value fit not dispatched yet

    def act(self, obs: np.ndarray, *, update_norm: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Sampled actions [N] for raw observations [N, D], and the normalised observations the policy saw.

        ``update_norm`` pushes ``obs`` into the running statistics first (training; the original does this
        for every observation); evaluation passes False."""
        actions, obs_n, norm, key = self._act(self.state.policy, self.state.norm, self.state.key,
                                              jnp.asarray(obs), update_norm=update_norm)
        self.state = self.state._replace(norm=norm, key=key)
        return np.asarray(actions), np.asarray(obs_n)

    def learn(self, rollout: Rollout) -> dict[str, float]:
        """GAE with the current value net and one TRPO step on ``rollout``; the value fit on its return
        targets is left pending (see ``fit_value``). Returns scalar metrics, among them ``value/error``,
        the mean squared error of the value net on this rollout's targets before it is fitted to them."""
        self.fit_value()
        self.state, metrics, self._pending = self._policy_step(self.state, *(jnp.asarray(x) for x in rollout))
        return {k: float(v) for k, v in jax.device_get(metrics).items()}

    def fit_value(self) -> None:
        """Dispatch the pending value fit, if any (asynchronously: it does not wait for the result)."""
        if self._pending is not None:
            value, value_opt, _ = self._fit_value(self.state.value, self.state.value_opt, *self._pending)
            self.state = self.state._replace(value=value, value_opt=value_opt)
            self._pending = None

    def state_for_checkpoint(self) -> AgentState:
        """The state with no fit pending: what a checkpoint must hold."""
        self.fit_value()
        return self.state

    def load_state(self, state: AgentState) -> None:
        self.state, self._pending = _as_state(state), None


def _act(policy_def, config: RLConfig, policy, norm, key, obs, *, update_norm: bool):
    if config.normalize_obs:
        if update_norm:
            norm = norm_update(norm, obs)
        obs = norm_apply(norm, obs, config.obs_clip)
    obs = obs.astype(norm.mean.dtype)
    key, sub = jax.random.split(jax.random.wrap_key_data(key))
    actions = nnx.merge(policy_def, policy).act(obs, sub)
    return actions, obs, norm, jax.random.key_data(key)


def _policy_step(policy_def, value_def, config: RLConfig, state: AgentState, obs, actions, rewards, dones,
                 last_obs):
    """GAE and the TRPO step; returns the new state, metrics, and the inputs of the value fit."""
    t, n, d = obs.shape
    value_fn = nnx.merge(value_def, state.value)
    values = value_fn(obs)                                   # (T, N)
    adv, returns = advantages_and_targets(config, rewards, values, dones, value_fn(last_obs))
    key, sub = jax.random.split(jax.random.wrap_key_data(state.key))
    flat_obs = obs.reshape(t * n, d)
    batch = TRPOBatch(flat_obs, actions.reshape(-1), adv.reshape(-1))
    policy, pmetrics = trpo_update(policy_def, config.trpo, state.policy, batch)
    metrics = {**{f"trpo/{k}": v for k, v in pmetrics.items()},
               "value/error": jnp.mean((values - returns) ** 2)}
    new_state = state._replace(policy=policy, key=jax.random.key_data(key))
    return new_state, metrics, (flat_obs, returns.reshape(-1), sub)
