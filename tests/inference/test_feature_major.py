"""The engine's feature-major forward equals the model's own cached forward, for each architecture variant."""

import jax.numpy as jnp
import numpy as np
import pytest

from teamsrl_jax.inference import feature_major
from teamsrl_jax.model import LlamaConfig, init_model

VARIANTS = {
    "llama, untied head": dict(),
    "qwen2, q/k/v biases": dict(model_type="qwen2", attention_bias=True),
    "mistral, tied head, sliding window": dict(model_type="mistral", tie_word_embeddings=True, sliding_window=3),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_equals_the_models_cached_forward(variant):
    config = LlamaConfig(vocab_size=96, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, **VARIANTS[variant])
    model = init_model(config, seed=3)
    weights = feature_major.from_model(model)
    assert (weights.lm_head is None) == config.tie_word_embeddings  # a tied head is the embedding, held once
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, 96, (3, 7)), jnp.int32)
    lengths = np.array([7, 4, 2])
    segments = jnp.asarray((np.arange(7)[None] < lengths[:, None]).astype(np.int32))
    # a prefill of ragged rows over an empty cache
    want, want_cache = model(ids, segment_ids_BxL=segments, cache=model.init_cache(3, 16), return_hidden=True)
    got, got_cache = feature_major.forward(weights, config, ids, segments, model.init_cache(3, 16))
    np.testing.assert_allclose(got, want, atol=2e-5)
    for a, b in zip(got_cache.k + got_cache.v, want_cache.k + want_cache.v):
        np.testing.assert_allclose(a, b, atol=2e-5)
    np.testing.assert_array_equal(got_cache.segment_ids, want_cache.segment_ids)
    # then one decode step with each row at its own length
    ends = jnp.asarray(lengths, jnp.int32)
    step = ids[:, :1]
    active = jnp.ones((3, 1), jnp.int32)
    want, want_cache = model(step, segment_ids_BxL=active, cache=want_cache.replace(end=ends), return_hidden=True)
    got, got_cache = feature_major.forward(weights, config, step, active, got_cache.replace(end=ends))
    np.testing.assert_allclose(got, want, atol=2e-5)
    np.testing.assert_allclose(got_cache.k[-1], want_cache.k[-1], atol=2e-5)
    # the head: the engine's output rows give the model's logits
    logits = jnp.einsum("BLD,VD->BLV", got, weights.output)
    np.testing.assert_allclose(logits, model.head(want), atol=2e-5)
    assert not np.allclose(got[0], got[1])  # the rows' own tokens and positions, not one row repeated


def test_weights_are_transposed_and_stacked():
    config = LlamaConfig(vocab_size=96, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=6, num_key_value_heads=2, model_type="qwen2", attention_bias=True)
    model = init_model(config, seed=1)
    layer = feature_major.from_model(model).layers[0]
    attn, mlp = model.layers[0].self_attn, model.layers[0].mlp
    assert layer.qkv.shape == ((6 + 2 * 2) * 8, 48) and layer.gate_up.shape == (128, 48)
    np.testing.assert_array_equal(layer.qkv[:48], attn.q_proj.kernel[...].reshape(48, 48).T)
    np.testing.assert_array_equal(layer.qkv[64:], attn.v_proj.kernel[...].reshape(48, 16).T)
    np.testing.assert_array_equal(layer.gate_up[64:], mlp.up_proj.kernel[...].T)
    np.testing.assert_array_equal(layer.o, attn.o_proj.kernel[...].reshape(48, 48).T)
    np.testing.assert_array_equal(layer.qkv_bias[48:64], attn.k_proj.bias[...].reshape(-1))
    assert layer.o_bias is None  # qwen2: no bias on o
