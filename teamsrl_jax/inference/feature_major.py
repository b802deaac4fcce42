"""The engine's forward pass, feature-major: weights stored [out, in], activations [features, tokens].

A decode step multiplies every weight matrix by a handful of token vectors. XLA's CPU kernels run
``W[out, in] · X[in, T]`` (the large operand first, the output feature-major) markedly faster than the model's
``X[T, in] · W[in, out]`` at small T: SmolLM2-135M's 30 layers at batch 16 take about 39 instead of 48 ms. The
gain holds only while the activations stay [D, T] from layer to layer (a transposed copy around each product
costs more than it saves), so the engine runs this forward over weights transposed once, when it is built.

It is the model's computation (``model.llama``) in that layout, term for term: the same embedding, RMSNorm in
float32, q/k/v/o and SwiGLU products in the compute dtype, and for attention the model's own functions (masks,
rope, the KV cache and its writes) on the small per-layer q/k/v turned token-major. Tests hold it to the model's
logits and to ``transformers``' greedy tokens.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from teamsrl_jax.model.attention import KVCache, attend_cached
from teamsrl_jax.model.config import LlamaConfig
from teamsrl_jax.model.llama import Llama, forward_inputs
from teamsrl_jax.model.rope import apply_rope


@flax.struct.dataclass
class LayerWeights:
    """One decoder layer's weights, matrices [out, in] in the compute dtype (biases None where absent)."""

    input_norm: jax.Array
    qkv: jax.Array
    """[(N + 2K)·H, D]: q, k and v stacked, one product (fewer, larger products run faster)."""
    o: jax.Array
    """[D, N·H]"""
    post_norm: jax.Array
    gate_up: jax.Array
    """[2F, D]: gate and up stacked."""
    down: jax.Array
    """[D, F]"""
    qkv_bias: jax.Array | None = None
    o_bias: jax.Array | None = None


@flax.struct.dataclass
class Weights:
    """A Llama-family model's weights for ``forward``."""

    embedding: jax.Array
    """[V, D] token embeddings."""
    norm: jax.Array
    layers: tuple[LayerWeights, ...]
    lm_head: jax.Array | None = None
    """[V, D] an untied LM head, transposed; None when the head is the embedding."""

    @property
    def output(self) -> jax.Array:
        """[V, D] the LM head's rows (the embedding itself when tied: one array, held once)."""
        return self.embedding if self.lm_head is None else self.lm_head


def from_model(model: Llama) -> Weights:
    """The model's weights transposed to [out, in] and cast to its compute dtype, in one jitted program (the
    arrays of a model sharded over a mesh stay sharded)."""
    config = model.config
    if config not in _TRANSPOSERS:
        _TRANSPOSERS[config] = jax.jit(lambda state: _weights(state, config))
    return _TRANSPOSERS[config](nnx.state(model))


_TRANSPOSERS: dict = {}


def _weights(state, config: LlamaConfig) -> Weights:
    dtype = jnp.dtype(config.dtype)

    def matrix(proj, n_in: int = 1):  # kernel [*in, *out] -> [prod(out), prod(in)]
        kernel = proj["kernel"][...]
        return kernel.reshape(math.prod(kernel.shape[:n_in]), -1).T.astype(dtype)

    def bias(*projs):  # the projections' biases, stacked; None where they have none
        if "bias" not in projs[0]:
            return None
        return jnp.concatenate([proj["bias"][...].reshape(-1) for proj in projs]).astype(dtype)

    def vector(norm):
        return norm["scale"][...].astype(dtype)

    layers = []
    for i in range(config.num_hidden_layers):
        layer = state["layers"][i]
        attn, mlp = layer["self_attn"], layer["mlp"]
        layers.append(LayerWeights(
            input_norm=vector(layer["input_layernorm"]), post_norm=vector(layer["post_attention_layernorm"]),
            qkv=jnp.concatenate([matrix(attn[name]) for name in ("q_proj", "k_proj", "v_proj")]),
            o=matrix(attn["o_proj"], 2),
            gate_up=jnp.concatenate([matrix(mlp["gate_proj"]), matrix(mlp["up_proj"])]), down=matrix(mlp["down_proj"]),
            qkv_bias=bias(attn["q_proj"], attn["k_proj"], attn["v_proj"]), o_bias=bias(attn["o_proj"])))
    embedding = state["embed_tokens"]["embedding"][...].astype(dtype)
    lm_head = None if config.tie_word_embeddings else matrix(state["lm_head"])
    return Weights(embedding=embedding, norm=vector(state["norm"]), layers=tuple(layers), lm_head=lm_head)


def _rms_norm(x_DxT, scale_D, eps: float):
    """RMSNorm over the feature axis, statistics in float32 (``layers.RMSNorm``, feature-major)."""
    x = x_DxT.astype(jnp.float32)
    x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=0, keepdims=True) + eps)
    return x.astype(x_DxT.dtype) * scale_D[:, None]


def _linear(w_OxI, x_IxT, bias_O=None):
    y = jnp.matmul(w_OxI, x_IxT.astype(w_OxI.dtype))
    return y if bias_O is None else y + bias_O[:, None]


def forward(weights: Weights, config: LlamaConfig, ids_BxL, segment_ids_BxL, cache: KVCache):
    """(final normalised hidden states [B, L, D], the updated cache): ``Llama.__call__(ids, segment_ids_BxL=...,
    cache=cache, return_hidden=True)``, computed feature-major."""
    B, L = ids_BxL.shape
    N, K, H = config.num_attention_heads, config.num_key_value_heads, config.head_size
    kv_segment_ids_BxS, mask_BxLxS, rope_BxLx1xH = forward_inputs(config, (B, L), None, segment_ids_BxL, cache)
    x_DxT = jnp.take(weights.embedding, ids_BxL.reshape(-1), axis=0).T  # tokens row by row: T = B·L

    def heads(y_KHxT, n):  # [n·H, B·L] -> [B, L, n, H]
        return y_KHxT.reshape(n, H, B, L).transpose(2, 3, 0, 1)

    new_k, new_v = [], []
    for i, w in enumerate(weights.layers):
        h_DxT = _rms_norm(x_DxT, w.input_norm, config.rms_norm_eps)
        qkv = _linear(w.qkv, h_DxT, w.qkv_bias)
        q_BxLxNxH = apply_rope(heads(qkv[:N * H], N), *rope_BxLx1xH)
        k_BxLxKxH = apply_rope(heads(qkv[N * H:(N + K) * H], K), *rope_BxLx1xH)
        v_BxLxKxH = heads(qkv[(N + K) * H:], K)
        out_BxLxNxH, (k, v) = attend_cached(q_BxLxNxH, k_BxLxKxH, v_BxLxKxH, (cache.k[i], cache.v[i], cache.end),
                                            mask_BxLxS)
        new_k.append(k)
        new_v.append(v)
        x_DxT = x_DxT + _linear(w.o, out_BxLxNxH.transpose(2, 3, 0, 1).reshape(N * H, B * L), w.o_bias)
        h_DxT = _rms_norm(x_DxT, w.post_norm, config.rms_norm_eps)
        gate_up = _linear(w.gate_up, h_DxT)
        F = gate_up.shape[0] // 2
        x_DxT = x_DxT + _linear(w.down, jax.nn.silu(gate_up[:F]) * gate_up[F:])
    hidden_BxLxD = _rms_norm(x_DxT, weights.norm, config.rms_norm_eps).reshape(-1, B, L).transpose(1, 2, 0)
    return hidden_BxLxD, KVCache(k=tuple(new_k), v=tuple(new_v), segment_ids=kv_segment_ids_BxS, end=cache.end + L)
