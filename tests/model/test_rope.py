"""Rope frequencies against transformers' reference implementations, and the rotation itself."""

import jax.numpy as jnp
import numpy as np
import pytest

from teamsrl_jax.model.rope import apply_rope, inverse_frequencies, rope_cos_sin


@pytest.mark.parametrize("rope", [
    {"rope_type": "default"},
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 8192},
])
def test_inverse_frequencies_match_transformers(rope):
    import transformers
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = transformers.LlamaConfig(hidden_size=2048, num_attention_heads=32, num_key_value_heads=8,
                                      rope_parameters={"rope_theta": 500000.0, **rope})
    if rope["rope_type"] == "default":
        expected = transformers.models.llama.modeling_llama.LlamaRotaryEmbedding.compute_default_rope_parameters(config)[0]
    else:
        expected = ROPE_INIT_FUNCTIONS[rope["rope_type"]](config, "cpu")[0]
    ours = inverse_frequencies(64, 500000.0, rope)
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-6)
    if rope["rope_type"] != "default":
        assert not np.allclose(ours, inverse_frequencies(64, 500000.0))


def test_apply_rope_rotates_half_pairs_and_preserves_norm():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 3, 2, 8)), jnp.float32)
    positions = jnp.array([[0, 1, 5]])
    inv_freq = inverse_frequencies(8, 10000.0)
    out = np.asarray(apply_rope(x, *rope_cos_sin(positions, inv_freq)))
    np.testing.assert_allclose(out[0, 0], np.asarray(x[0, 0]), rtol=1e-6)  # position 0: identity
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(np.asarray(x), axis=-1), rtol=1e-5)
    # dims i and i + H/2 rotate together by angle p * inv_freq[i]
    angle = 5 * inv_freq[1]
    a, b = np.asarray(x[0, 2, 0, 1]), np.asarray(x[0, 2, 0, 5])
    np.testing.assert_allclose(out[0, 2, 0, [1, 5]], [a * np.cos(angle) - b * np.sin(angle),
                                                      b * np.cos(angle) + a * np.sin(angle)], rtol=1e-5)
