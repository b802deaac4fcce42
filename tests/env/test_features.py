"""State features: layout, normalisation, stability of the hashing."""

import numpy as np
import pytest

from teamsrl_jax.env.features import NUM_STATS, default_features, hashed_text, obs_dim, one_hot_previous, text_stats


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
    # crc32-based, so the same on every machine and process: "w:a" -> bucket 48, "c: a " -> 11, both +
    single = hashed_text(["a"], 64)[0]
    assert np.nonzero(single)[0].tolist() == [11, 48] and single[[11, 48]] == pytest.approx([0.5 ** 0.5] * 2)
    assert float(x[0] @ x[1]) < 0.5
    near = hashed_text(["Explain how a refrigerator keeps food very cold."], 256)[0]
    assert float(x[0] @ near) > 0.8


def test_text_stats_and_default_layout():
    texts = ["Sum it.\n\n| a | b |\n|---|---|\n| 1 | 2 |", "One sentence here."]
    stats = text_stats(texts)
    assert stats.shape == (2, NUM_STATS) and stats[:, 2].tolist() == [1.0, 0.0]
    assert np.all((stats >= 0) & (stats <= 1))
    obs = default_features(texts, np.array([-1, 3]), step=2, horizon=6, num_actions=6, text_dim=32)
    assert obs.shape == (2, obs_dim("default", 6, 32)) == (2, 32 + 6 + 1 + NUM_STATS)
    assert obs[:, 32:38].tolist() == [[0] * 6, [0, 0, 0, 1, 0, 0]]
    assert obs[:, 38] == pytest.approx([1 / 3, 1 / 3])
    assert obs_dim("paper", 6, 32) == 6
