"""The decoder-only Llama-family model (Llama 1/2/3, Mistral, Qwen2) in flax.nnx.

Module and parameter names mirror Hugging Face's ``LlamaForCausalLM`` so that checkpoint I/O is a
mechanical rename (``hf_io.py``): ``embed_tokens``, ``layers[i].{input_layernorm, self_attn.{q,k,v,o}_proj,
post_attention_layernorm, mlp.{gate,up,down}_proj}``, ``norm``, ``lm_head``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from teamsrl_jax.model.attention import Attention, KVCache, attention_mask, write_rows
from teamsrl_jax.model.config import LlamaConfig
from teamsrl_jax.model.layers import MLP, Embed, Proj, RMSNorm, matmul_2d
from teamsrl_jax.model.rope import inverse_frequencies, rope_cos_sin
from teamsrl_jax.model.sharding import logical_sharding, shard_activation

# jax.checkpoint policies per LlamaConfig.remat. "dots" keeps the weight matmuls' outputs (no batch
# dims) and recomputes the rest, attention scores included (MaxText's "minimal").
_REMAT_POLICIES = {"full": None, "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}


class DecoderLayer(nnx.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        kw = dict(dtype=config.dtype, param_dtype=config.param_dtype)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        self.self_attn = Attention(config, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        self.mlp = MLP(config.hidden_size, config.intermediate_size, rngs=rngs, **kw)

    def __call__(self, x_BxLxD, rope_BxLx1xH, mask_BxLxS, layer_cache=None):
        h_BxLxD, new_cache = self.self_attn(self.input_layernorm(x_BxLxD), rope_BxLx1xH, mask_BxLxS, layer_cache)
        x_BxLxD = x_BxLxD + h_BxLxD
        x_BxLxD = x_BxLxD + self.mlp(self.post_attention_layernorm(x_BxLxD))
        return shard_activation(x_BxLxD, ("batch", "length", "embed")), new_cache


def _layer_forward(layer, x_BxLxD, rope_BxLx1xH, mask_BxLxS):
    return layer(x_BxLxD, rope_BxLx1xH, mask_BxLxS)[0]


class Llama(nnx.Module):
    """Token ids -> float32 next-token logits."""

    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        kw = dict(dtype=config.dtype, param_dtype=config.param_dtype)
        self.config = config
        self.embed_tokens = Embed(config.vocab_size, config.hidden_size, rngs=rngs, **kw)
        self.layers = nnx.List([DecoderLayer(config, rngs=rngs) for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        self.lm_head = None if config.tie_word_embeddings else Proj(
            (config.hidden_size,), (config.vocab_size,), ("embed", "vocab"), rngs=rngs, **kw)

    def init_cache(self, batch: int, max_len: int, dtype=None) -> KVCache:
        """An empty KV cache for ``batch`` rows of up to ``max_len`` tokens (prompt + generated)."""
        return KVCache.zeros(self.config, batch, max_len, dtype or self.config.dtype)

    def __call__(self, input_ids_BxL, *, positions_BxL=None, segment_ids_BxL=None, cache: KVCache | None = None,
                 return_hidden: bool = False, branch_ids_BxL=None):
        """Logits [B, L, V] in float32; with ``cache`` returns (logits, updated cache).

        positions_BxL: rope positions, default 0..L-1 (continuing from ``cache.end`` with a cache);
        pass per-segment positions for packed rows and per-row positions for left-padded prompts.
        segment_ids_BxL: tokens attend causally within equal non-zero ids; 0 = padding. Default all 1.
        cache: writes this call's keys/values at slots [cache.end, cache.end + L) (``cache.end`` a scalar or
        one per row) and attends over the filled slots (a prefill of the prompt, then one-token steps).
        return_hidden: return the final normalised hidden states [B, L, D] instead of logits (``head``
        turns chosen rows of them into logits, so a prefill need not project every position).
        branch_ids_BxL: a shared prefix and alternative continuations of it packed in one segment (no cache): a
        token sees the earlier tokens of branch 0 (the prefix) and of its own branch only, so several
        continuations of one context are scored in one row (pass their positions too: each continues the prefix).
        """
        offset = 0 if cache is None else cache.end
        x_BxLxD = shard_activation(self.embed_tokens(input_ids_BxL), ("batch", "length", "embed"))
        kv_segment_ids_BxS, mask_BxLxS, rope_BxLx1xH = forward_inputs(
            self.config, input_ids_BxL.shape, positions_BxL, segment_ids_BxL, cache)
        if branch_ids_BxL is not None:
            if cache is not None:
                raise ValueError("branch_ids_BxL is for packed rows without a cache")
            q_branch_BxLx1, k_branch_Bx1xS = branch_ids_BxL[:, :, None], branch_ids_BxL[:, None, :]
            mask_BxLxS &= (k_branch_Bx1xS == 0) | (k_branch_Bx1xS == q_branch_BxLx1)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            if cache is not None:
                x_BxLxD, (k, v) = layer(x_BxLxD, rope_BxLx1xH, mask_BxLxS, (cache.k[i], cache.v[i], offset))
                new_k.append(k)
                new_v.append(v)
            elif self.config.remat != "none":
                remat_forward = nnx.remat(_layer_forward, policy=_REMAT_POLICIES[self.config.remat])
                x_BxLxD = remat_forward(layer, x_BxLxD, rope_BxLx1xH, mask_BxLxS)
            else:
                x_BxLxD = layer(x_BxLxD, rope_BxLx1xH, mask_BxLxS)[0]
        out = self.norm(x_BxLxD) if return_hidden else self.head(self.norm(x_BxLxD))
        if cache is None:
            return out
        return out, KVCache(k=tuple(new_k), v=tuple(new_v), segment_ids=kv_segment_ids_BxS,
                            end=cache.end + input_ids_BxL.shape[1])

    def head(self, x_BxLxD):
        """Float32 logits [..., V] from final normalised hidden states [..., D] (tied or separate head)."""
        if self.lm_head is None:
            logits = self.embed_tokens.attend(x_BxLxD)
        else:
            logits = matmul_2d(x_BxLxD, self.lm_head.kernel[...].astype(x_BxLxD.dtype),
                               preferred_element_type=jnp.float32)
        return shard_activation(logits, ("batch", "length", "vocab")) if logits.ndim == 3 else logits


def forward_inputs(config: LlamaConfig, shape_BxL, positions_BxL=None, segment_ids_BxL=None,
                   cache: KVCache | None = None):
    """What every layer of a forward pass over B rows of L tokens shares: (the key slots' segment ids [B, S]
    (the cache's, with this call's written in), the attention mask [B, L, S], rope's (cos, sin) of the
    positions). Defaults as ``Llama.__call__`` documents them: segment ids all 1, positions 0..L-1 continuing
    from ``cache.end``."""
    B, L = shape_BxL
    offset = 0 if cache is None else cache.end
    if segment_ids_BxL is None:
        segment_ids_BxL = jnp.ones((B, L), jnp.int32)
    if positions_BxL is None:
        positions_BxL = jnp.reshape(offset, (-1, 1)) + jnp.arange(L, dtype=jnp.int32)[None, :]
        positions_BxL = jnp.broadcast_to(positions_BxL, (B, L))
    kv_segment_ids_BxS = segment_ids_BxL if cache is None else write_rows(
        cache.segment_ids, segment_ids_BxL.astype(jnp.int32), offset)
    mask_BxLxS = attention_mask(segment_ids_BxL, kv_segment_ids_BxS, offset, config.sliding_window)
    inv_freq = inverse_frequencies(config.head_size, config.rope_theta, config.rope_scaling)
    return kv_segment_ids_BxS, mask_BxLxS, rope_cos_sin(positions_BxL, inv_freq)  # rope once, for every layer


def init_model(config: LlamaConfig, *, seed: int = 0, mesh=None) -> Llama:
    """A randomly initialised model. With ``mesh`` the initialiser runs under ``jax.jit`` with the
    params' logical shardings as ``out_shardings``, so each device only ever holds its own slice
    (how a model too large for one device is created)."""
    if mesh is None:
        return Llama(config, rngs=nnx.Rngs(seed))
    graphdef, abstract_state = nnx.split(nnx.eval_shape(lambda: Llama(config, rngs=nnx.Rngs(seed))))
    init = jax.jit(lambda: nnx.state(Llama(config, rngs=nnx.Rngs(seed))),
                   out_shardings=logical_sharding(abstract_state, mesh))
    return nnx.merge(graphdef, init())
