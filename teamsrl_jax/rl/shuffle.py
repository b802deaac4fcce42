"""Uniformly random permutations that are cheap to compute on a CPU.

``jax.random.permutation`` sorts (random key, value) pairs; XLA's CPU sort calls a compiled comparator per
comparison for such pairs, about 1 ms per 2,048 elements. :func:`permutations` instead sorts single ``uint32``
words whose high bits are random and whose low bits hold the element's position, which XLA sorts with a plain
integer sort (about ten times faster), and reads the order from the low bits. Two elements whose random bits tie
keep their current order within that round; as ``jax.random``'s own shuffle does for its ties, enough rounds are
composed that this bias is negligible (``exponent`` 3: the chance that any tie survives all rounds is about
``n ** -1``). Beyond 2**24 elements too few random bits are left and it falls back to ``jax.random.permutation``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_EXPONENT = 3.0
_MAX_INDEX_BITS = 24


def rounds_needed(n: int) -> int:
    """Sort rounds for ``n`` elements: ``ceil(exponent * ln n / (random bits * ln 2))``."""
    index_bits = max(1, (n - 1).bit_length())
    return max(1, math.ceil(_EXPONENT * math.log(max(n, 2)) / ((32 - index_bits) * math.log(2))))


def permutations(key: jax.Array, n: int, count: int) -> jax.Array:
    """``count`` independent, uniformly random permutations of ``range(n)``: an int32 array ``(count, n)``."""
    if n < 1 or count < 1:
        raise ValueError(f"permutations: need n >= 1 and count >= 1, got n={n}, count={count}")
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > _MAX_INDEX_BITS:
        return jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, count)).astype(jnp.int32)
    position = jnp.arange(n, dtype=jnp.uint32)
    mask = jnp.uint32((1 << index_bits) - 1)
    perm = jnp.broadcast_to(position, (count, n))
    for round_key in jax.random.split(key, rounds_needed(n)):
        random_high = jax.random.bits(round_key, (count, n), jnp.uint32) << index_bits
        order = jnp.sort(random_high | position, axis=-1) & mask
        perm = jnp.take_along_axis(perm, order.astype(jnp.int32), axis=-1)
    return perm.astype(jnp.int32)
