import jax
import numpy as np
import pytest

from teamsrl_jax.rl.normalizer import norm_apply, norm_init, norm_std, norm_update


class RunningStat:
    """The original's per-observation Welford statistics (ikostrikov running_state.py), rewritten."""

    def __init__(self, dim):
        self.n, self.mean, self.s = 0, np.zeros(dim), np.zeros(dim)

    def push(self, x):
        self.n += 1
        if self.n == 1:
            self.mean = x.copy()
        else:
            old = self.mean.copy()
            self.mean = old + (x - old) / self.n
            self.s = self.s + (x - old) * (x - self.mean)

    @property
    def std(self):
        return np.sqrt(self.s / (self.n - 1) if self.n > 1 else self.mean**2)


def test_batch_updates_equal_sequential_pushes(x64):
    rng = np.random.default_rng(0)
    ref, state = RunningStat(6), norm_init(6)
    update = jax.jit(norm_update)
    for size in (1, 1, 3, 7, 16):
        x = rng.normal(size=(size, 6)) * 3 + 1
        for row in x:
            ref.push(row)
        state = update(state, x)
        np.testing.assert_allclose(state.mean, ref.mean, rtol=1e-12)
        np.testing.assert_allclose(norm_std(state), ref.std, rtol=1e-12)
    y = rng.normal(size=(4, 6)) * 3
    np.testing.assert_allclose(norm_apply(state, y, clip=5.0),
                               np.clip((y - ref.mean) / (ref.std + 1e-8), -5, 5), rtol=1e-12)


def test_clipping_and_first_observation(x64):
    state = norm_update(norm_init(2), np.array([[2.0, 0.0]]))
    assert float(norm_std(state)[0]) == pytest.approx(2.0)  # |mean| while n == 1, as RunningStat
    state = norm_update(state, np.array([[0.0, 0.0], [1.0, 0.0]]))
    z = np.asarray(norm_apply(state, np.array([[100.0, -100.0]]), clip=5.0))
    np.testing.assert_array_equal(z, [[5.0, -5.0]])
