"""Our model loaded from a transformers checkpoint reproduces PyTorch transformers' logits."""

import numpy as np
import pytest

from teamsrl_jax.model.hf_io import load_pretrained

TOL = 1e-4  # max |Δlogit| in float32

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}

VARIANTS = {
    "llama": ("llama", {}),
    "gqa": ("llama", dict(num_key_value_heads=2)),
    "llama3_rope": ("llama", dict(num_key_value_heads=2, rope_parameters={"rope_theta": 500000.0, **LLAMA3_ROPE})),
    "linear_rope": ("llama", dict(rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0})),
    "tied": ("llama", dict(tie_word_embeddings=True)),
    "llama_bias": ("llama", dict(attention_bias=True)),
    "qwen2": ("qwen2", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "mistral_window": ("mistral", dict(num_key_value_heads=2, sliding_window=5)),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_match_transformers(hf_checkpoint, hf_logits, token_ids, variant):
    arch, overrides = VARIANTS[variant]
    torch_model, path = hf_checkpoint(arch, **overrides)
    model, config, tokenizer = load_pretrained(path)
    assert tokenizer is None and config.model_type == arch
    expected = hf_logits(torch_model, token_ids)
    ours = np.asarray(model(token_ids))
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    np.testing.assert_array_less(np.abs(ours - expected).max(), TOL)
    assert np.abs(expected).max() > 0.5  # the comparison is not between near-zero logits


def test_rope_scaling_changes_logits(hf_checkpoint, token_ids):
    """The llama3 and sliding-window variants are not vacuous: switching the feature off moves the
    logits by far more than the tolerance."""
    _, path = hf_checkpoint("llama", rope_parameters={"rope_theta": 500000.0, **LLAMA3_ROPE})
    scaled, config, _ = load_pretrained(path)
    plain, _, _ = load_pretrained(path, config_overrides={"rope_scaling": None})
    assert np.abs(np.asarray(scaled(token_ids)) - np.asarray(plain(token_ids))).max() > 100 * TOL
    _, path = hf_checkpoint("mistral", sliding_window=5)
    windowed, _, _ = load_pretrained(path)
    full, _, _ = load_pretrained(path, config_overrides={"sliding_window": None})
    assert np.abs(np.asarray(windowed(token_ids)) - np.asarray(full(token_ids))).max() > 100 * TOL


def test_packed_segments_equal_separate_sequences(hf_checkpoint, hf_logits):
    """A row packing two sequences (per-segment positions) plus padding gives each sequence's own logits."""
    torch_model, path = hf_checkpoint("llama", num_key_value_heads=2)
    model, _, _ = load_pretrained(path)
    rng = np.random.default_rng(1)
    a, b = rng.integers(4, 300, size=7), rng.integers(4, 300, size=9)
    packed = np.concatenate([a, b, [3, 3, 3]])[None]
    segment_ids = np.array([[1] * 7 + [2] * 9 + [0] * 3])
    positions = np.array([list(range(7)) + list(range(9)) + [0] * 3])
    logits = np.asarray(model(packed, positions_BxL=positions, segment_ids_BxL=segment_ids))
    np.testing.assert_array_less(np.abs(logits[0, :7] - hf_logits(torch_model, a[None])[0]).max(), TOL)
    np.testing.assert_array_less(np.abs(logits[0, 7:16] - hf_logits(torch_model, b[None])[0]).max(), TOL)
    assert np.isfinite(logits).all()
