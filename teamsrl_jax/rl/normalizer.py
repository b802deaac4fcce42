"""Running mean/std observation normaliser as a pure state plus update/apply functions.

    norm = norm_init(obs_dim)
    norm = norm_update(norm, obs_NxD)          # any number of rows, e.g. one step of N parallel chains
    x = norm_apply(norm, obs_NxD, clip=5.0)    # (obs - mean) / (std + 1e-8), clipped to [-clip, clip]

The statistics are exactly those of the original's ``ZFilter``/``RunningStat`` (Welford, pushed one
observation at a time): ``std`` uses the sample variance ``M2 / (n - 1)``, and ``mean**2`` while ``n == 1``.
A batch update merges with Chan et al.'s parallel formula, which equals pushing the rows one by one.
The original updates with an observation *before* normalising it; do the same to reproduce it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class RunningNorm(NamedTuple):
    """Count ``n`` (scalar), running ``mean`` and sum of squared deviations ``m2`` (both ``(obs_dim,)``)."""

    count: jax.Array
    mean: jax.Array
    m2: jax.Array


def norm_init(obs_dim: int, dtype=None) -> RunningNorm:
    dtype = dtype or jnp.zeros(()).dtype
    return RunningNorm(jnp.zeros((), dtype), jnp.zeros((obs_dim,), dtype), jnp.zeros((obs_dim,), dtype))


def norm_update(state: RunningNorm, x: jax.Array) -> RunningNorm:
    """Merge the rows of ``x`` (shape ``(N, obs_dim)``) into the running statistics."""
    x = jnp.asarray(x, state.mean.dtype).reshape(-1, state.mean.shape[0])
    n_b = jnp.asarray(x.shape[0], state.count.dtype)
    mean_b = jnp.mean(x, axis=0)
    m2_b = jnp.sum((x - mean_b) ** 2, axis=0)
    n = state.count + n_b
    delta = mean_b - state.mean
    mean = state.mean + delta * n_b / n
    m2 = state.m2 + m2_b + delta**2 * state.count * n_b / n
    return RunningNorm(n, mean, m2)


def norm_std(state: RunningNorm) -> jax.Array:
    """Standard deviation as ``RunningStat.std``: sqrt(m2 / (n-1)) for n > 1, |mean| for n == 1, 1 for n == 0."""
    var = jnp.where(state.count > 1, state.m2 / jnp.maximum(state.count - 1, 1), state.mean**2)
    return jnp.where(state.count > 0, jnp.sqrt(var), 1.0)


def norm_apply(state: RunningNorm, x: jax.Array, clip: float = 5.0) -> jax.Array:
    """Standardise ``x`` (shape ``(..., obs_dim)``) with the running statistics and clip."""
    z = (jnp.asarray(x, state.mean.dtype) - state.mean) / (norm_std(state) + 1e-8)
    return jnp.clip(z, -clip, clip)
