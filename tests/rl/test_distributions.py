import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from teamsrl_jax.rl.distributions import Categorical, OneHotGaussian


def test_categorical_matches_scipy(x64):
    rng = np.random.default_rng(0)
    logits, logits2 = rng.normal(size=(2, 7, 5)) * 2
    actions = rng.integers(0, 5, size=7)
    dist, dist2 = Categorical(jnp.asarray(logits)), Categorical(jnp.asarray(logits2))
    logp = special.log_softmax(logits, axis=-1)
    p, q = np.exp(logp), special.softmax(logits2, axis=-1)
    np.testing.assert_allclose(dist.log_prob(jnp.asarray(actions)), logp[np.arange(7), actions], rtol=1e-12)
    np.testing.assert_allclose(dist.entropy(), stats.entropy(p, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(dist.kl(dist2), stats.entropy(p, q, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(dist.kl(dist), 0.0, atol=1e-15)


def test_one_hot_gaussian_matches_scipy(x64):
    rng = np.random.default_rng(1)
    mean, mean2 = rng.normal(size=(2, 4, 6))
    log_std, log_std2 = rng.normal(size=(2, 6)) * 0.3
    actions = rng.integers(0, 6, size=4)
    dist = OneHotGaussian(jnp.asarray(mean), jnp.broadcast_to(jnp.asarray(log_std), mean.shape))
    dist2 = OneHotGaussian(jnp.asarray(mean2), jnp.broadcast_to(jnp.asarray(log_std2), mean.shape))
    one_hot = np.eye(6)[actions]
    want = stats.norm.logpdf(one_hot, mean, np.exp(log_std)).sum(-1)
    np.testing.assert_allclose(dist.log_prob(jnp.asarray(actions)), want, rtol=1e-12)
    np.testing.assert_allclose(dist.entropy(), stats.norm.entropy(0, np.exp(log_std)).sum() * np.ones(4), rtol=1e-12)
    s1, s2 = np.exp(log_std), np.exp(log_std2)
    kl = (np.log(s2 / s1) + (s1**2 + (mean - mean2) ** 2) / (2 * s2**2) - 0.5).sum(-1)
    np.testing.assert_allclose(dist.kl(dist2), kl, rtol=1e-12)


def test_gaussian_argmax_sampling_frequencies():
    # P(argmax(mean + eps + bias) = 0) by Monte Carlo in NumPy against the JAX sampler.
    mean = jnp.array([0.0, 0.2, -0.1])
    dist = OneHotGaussian(jnp.broadcast_to(mean, (20000, 3)), jnp.zeros((20000, 3)))
    bias = jnp.array([0.3, 0.0, 0.0])
    freq = np.bincount(np.asarray(dist.sample(jax.random.key(0), bias)), minlength=3) / 20000
    z = np.random.default_rng(0).normal(size=(200000, 3)) + np.asarray(mean + bias)
    want = np.bincount(z.argmax(-1), minlength=3) / 200000
    np.testing.assert_allclose(freq, want, atol=0.015)
    assert int(dist.mode(bias)[0]) == 0 and int(dist.mode()[0]) == 1
