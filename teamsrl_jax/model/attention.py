"""Grouped-query self-attention with rotary embeddings, segment-id (packing) masks and a KV cache.

Shapes: B batch, L query length, S key length (= L, or the cache length), D hidden, N query heads,
K key/value heads, G = N / K query heads per kv head, H head dim.

Masking: query i sees key j when both carry the same non-zero segment id and j is not later than i
(and, with a sliding window W, i - j < W). Segment id 0 marks padding. Rope's cos/sin come from the
caller (computed once per forward from the positions), so packed sequences restart their positions per segment.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from teamsrl_jax.model.config import LlamaConfig
from teamsrl_jax.model.layers import Proj
from teamsrl_jax.model.rope import apply_rope
from teamsrl_jax.model.sharding import shard_activation

_MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite, so fully masked (padding) rows stay NaN-free


@flax.struct.dataclass
class KVCache:
    """Keys and values of the tokens seen so far, one slot per token, for incremental decoding."""

    k: tuple[jax.Array, ...]
    """Per layer [B, K, H, S] rotated keys: laid out so that a decode step's q·kᵀ is a plain [G, H] x [H, S]
    product per (row, kv head), with no transposed copy (on a CPU, 3-7x faster than [B, K, S, H])."""
    v: tuple[jax.Array, ...]
    """Per layer [B, K, S, H] values (p·v is then [G, S] x [S, H])."""
    segment_ids: jax.Array
    """[B, S] int32 segment id of each slot; 0 = empty or padding (never attended)."""
    end: jax.Array
    """[] or [B] int32: slots [0, end) are filled; the next call writes from here (one end per row when
    rows advance independently, as in the inference engine's continuous batching)."""

    @classmethod
    def zeros(cls, config: LlamaConfig, batch: int, max_len: int, dtype) -> KVCache:
        k_shape = (batch, config.num_key_value_heads, config.head_size, max_len)
        v_shape = (batch, config.num_key_value_heads, max_len, config.head_size)
        layers = range(config.num_hidden_layers)
        return cls(k=tuple(jnp.zeros(k_shape, dtype) for _ in layers), v=tuple(jnp.zeros(v_shape, dtype) for _ in layers),
                   segment_ids=jnp.zeros((batch, max_len), jnp.int32), end=jnp.zeros((), jnp.int32))


def attention_mask(q_segment_ids_BxL, kv_segment_ids_BxS, q_offset=0, sliding_window=None):
    """[B, L, S] bool: same non-zero segment, causal in slot order, optionally within the window.
    Query i sits at slot ``q_offset + i`` among the S key slots; ``q_offset`` is a scalar or one per row [B]."""
    L, S = q_segment_ids_BxL.shape[1], kv_segment_ids_BxS.shape[1]
    q_slot_BxLx1 = (jnp.reshape(q_offset, (-1, 1)) + jnp.arange(L)[None, :])[:, :, None]
    k_slot_1x1xS = jnp.arange(S)[None, None, :]
    visible_BxLxS = k_slot_1x1xS <= q_slot_BxLx1
    if sliding_window:
        visible_BxLxS &= q_slot_BxLx1 - k_slot_1x1xS < sliding_window
    q_seg_BxLx1 = q_segment_ids_BxL[:, :, None]
    same_BxLxS = (q_seg_BxLx1 == kv_segment_ids_BxS[:, None, :]) & (q_seg_BxLx1 != 0)
    return same_BxLxS & visible_BxLxS


def write_rows(cache, new, end, axis: int = 1):
    """``cache`` with ``new`` written at slots [end, end + L) along ``axis`` of every row (axis 0 is the row):
    ``end`` is a scalar, or one start per row [B] (a per-row dynamic_update_slice: one scatter)."""
    new = new.astype(cache.dtype)
    zero = jnp.zeros((), jnp.int32)  # one index type, also with float64 mode (x64) switched on
    if jnp.ndim(end) == 0:
        start = [zero] * cache.ndim
        start[axis] = jnp.asarray(end, jnp.int32)
        return jax.lax.dynamic_update_slice(cache, new, tuple(start))

    def one(c, x, e):
        start = [zero] * c.ndim
        start[axis - 1] = e.astype(jnp.int32)
        return jax.lax.dynamic_update_slice(c, x, tuple(start))

    return jax.vmap(one)(cache, new, end)


def cached_attention(q_BxLxNxH, k_BxKxHxS, v_BxKxSxH, mask_BxLxS):
    """``dot_product_attention`` over a cache laid out as ``KVCache`` lays it out (batch and kv heads lead,
    keys transposed), Q = G·L queries per kv head."""
    B, L, N, H = q_BxLxNxH.shape
    K = k_BxKxHxS.shape[1]
    q_BxKxGLxH = q_BxLxNxH.reshape(B, L, K, N // K, H).transpose(0, 2, 3, 1, 4).reshape(B, K, N // K * L, H)
    logits = jnp.einsum("BKQH,BKHS->BKQS", q_BxKxGLxH, k_BxKxHxS, preferred_element_type=jnp.float32)
    logits_BxKxGxLxS = logits.reshape(B, K, N // K, L, -1)
    logits_BxKxGxLxS = jnp.where(mask_BxLxS[:, None, None], logits_BxKxGxLxS * H**-0.5, _MASKED)
    probs = jax.nn.softmax(logits_BxKxGxLxS, axis=-1).astype(v_BxKxSxH.dtype).reshape(B, K, N // K * L, -1)
    out_BxKxQxH = jnp.einsum("BKQS,BKSH->BKQH", probs, v_BxKxSxH)
    return out_BxKxQxH.reshape(B, K, N // K, L, H).transpose(0, 3, 1, 2, 4).reshape(B, L, N, H)


def attend_cached(q_BxLxNxH, k_BxLxKxH, v_BxLxKxH, layer_cache, mask_BxLxS):
    """(out [B, L, N, H], the layer's updated (k, v) cache): writes this call's rotated keys and its values
    into ``layer_cache`` = (k [B, K, H, S], v [B, K, S, H], end) at slots end..end+L-1 (``end`` a scalar or one
    per row [B]), then attends over all S slots through ``mask_BxLxS``."""
    k_cache, v_cache, end = layer_cache
    k_BxKxHxS = write_rows(k_cache, k_BxLxKxH.transpose(0, 2, 3, 1), end, axis=3)
    v_BxKxSxH = write_rows(v_cache, v_BxLxKxH.transpose(0, 2, 1, 3), end, axis=2)
    dtype = q_BxLxNxH.dtype
    out_BxLxNxH = cached_attention(q_BxLxNxH, k_BxKxHxS.astype(dtype), v_BxKxSxH.astype(dtype), mask_BxLxS)
    return out_BxLxNxH, (k_BxKxHxS, v_BxKxSxH)


def dot_product_attention(q_BxLxNxH, k_BxSxKxH, v_BxSxKxH, mask_BxLxS, impl="einsum"):
    """softmax(q·kᵀ/√H + mask)·v with the softmax in float32; kv heads shared by G query heads."""
    if impl == "jax":
        return jax.nn.dot_product_attention(q_BxLxNxH, k_BxSxKxH, v_BxSxKxH, mask=mask_BxLxS[:, None])
    B, L, N, H = q_BxLxNxH.shape
    K = k_BxSxKxH.shape[2]
    q_BxLxKxGxH = q_BxLxNxH.reshape(B, L, K, N // K, H)
    logits_BxKxGxLxS = jnp.einsum("BLKGH,BSKH->BKGLS", q_BxLxKxGxH, k_BxSxKxH, preferred_element_type=jnp.float32)
    logits_BxKxGxLxS = jnp.where(mask_BxLxS[:, None, None], logits_BxKxGxLxS * H**-0.5, _MASKED)
    probs_BxKxGxLxS = jax.nn.softmax(logits_BxKxGxLxS, axis=-1).astype(v_BxSxKxH.dtype)
    out_BxLxKxGxH = jnp.einsum("BKGLS,BSKH->BLKGH", probs_BxKxGxLxS, v_BxSxKxH)
    return out_BxLxKxGxH.reshape(B, L, N, H)


class Attention(nnx.Module):
    """q/k/v projections (optionally biased), rope on q and k, masked attention, output projection."""

    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        D, N, K, H = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_size
        kw = dict(dtype=config.dtype, param_dtype=config.param_dtype, rngs=rngs)
        self.q_proj = Proj((D,), (N, H), ("embed", "heads", "head_dim"), bias=config.attention_bias, **kw)
        self.k_proj = Proj((D,), (K, H), ("embed", "kv_heads", "head_dim"), bias=config.attention_bias, **kw)
        self.v_proj = Proj((D,), (K, H), ("embed", "kv_heads", "head_dim"), bias=config.attention_bias, **kw)
        self.o_proj = Proj((N, H), (D,), ("heads", "head_dim", "embed"), bias=config.o_bias, bias_axes=("norm",), **kw)
        self.config = config

    def __call__(self, x_BxLxD, rope_BxLx1xH, mask_BxLxS, layer_cache=None):
        """Returns (out [B, L, D], this layer's updated (k, v) cache or None). ``rope_BxLx1xH`` is the
        (cos, sin) pair of the tokens' positions (``rope.rope_cos_sin``). ``layer_cache`` is
        (k [B, K, H, S], v [B, K, S, H], end): this call's keys/values are written at slots end..end+L-1
        (``end`` scalar or per row [B]) and the queries attend over all S slots through ``mask_BxLxS``."""
        config = self.config
        q_BxLxNxH = apply_rope(self.q_proj(x_BxLxD), *rope_BxLx1xH)
        k_BxSxKxH = apply_rope(self.k_proj(x_BxLxD), *rope_BxLx1xH)
        v_BxSxKxH = self.v_proj(x_BxLxD)
        q_BxLxNxH = shard_activation(q_BxLxNxH, ("batch", "length", "heads", "head_dim"))
        new_cache = None
        if layer_cache is not None:
            out_BxLxNxH, new_cache = attend_cached(q_BxLxNxH, k_BxSxKxH, v_BxSxKxH, layer_cache, mask_BxLxS)
        else:
            dtype = q_BxLxNxH.dtype
            out_BxLxNxH = dot_product_attention(q_BxLxNxH, k_BxSxKxH.astype(dtype), v_BxSxKxH.astype(dtype),
                                                mask_BxLxS, config.attention_impl)
        out_BxLxNxH = shard_activation(out_BxLxNxH, ("batch", "length", "heads", "head_dim"))
        return self.o_proj(out_BxLxNxH), new_cache
