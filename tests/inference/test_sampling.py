"""Sampling inside jit: top-k / top-p keep exactly the right tokens, draws follow the filtered distribution,
and a row's draw depends only on its key and token index."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from teamsrl_jax.inference.sampling import keep_mask, next_tokens, token_logprobs


def reference_keep(logits, temperature, top_k, top_p):
    """float64 NumPy: temperature, then the k best (ties by lower id), then the smallest nucleus reaching p."""
    order = np.argsort(-logits, kind="stable")
    k = top_k or len(logits)
    z = logits[order[:k]].astype(np.float64) / temperature
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    before = np.cumsum(probs) - probs
    keep = np.zeros(len(logits), bool)
    keep[order[:k][(before < top_p) | (np.arange(k) == 0)]] = True
    return keep


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (1.0, 5, 1.0), (0.7, 0, 0.9), (1.3, 20, 0.5),
                                                     (0.5, 3, 0.99), (2.0, 0, 0.05), (1.0, 1, 1.0)])
def test_keep_mask_equals_reference(temperature, top_k, top_p):
    rng = np.random.default_rng(top_k + int(100 * top_p))
    for _ in range(5):
        logits = rng.normal(scale=3.0, size=64).astype(np.float32)
        got = np.asarray(keep_mask(jnp.asarray(logits), temperature, top_k, top_p))
        np.testing.assert_array_equal(got, reference_keep(logits, temperature, top_k, top_p))
        if top_k:
            assert got.sum() <= top_k


def test_top_k_breaks_ties_by_lower_id():
    logits = jnp.array([1.0, 3.0, 3.0, 3.0, 0.0])
    np.testing.assert_array_equal(np.asarray(keep_mask(logits, 1.0, 2, 1.0)), [0, 1, 1, 0, 0])


def test_top_p_keeps_the_smallest_nucleus():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = jnp.asarray(np.log(probs), jnp.float32)
    assert np.asarray(keep_mask(logits, 1.0, 0, 0.5)).tolist() == [True, False, False, False]
    assert np.asarray(keep_mask(logits, 1.0, 0, 0.51)).tolist() == [True, True, False, False]
    assert np.asarray(keep_mask(logits, 1.0, 0, 0.9)).tolist() == [True, True, True, False]


def draws(logits, temperature, top_k, top_p, n, seed=0):
    B = n
    key = np.asarray(jax.random.PRNGKey(seed), np.uint32)
    keys = np.broadcast_to(key, (B, 2))
    rows = jnp.broadcast_to(jnp.asarray(logits), (B, len(logits)))
    f = jax.jit(lambda r, k, i: next_tokens(r, jnp.full(B, temperature), jnp.full(B, top_k, jnp.int32),
                                            jnp.full(B, top_p), k, i, greedy=False))
    return np.asarray(f(rows, keys, jnp.arange(B, dtype=jnp.int32)))


def test_draws_follow_the_filtered_distribution():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=0.7, size=12).astype(np.float32)
    temperature, top_k, top_p = 0.8, 6, 0.8
    keep = reference_keep(logits, temperature, top_k, top_p)
    assert 3 <= keep.sum() < 6 < reference_keep(logits, temperature, 0, top_p).sum()  # both filters act
    tokens = draws(logits, temperature, top_k, top_p, 20000)
    assert set(np.unique(tokens)) <= set(np.flatnonzero(keep))
    z = np.where(keep, logits.astype(np.float64) / temperature, -np.inf)
    expected = np.exp(z - z.max())
    expected /= expected.sum()
    counts = np.bincount(tokens, minlength=len(logits))[keep]
    assert stats.chisquare(counts, expected[keep] * len(tokens)).pvalue > 1e-3


def test_draws_depend_only_on_key_and_index():
    logits = np.linspace(0, 1, 50).astype(np.float32)
    a = draws(logits, 1.0, 0, 1.0, 64, seed=5)
    b = draws(logits, 1.0, 0, 1.0, 64, seed=5)
    c = draws(logits, 1.0, 0, 1.0, 64, seed=6)
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.5 and len(set(a.tolist())) > 20  # index folds in: rows differ


def test_zero_temperature_is_argmax_and_greedy_path_agrees():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 100)).astype(np.float32)
    zeros = jnp.zeros(8)
    keys = jnp.zeros((8, 2), jnp.uint32)
    sampled = next_tokens(logits, zeros, jnp.full(8, 5, jnp.int32), jnp.full(8, 0.5), keys, jnp.arange(8), greedy=False)
    greedy = next_tokens(logits, zeros, zeros, zeros, keys, jnp.arange(8), greedy=True)
    np.testing.assert_array_equal(sampled, logits.argmax(-1))
    np.testing.assert_array_equal(greedy, logits.argmax(-1))


def test_token_logprobs_against_float64():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=4, size=(3, 40)).astype(np.float32)
    tokens = np.array([0, 7, 39])
    chosen, top, ids = token_logprobs(jnp.asarray(logits), jnp.asarray(tokens), 4)
    x = logits.astype(np.float64)
    logp = x - x.max(-1, keepdims=True) - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))
    np.testing.assert_allclose(chosen, logp[np.arange(3), tokens], atol=1e-5)
    np.testing.assert_array_equal(ids, np.argsort(-logp, axis=-1)[:, :4])
    np.testing.assert_allclose(top, np.sort(logp, axis=-1)[:, ::-1][:, :4], atol=1e-5)


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.7, 0, 0.95), (1.0, 20, 1.0), (1.0, 0, 1.0), (1.2, 600, 0.9),
                                                     (0.8, 0, 0.5), (2.0, 0, 0.999)])
def test_fast_and_full_vocabulary_paths_draw_the_same_tokens(temperature, top_k, top_p):
    """Wide or narrow kept sets, through the candidates or the full vocabulary (few candidates force the
    fallback): the same key draws the same token, and it lies in the kept set."""
    rng = np.random.default_rng(0)
    B, V = 32, 1000
    logits = jnp.asarray(rng.normal(scale=2.0, size=(B, V)).astype(np.float32))
    args = (logits, jnp.full(B, temperature), jnp.full(B, top_k, jnp.int32), jnp.full(B, top_p),
            jnp.asarray(np.asarray(jax.random.split(jax.random.PRNGKey(1), B)), jnp.uint32), jnp.arange(B))
    wide = np.asarray(next_tokens(*args, greedy=False, candidates=V))
    narrow = np.asarray(next_tokens(*args, greedy=False, candidates=8))
    np.testing.assert_array_equal(wide, narrow)
    for b in range(B):
        assert np.asarray(keep_mask(logits[b], temperature, top_k, top_p))[wide[b]]


def test_mixed_rows_each_follow_their_own_settings():
    rng = np.random.default_rng(2)
    logits = jnp.asarray(rng.normal(scale=2.0, size=(4, 500)).astype(np.float32))
    temperature, top_k, top_p = jnp.array([0.0, 1.0, 1.0, 0.5]), jnp.array([0, 1, 0, 0]), jnp.array([1.0, 1.0, 1.0, 0.3])
    keys = jnp.zeros((4, 2), jnp.uint32)
    tokens = np.asarray(next_tokens(logits, temperature, top_k, top_p, keys, jnp.arange(4), greedy=False))
    assert tokens[0] == np.argmax(logits[0]) and tokens[1] == np.argmax(logits[1])  # greedy; top-1
    for b in (2, 3):
        assert np.asarray(keep_mask(logits[b], temperature[b], top_k[b], top_p[b]))[tokens[b]]
