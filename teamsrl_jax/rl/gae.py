"""Generalised advantage estimation as a reverse ``lax.scan`` over time, for N parallel chains.

    adv_TxN, returns_TxN = gae(rewards_TxN, values_TxN, dones_TxN, last_value_N, gamma=0.99, lam=0.95)

``dones[t]`` is 1 when transition ``t`` ended its episode: neither the next value nor the next advantage is
carried back across it. ``last_value`` is V(s_T) of the state after the last transition (ignored where the
last transition is done). ``returns = advantages + values``; with ``lam=1`` they are the discounted returns
(bootstrapped from ``last_value``), the value targets of the paper. Trailing axes after T are free, so
``(T,)`` or ``(T, N)`` both work.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards: jax.Array, values: jax.Array, dones: jax.Array, last_value: jax.Array, *, gamma: float,
        lam: float) -> tuple[jax.Array, jax.Array]:
    """Advantages and returns, both shaped like ``rewards`` (``(T, ...)``)."""
    dtype = values.dtype
    rewards, dones = jnp.asarray(rewards, dtype), jnp.asarray(dones, dtype)
    not_done = 1.0 - dones

    def step(carry, xs):
        next_value, next_adv = carry
        reward, value, nd = xs
        delta = reward + gamma * next_value * nd - value
        adv = delta + gamma * lam * nd * next_adv
        return (value, adv), adv

    init = (jnp.asarray(last_value, dtype), jnp.zeros_like(values[0]))
    _, adv = jax.lax.scan(step, init, (rewards, values, not_done), reverse=True)
    return adv, adv + values


def normalize_advantages(adv: jax.Array, eps: float = 1e-8) -> jax.Array:
    """(adv - mean) / (std + eps) over all entries, std with ddof=1 as torch's ``Tensor.std``."""
    return (adv - jnp.mean(adv)) / (jnp.std(adv, ddof=1) + eps)
