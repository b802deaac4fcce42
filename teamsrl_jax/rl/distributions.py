"""Action distributions over ``A`` discrete actions, as pytrees (NamedTuples) so they pass through jit.

Both take integer actions of shape ``(...)`` and give per-sample log-probs, entropies and KLs of shape
``(...)``; the batch shape is whatever the network was called on.

* :class:`Categorical` - softmax over logits: our default for choosing one of ``A`` operations.
* :class:`OneHotGaussian` - the paper's quirk, reproduced exactly: a diagonal Gaussian over ``R^A`` whose
  sample is turned into an action by ``argmax(sample + bias)``, while the log-probability used for learning
  is the Gaussian density of the *executed one-hot vector* (not the probability of the argmax event).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


def _add_bias(x: jax.Array, bias: jax.Array | None) -> jax.Array:
    return x if bias is None else x + jnp.asarray(bias, x.dtype)


class Categorical(NamedTuple):
    """Softmax distribution; ``logits`` has shape ``(..., A)``."""

    logits: jax.Array

    def log_prob(self, actions: jax.Array) -> jax.Array:
        logp = jax.nn.log_softmax(self.logits, axis=-1)
        return jnp.take_along_axis(logp, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        logp = jax.nn.log_softmax(self.logits, axis=-1)
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)

    def kl(self, other: Categorical) -> jax.Array:
        """KL(self || other) per sample."""
        logp = jax.nn.log_softmax(self.logits, axis=-1)
        logq = jax.nn.log_softmax(other.logits, axis=-1)
        return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)

    def sample(self, key: jax.Array, bias: jax.Array | None = None) -> jax.Array:
        """A draw from softmax(logits + bias); the bias is a behaviour tweak outside the learned distribution."""
        return jax.random.categorical(key, _add_bias(self.logits, bias), axis=-1)

    def mode(self, bias: jax.Array | None = None) -> jax.Array:
        return jnp.argmax(_add_bias(self.logits, bias), axis=-1)


class OneHotGaussian(NamedTuple):
    """Diagonal Gaussian over ``R^A`` (``mean`` and ``log_std`` of shape ``(..., A)``) acting by argmax."""

    mean: jax.Array
    log_std: jax.Array

    def log_prob(self, actions: jax.Array) -> jax.Array:
        """Gaussian log-density of one_hot(actions): the paper's learning signal, not log P(argmax = a)."""
        x = jax.nn.one_hot(actions, self.mean.shape[-1], dtype=self.mean.dtype)
        z = (x - self.mean) * jnp.exp(-self.log_std)
        return jnp.sum(-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - self.log_std, axis=-1)

    def entropy(self) -> jax.Array:
        return jnp.sum(self.log_std + 0.5 * (1.0 + math.log(2 * math.pi)), axis=-1)

    def kl(self, other: OneHotGaussian) -> jax.Array:
        """KL(self || other) per sample, summed over the ``A`` dimensions."""
        var_ratio = jnp.exp(2 * (self.log_std - other.log_std))
        mean_term = ((self.mean - other.mean) * jnp.exp(-other.log_std)) ** 2
        return jnp.sum(other.log_std - self.log_std + 0.5 * (var_ratio + mean_term) - 0.5, axis=-1)

    def sample(self, key: jax.Array, bias: jax.Array | None = None) -> jax.Array:
        """argmax(mean + std * eps + bias), eps ~ N(0, I)."""
        noise = jax.random.normal(key, self.mean.shape, self.mean.dtype)
        return jnp.argmax(_add_bias(self.mean + jnp.exp(self.log_std) * noise, bias), axis=-1)

    def mode(self, bias: jax.Array | None = None) -> jax.Array:
        return jnp.argmax(_add_bias(self.mean, bias), axis=-1)
