"""A vectorised pure-JAX CartPole with gymnasium CartPole-v1's dynamics, the RL core's sanity environment.

Same constants, explicit Euler integration, termination (|x| > 2.4 or |theta| > 12 degrees), reward 1 per step
(the terminating one included), truncation after 500 steps, and reset state uniform(-0.05, 0.05).
Finished chains are reset inside :func:`step` (the returned observation is then the new episode's first).

    state, obs_Nx4 = reset(key, num_envs)
    state, obs_Nx4, reward_N, done_N, info = step(state, action_N, key)   # done = terminated or truncated
    info["truncated_N"], info["final_obs_Nx4"]   # time-limit ends (not failures) and the state before any reset
    state.last_return_N                          # return of each chain's last finished episode
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

GRAVITY, MASSCART, MASSPOLE, LENGTH, FORCE_MAG, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS, POLEMASS_LENGTH = MASSPOLE + MASSCART, MASSPOLE * LENGTH
THETA_THRESHOLD, X_THRESHOLD = 12 * 2 * math.pi / 360, 2.4
MAX_STEPS = 500
OBS_DIM, NUM_ACTIONS = 4, 2


class CartPoleState(NamedTuple):
    physics: jax.Array      # (N, 4): x, x_dot, theta, theta_dot
    t: jax.Array            # (N,) steps taken in the current episode
    ep_return: jax.Array    # (N,) return so far in the current episode
    last_return: jax.Array  # (N,) return of the last finished episode (0 before the first)
    episodes: jax.Array     # (N,) finished episodes


def dynamics(physics: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One Euler step of ``(..., 4)`` states under actions in {0, 1}; returns the next state and termination."""
    x, x_dot, theta, theta_dot = jnp.moveaxis(physics, -1, 0)
    force = jnp.where(action == 1, FORCE_MAG, -FORCE_MAG)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    temp = (force + POLEMASS_LENGTH * theta_dot**2 * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (LENGTH * (4.0 / 3.0 - MASSPOLE * cos**2 / TOTAL_MASS))
    x_acc = temp - POLEMASS_LENGTH * theta_acc * cos / TOTAL_MASS
    nxt = jnp.stack([x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot, theta_dot + TAU * theta_acc], -1)
    terminated = (jnp.abs(nxt[..., 0]) > X_THRESHOLD) | (jnp.abs(nxt[..., 2]) > THETA_THRESHOLD)
    return nxt.astype(physics.dtype), terminated


def _initial_physics(key: jax.Array, num_envs: int, dtype) -> jax.Array:
    return jax.random.uniform(key, (num_envs, 4), dtype, -0.05, 0.05)


def reset(key: jax.Array, num_envs: int, dtype=jnp.float32) -> tuple[CartPoleState, jax.Array]:
    physics = _initial_physics(key, num_envs, dtype)
    zeros = jnp.zeros((num_envs,), dtype)
    state = CartPoleState(physics, jnp.zeros((num_envs,), jnp.int32), zeros, zeros, jnp.zeros((num_envs,), jnp.int32))
    return state, physics


def step(state: CartPoleState, action: jax.Array, key: jax.Array):
    """Advance every chain; finished ones restart. Returns ``(state, obs, reward, done, info)``."""
    physics, terminated = dynamics(state.physics, action)
    t = state.t + 1
    truncated = (t >= MAX_STEPS) & ~terminated
    done = terminated | truncated
    reward = jnp.ones_like(state.ep_return)
    ep_return = state.ep_return + reward
    fresh = _initial_physics(key, physics.shape[0], physics.dtype)
    state = CartPoleState(
        physics=jnp.where(done[:, None], fresh, physics), t=jnp.where(done, 0, t),
        ep_return=jnp.where(done, 0.0, ep_return), last_return=jnp.where(done, ep_return, state.last_return),
        episodes=state.episodes + done,
    )
    return state, state.physics, reward, done, dict(truncated=truncated, final_obs=physics)
