"""TRPO on the pure-JAX CartPole: the RL core's end-to-end sanity check.

    python -m teamsrl_jax.rl.cartpole [--seed 0] [--total-steps 100000] [--num-envs 8] [--preset cartpole] ...

The whole run (rollout of ``num_steps`` x ``num_envs`` by ``lax.scan``, GAE, value fit, TRPO step, all inside an
outer ``lax.scan`` over updates) is one ``jax.jit``; a host callback drives the progress bar. The training
return is the mean over chains of each chain's last finished episode; the run also reports the first
environment step at which it reached ``target_return`` and a greedy evaluation at the end. Deterministic
for a given seed.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from teamsrl_jax.rl import cartpole_env as env_lib
from teamsrl_jax.rl.cli import parse_config
from teamsrl_jax.rl.config import RLConfig, preset
from teamsrl_jax.rl.networks import ValueNet, make_policy
from teamsrl_jax.rl.normalizer import RunningNorm, norm_apply, norm_init, norm_update
from teamsrl_jax.rl.update import Rollout, rl_update
from teamsrl_jax.rl.value_fit import value_fit_init


@dataclass(frozen=True)
class CartPoleConfig:
    """Train TRPO on the pure-JAX CartPole (gymnasium CartPole-v1 dynamics)."""

    seed: int = 0
    """Seed of initialisation, sampling and environment resets."""
    total_steps: int = 100_000
    """Environment steps in total (rounded down to whole updates of num_envs * num_steps)."""
    num_envs: int = 8
    """Parallel CartPole chains."""
    num_steps: int = 128
    """Steps per chain between TRPO updates."""
    preset: str = "cartpole"
    """RL preset to start from: cartpole (tuned here), default or paper."""
    max_kl: float | None = None
    """Override the preset's TRPO trust-region radius."""
    gamma: float | None = None
    """Override the preset's discount factor."""
    lam: float | None = None
    """Override the preset's GAE lambda."""
    target_return: float = 475.0
    """Training return that counts as solved (gymnasium's CartPole-v1 threshold)."""
    eval_envs: int = 32
    """Greedy evaluation episodes after training (0: none)."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self) -> None:
        for name in ("total_steps", "num_envs", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"CartPoleConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.total_steps < self.num_envs * self.num_steps:
            raise ValueError(f"CartPoleConfig.total_steps must be >= num_envs * num_steps = "
                             f"{self.num_envs * self.num_steps}, got {self.total_steps}")
        if self.eval_envs < 0:
            raise ValueError(f"CartPoleConfig.eval_envs must be >= 0, got {self.eval_envs!r}")
        self.rl_config()  # validates the preset name and the overrides

    @property
    def num_updates(self) -> int:
        return self.total_steps // (self.num_envs * self.num_steps)

    def rl_config(self) -> RLConfig:
        rl = preset(self.preset)
        overrides = {k: getattr(self, k) for k in ("gamma", "lam") if getattr(self, k) is not None}
        if self.max_kl is not None:
            overrides["trpo"] = dataclasses.replace(rl.trpo, max_kl=self.max_kl)
        return dataclasses.replace(rl, seed=self.seed, **overrides)


class Runner(NamedTuple):
    policy: nnx.State
    value: nnx.State
    value_opt: Any
    norm: RunningNorm
    env: env_lib.CartPoleState
    obs: jax.Array
    key: jax.Array


def _networks(rl: RLConfig):
    rngs = nnx.Rngs(rl.seed)
    policy = make_policy(rl.policy, env_lib.OBS_DIM, env_lib.NUM_ACTIONS, rngs=rngs)
    value = ValueNet(env_lib.OBS_DIM, rl.value, rngs=rngs)
    return nnx.split(policy), nnx.split(value)


def make_train(cfg: CartPoleConfig, on_update=None):
    """``(init, train)``: ``init() -> Runner``; ``train(runner) -> (runner, per-update metrics)``, jitted.

    ``on_update(metrics)`` (optional) is called from inside the jitted loop after every update.
    """
    rl = cfg.rl_config()
    (gp, policy0), (gv, value0) = _networks(rl)
    dtype = jax.tree_util.tree_leaves(policy0)[0].dtype

    def observe(norm, obs):
        return norm_apply(norm, obs, rl.obs_clip) if rl.normalize_obs else obs

    def init() -> Runner:
        key, k_env = jax.random.split(jax.random.key(rl.seed))
        env, obs = env_lib.reset(k_env, cfg.num_envs, dtype)
        return Runner(policy0, value0, value_fit_init(rl.value, value0), norm_init(env_lib.OBS_DIM, dtype), env,
                      obs, key)

    def env_step(runner: Runner, _):
        key, k_act, k_env = jax.random.split(runner.key, 3)
        norm = norm_update(runner.norm, runner.obs) if rl.normalize_obs else runner.norm
        x = observe(norm, runner.obs)
        action = nnx.merge(gp, runner.policy).act(x, k_act)
        env, obs, reward, done, info = env_lib.step(runner.env, action, k_env)
        return runner._replace(norm=norm, env=env, obs=obs, key=key), (x, action, reward, done, info)

    def update(runner: Runner, _):
        runner, (x, actions, rewards, dones, info) = jax.lax.scan(env_step, runner, length=cfg.num_steps)
        # a time-limit end is not a failure: bootstrap it with the value of the state it stopped in
        truncated_value = nnx.merge(gv, runner.value)(observe(runner.norm, info["final_obs"]))
        rewards = rewards + rl.gamma * jnp.where(info["truncated"], truncated_value, 0.0)
        key, k_fit = jax.random.split(runner.key)
        rollout = Rollout(x, actions, rewards, dones, observe(runner.norm, runner.obs))
        policy, value, value_opt, pm = rl_update(gp, gv, rl, runner.policy, runner.value, runner.value_opt, rollout,
                                                 k_fit)
        started = runner.env.episodes > 0
        metrics = dict(
            mean_return=jnp.sum(jnp.where(started, runner.env.last_return, 0.0)) / jnp.maximum(jnp.sum(started), 1),
            all_finished=jnp.all(started), kl=pm["kl"], accepted=pm["accepted"], entropy=pm["entropy"],
            value_loss=pm["value_loss_after"],
        )
        if on_update is not None:
            jax.debug.callback(on_update, metrics, ordered=True)
        return runner._replace(policy=policy, value=value, value_opt=value_opt, key=key), metrics

    @jax.jit
    def train(runner: Runner):
        return jax.lax.scan(update, runner, length=cfg.num_updates)

    return init, train


def evaluate(cfg: CartPoleConfig, runner: Runner) -> jax.Array:
    """Mean return of ``cfg.eval_envs`` greedy episodes (capped at 500 steps) with the trained policy."""
    rl = cfg.rl_config()
    (gp, _), _ = _networks(rl)

    @jax.jit
    def run(runner):
        env, obs = env_lib.reset(jax.random.key(rl.seed + 1), cfg.eval_envs, runner.obs.dtype)

        def body(carry, _):
            env, obs, ret, alive = carry
            x = norm_apply(runner.norm, obs, rl.obs_clip) if rl.normalize_obs else obs
            action = nnx.merge(gp, runner.policy).act(x, None, deterministic=True)
            env, obs, reward, done, _ = env_lib.step(env, action, jax.random.key(0))
            return (env, obs, ret + alive * reward, alive & ~done), None

        init = (env, obs, jnp.zeros(cfg.eval_envs, obs.dtype), jnp.ones(cfg.eval_envs, bool))
        (_, _, ret, _), _ = jax.lax.scan(body, init, length=env_lib.MAX_STEPS)
        return jnp.mean(ret)

    return run(runner)


def train(cfg: CartPoleConfig) -> dict:
    """Run training; returns a summary (steps, returns per update, first step at target, eval return, times).

    A float64 preset ('paper') needs jax_enable_x64 (``main`` turns it on)."""
    steps_per_update = cfg.num_envs * cfg.num_steps
    bar = tqdm(total=cfg.num_updates * steps_per_update, unit="step", disable=not cfg.progress)

    def on_update(metrics):
        bar.update(steps_per_update)
        bar.set_postfix(ret=f"{float(metrics['mean_return']):.1f}", kl=f"{float(metrics['kl']):.4f}")

    start = time.perf_counter()
    init, run = make_train(cfg, on_update if cfg.progress else None)
    runner, metrics = jax.block_until_ready(run(init()))
    train_time = time.perf_counter() - start
    bar.close()
    metrics = jax.tree_util.tree_map(np.asarray, metrics)
    solved = np.flatnonzero(metrics["all_finished"] & (metrics["mean_return"] >= cfg.target_return))
    return dict(
        steps=cfg.num_updates * steps_per_update,
        final_mean_return=float(metrics["mean_return"][-1]),
        returns=metrics["mean_return"],
        accepted_fraction=float(np.mean(metrics["accepted"])),
        solved_at_step=int((solved[0] + 1) * steps_per_update) if solved.size else None,
        eval_return=float(evaluate(cfg, runner)) if cfg.eval_envs else None,
        wall_time_s=train_time,
        runner=runner,
    )


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(CartPoleConfig, argv)
    rl = cfg.rl_config()
    rl.enable_x64_if_needed()
    out = train(cfg)
    solved = out["solved_at_step"]
    print(f"steps: {out['steps']}  final mean return: {out['final_mean_return']:.1f}  "
          f"reached {cfg.target_return:g}: " + (f"at step {solved}" if solved else "no") +
          (f"  greedy eval ({cfg.eval_envs} episodes): {out['eval_return']:.1f}" if cfg.eval_envs else "") +
          f"  wall time: {out['wall_time_s']:.1f} s (compile included)")
    return out


if __name__ == "__main__":
    main()
