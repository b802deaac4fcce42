"""Rotary position embeddings in the Hugging Face ``rotate_half`` convention.

HF Llama checkpoints store q/k weights for the split-halves layout (rotate dims i and i + H/2
together), so applying rope this way needs no permutation of the loaded weights. Frequencies
support plain rope, linear scaling and Llama-3.1 frequency-dependent scaling.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def inverse_frequencies(head_dim: int, theta: float, scaling: dict | None = None) -> np.ndarray:
    """[H/2] float32 inverse frequencies theta^(-2i/H), rescaled per ``scaling`` (an HF rope dict)."""
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    scaling = scaling or {}
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif rope_type == "llama3":
        inv_freq = _llama3_scale(inv_freq, **{k: scaling[k] for k in _LLAMA3_KEYS})
    elif rope_type != "default":
        raise ValueError(f"rope_type {rope_type!r} is not supported (default, linear, llama3)")
    return inv_freq.astype(np.float32)


_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def _llama3_scale(inv_freq, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings):
    """Llama 3.1: wavelengths longer than original_len/low_freq_factor are divided by ``factor``,
    shorter than original_len/high_freq_factor are kept, and the band between is interpolated."""
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = original_max_position_embeddings / low_freq_factor
    high_freq_wavelen = original_max_position_embeddings / high_freq_factor
    smooth = (original_max_position_embeddings / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    interpolated = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(is_medium, interpolated, scaled)


def rope_cos_sin(positions_BxL: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """(cos, sin), each [B, L, 1, H] float32, of the angles position·inv_freq (duplicated over both halves):
    computed once per forward pass and shared by q and k of every layer."""
    angles_BxLxh = positions_BxL[..., None].astype(jnp.float32) * jnp.asarray(inv_freq)
    angles_BxLx1xH = jnp.concatenate([angles_BxLxh, angles_BxLxh], axis=-1)[:, :, None, :]
    return jnp.cos(angles_BxLx1xH), jnp.sin(angles_BxLx1xH)


def apply_rope(x_BxLxNxH: jax.Array, cos_BxLx1xH: jax.Array, sin_BxLx1xH: jax.Array) -> jax.Array:
    """Rotates each head vector by its position: x·cos + rotate_half(x)·sin, computed in float32
    (``cos``/``sin`` from :func:`rope_cos_sin`)."""
    x = x_BxLxNxH.astype(jnp.float32)
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    out = x * cos_BxLx1xH + rotated * sin_BxLx1xH
    return out.astype(x_BxLxNxH.dtype)
