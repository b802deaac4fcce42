"""Text helpers: the bit-parallel LCS against the textbook table, batched hashes against per-text ones."""

import zlib

import numpy as np

from teamsrl_jax.env.text import (batch_byte_trigram_hashes, batch_word_ngram_hashes, byte_trigram_hashes, lcs_length,
                                  rouge_l, word_hashes, word_ngram_hashes, words)


def lcs_table(a, b):
    """The O(len(a) * len(b)) dynamic programme (independent reference)."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_bit_parallel_lcs_matches_the_table():
    rng = np.random.default_rng(0)
    for _ in range(500):
        alphabet = rng.integers(1, 6)
        a = [str(x) for x in rng.integers(0, alphabet, rng.integers(0, 30))]
        b = [str(x) for x in rng.integers(0, alphabet, rng.integers(0, 80))]  # > 64 tokens: several machine words
        assert lcs_length(a, b) == lcs_table(a, b) == lcs_length(b, a)
    assert rouge_l("the cat sat", "the cat sat down") == 2 * 3 / 7


def test_batched_hashes_equal_per_text_hashes():
    texts = ["Red fox jumps.", "", "a", "Über naïve café, twice: café!", "one two three four five"]
    tokens = [words(t) for t in texts]
    uni, uni_rows, bi, bi_rows = batch_word_ngram_hashes(tokens)
    tri, tri_rows = batch_byte_trigram_hashes(texts)
    for i, (text, toks) in enumerate(zip(texts, tokens)):
        want_uni, want_bi = word_ngram_hashes(toks)
        assert uni[uni_rows == i].tolist() == want_uni.tolist()
        assert bi[bi_rows == i].tolist() == want_bi.tolist()  # no bigram straddles two texts
        assert tri[tri_rows == i].tolist() == byte_trigram_hashes(text).tolist()
    assert word_hashes(["red", "fox", "red"]).tolist() == [zlib.crc32(b"red"), zlib.crc32(b"fox"), zlib.crc32(b"red")]
