import itertools
import math

import jax
import numpy as np
import pytest
import scipy.stats

from teamsrl_jax.rl import shuffle
from teamsrl_jax.rl.shuffle import permutations, rounds_needed


@pytest.mark.parametrize("n", [1, 2, 7, 128, 1000, 2048, 5000])
def test_rows_are_permutations_and_differ(n):
    perms = np.asarray(permutations(jax.random.key(n), n, 6))
    assert perms.shape == (6, n) and perms.dtype == np.int32
    for row in perms:
        np.testing.assert_array_equal(np.sort(row), np.arange(n))
    if n >= 7:
        assert len({tuple(r) for r in perms}) == 6


def test_all_orders_of_four_are_equally_likely():
    # 24 orders, 48,000 draws: a chi-square test of uniformity (the index-ordered tie bias would show as excess
    # mass on orders that keep neighbours in place)
    perms = np.asarray(permutations(jax.random.key(0), 4, 48_000))
    index = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    counts = np.bincount([index[tuple(r)] for r in perms], minlength=24)
    assert scipy.stats.chisquare(counts).pvalue > 1e-3
    assert counts.min() > 1600 and counts.max() < 2400


def test_positions_are_uniform_for_a_minibatch_sized_problem():
    # where element 0 lands, over 4,000 shuffles of 2,048: uniform over 16 minibatches of 128
    perms = np.asarray(permutations(jax.random.key(1), 2048, 4000))
    where = np.argmax(perms == 0, axis=1) // 128
    assert scipy.stats.chisquare(np.bincount(where, minlength=16)).pvalue > 1e-3
    # and neighbours are not kept together more often than chance (1/2047 per adjacent pair)
    adjacent = np.mean(np.abs(np.diff(perms, axis=1)) == 1)
    assert adjacent == pytest.approx(2 / 2048, rel=0.1)


def test_rounds_and_the_fallback(monkeypatch):
    assert rounds_needed(2048) == math.ceil(3 * math.log(2048) / (21 * math.log(2))) == 2
    assert rounds_needed(2) == 1 and rounds_needed(100_000) == 4
    monkeypatch.setattr(shuffle, "_MAX_INDEX_BITS", 3)  # 100 elements need 7 index bits: jax.random.permutation
    perms = np.asarray(permutations(jax.random.key(2), 100, 3))
    for row in perms:
        np.testing.assert_array_equal(np.sort(row), np.arange(100))
    with pytest.raises(ValueError, match="n >= 1"):
        permutations(jax.random.key(0), 0, 1)
