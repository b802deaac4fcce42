"""State features: layout, normalisation, stability of the hashing."""

import numpy as np
import pytest

from teamsrl_jax.env.features import (NUM_STATS, TextFeatureCache, default_features, hashed_text, obs_dim,
                                     one_hot_previous, text_stats)
from teamsrl_jax.env.text import byte_trigram_hashes, mix32, stable_hash, word_ngram_hashes, words


def fmix32(h):
    """Murmur3's finaliser on Python ints: the reference for the vectorised uint64 version."""
    h &= 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def test_vectorised_hashes_match_a_scalar_reference():
    values = [0, 1, 0xFFFFFFFF, 0x123456789, 2 ** 63 + 5]
    assert mix32(np.array(values, np.uint64)).tolist() == [fmix32(v) for v in values]
    uni, bi = word_ngram_hashes(["red", "fox"])
    r, f = stable_hash("red"), stable_hash("fox")
    assert uni.tolist() == [fmix32(r ^ 0x5BD1E995), fmix32(f ^ 0x5BD1E995)]
    assert bi.tolist() == [fmix32(((r * 0x9E3779B1) & (2 ** 64 - 1)) ^ f)]
    assert byte_trigram_hashes(" a ").tolist() == [fmix32((32 << 16 | 97 << 8 | 32) | 0x3000000)]
    assert byte_trigram_hashes("ab").tolist() == []


def test_one_hot_previous_action_zero_at_reset():
    out = one_hot_previous(np.array([-1, 0, 5]), 6)
    assert out.dtype == np.float32 and out.shape == (3, 6)
    assert out[0].sum() == 0 and out[1, 0] == 1 and out[2, 5] == 1 and out.sum() == 2


def test_hashed_text_is_unit_norm_stable_and_discriminative():
    texts = ["Explain how a refrigerator keeps food cold.", "Write a haiku about snow.", ""]
    x = hashed_text(texts, 256)
    assert x.shape == (3, 256) and x.dtype == np.float32
    assert np.linalg.norm(x, axis=1) == pytest.approx([1.0, 1.0, 0.0], abs=1e-6)
    assert np.array_equal(x, hashed_text(texts, 256))
    # stable on every machine and process: the unigram "a" lands in bucket 21 with sign -, the byte
    # 3-gram " a " in bucket 18 with sign + (checked against the pure-Python reference below)
    single = hashed_text(["a"], 64)[0]
    assert np.nonzero(single)[0].tolist() == [18, 21] and single[[18, 21]] == pytest.approx([0.5 ** 0.5, -0.5 ** 0.5])
    assert float(x[0] @ x[1]) < 0.5
    near = hashed_text(["Explain how a refrigerator keeps food very cold."], 256)[0]
    assert float(x[0] @ near) > 0.8


def test_text_stats_and_default_layout():
    texts = ["Sum it.\n\n| a | b |\n|---|---|\n| 1 | 2 |", "One sentence here."]
    stats = text_stats(texts)
    assert stats.shape == (2, NUM_STATS) and stats[:, 2].tolist() == [1.0, 0.0]
    assert np.all((stats >= 0) & (stats <= 1))
    obs = default_features(hashed_text(texts, 32), stats, np.array([-1, 3]), step=2, horizon=6, num_actions=6)
    assert obs.shape == (2, obs_dim("default", 6, 32)) == (2, 32 + 6 + 1 + NUM_STATS) and obs.dtype == np.float32
    assert np.array_equal(obs[:, :32], hashed_text(texts, 32)) and np.array_equal(obs[:, 39:], stats)
    assert obs[:, 32:38].tolist() == [[0] * 6, [0, 0, 0, 1, 0, 0]]
    assert obs[:, 38] == pytest.approx([1 / 3, 1 / 3])
    assert obs_dim("paper", 6, 32) == 6


def hashed_text_reference(texts, dim):
    """The plain per-text loop (float64 accumulation), as an independent reference for the batched version."""
    out = np.zeros((len(texts), dim))
    for i, text in enumerate(texts):
        tokens = words(text)
        if not tokens:
            continue
        unigrams, bigrams = word_ngram_hashes(tokens)
        for group in (unigrams, bigrams, byte_trigram_hashes(f" {' '.join(tokens)} ")):
            vec = np.zeros(dim)
            for h in group.tolist():
                vec[h % dim] += 1.0 if h >> 31 else -1.0
            if np.linalg.norm(vec):
                out[i] += vec / np.linalg.norm(vec)
        out[i] /= np.linalg.norm(out[i])
    return out


def test_batched_hashed_text_matches_reference_and_does_not_depend_on_the_batch():
    texts = ["Explain how a refrigerator keeps food cold.", "", "Write a haiku about snow.", "!!!",
             "Sum it.\n\n| a | b |\n|---|---|\n| 1 | 2 |", "Explain how a refrigerator keeps food cold."]
    x = hashed_text(texts, 128)
    np.testing.assert_allclose(x, hashed_text_reference(texts, 128), rtol=0, atol=1e-6)
    # each row is a function of its text only: bitwise the same alone, in another batch, or from the cache
    for i, text in enumerate(texts):
        assert np.array_equal(hashed_text([text], 128)[0], x[i])
    cache = TextFeatureCache(128, capacity=3)
    rows = np.concatenate([cache(texts[:4]), cache(texts[2:])])
    assert np.array_equal(rows[:4, :128], x[:4]) and np.array_equal(rows[4:, :128], x[2:])
    assert np.array_equal(rows[:4, 128:], text_stats(texts[:4])) and len(cache._rows) == 3
