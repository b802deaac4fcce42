"""Membership scores of token sequences under a causal LM, as MIMIR (iamgroot42/mimir) defines them.

Every score is oriented HIGHER = MORE LIKELY A MEMBER (MIMIR's raw values are lower for members; each is
negated here). With ``lp_t = log p(x_t | x_<t)`` for t = 1..n-1 (every token but the first, as MIMIR's
``Model.get_probabilities``) and ``low_k(v)`` the mean of the ``max(1, int(len(v) * k))`` smallest values
(MIMIR's ``int()`` count, floored; at least one token so that a short text still has a score):

=============  =====================================================  ==================================
score          member score                                           MIMIR
=============  =====================================================  ==================================
``loss``       ``mean(lp)`` = -loss (mean token NLL)                  attacks/loss.py, models.py get_ll
``zlib``       ``-loss / len(zlib.compress(text.encode("utf-8")))``   attacks/zlib.py
``min_k``      ``low_k(lp)`` (Min-K% prob, k = 20%)                   attacks/min_k.py (window 1)
``min_k_pp``   ``low_k((lp - mu) / sigma)`` (Min-K%++)                attacks/min_k_plus_plus.py
``ref``        ``ref_loss - loss`` (the reference model's own text    attacks/reference.py
               tokens and loss)
=============  =====================================================  ==================================

``mu_t = sum_z p_t(z) log p_t(z)`` and ``sigma_t`` the standard deviation of ``log p_t(z)`` under ``p_t``, over
the whole vocabulary. MIMIR writes the variance as ``E[(log p)^2] - mu^2``; it is computed here as
``E[(log p - mu)^2]`` (the same quantity without the float32 cancellation).

The model side (``TokenScorer``) runs one jitted program per length bucket: rows of similar length are
batched, right-padded to a bucket (four per octave) and to ``batch_size`` rows; the logits, their
``log_softmax`` and the per-position ``mu``/``sigma`` stay on the device, and only three floats per token come
back. Causal attention means right padding never changes a real position's result.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from teamsrl_jax.inference.engine import prompt_bucket

SCORE_NAMES = ("loss", "zlib", "min_k", "min_k_pp", "ref")
SCORE_LABELS = {"loss": "LOSS", "zlib": "zlib", "min_k": "Min-K%", "min_k_pp": "Min-K%++", "ref": "reference"}


@dataclasses.dataclass(frozen=True)
class TokenStats:
    """Per predicted token t = 1..n-1 of one sequence (float32, as the device computed them)."""

    logprobs: np.ndarray  # [n-1] log p(x_t | x_<t)
    mu: np.ndarray  # [n-1] E_{z ~ p_t} log p_t(z)
    sigma: np.ndarray  # [n-1] std of log p_t(z) under p_t

    @property
    def loss(self) -> float:
        """Mean token negative log-likelihood (float64)."""
        return float(-np.mean(self.logprobs.astype(np.float64)))


# --------------------------------------------------------------------------- the scores (host, float64)


def min_k_count(n: int, k: float) -> int:
    """Tokens averaged by Min-K% over ``n`` tokens: MIMIR's ``int(n * k)``, at least 1."""
    return max(1, int(n * k))


def lowest_mean(values: np.ndarray, k: float) -> float:
    """Mean of the ``min_k_count`` smallest values."""
    values = np.sort(np.asarray(values, np.float64))
    return float(values[: min_k_count(len(values), k)].mean())


def zlib_length(text: str) -> int:
    """Bytes of the zlib-compressed UTF-8 text (MIMIR's "zlib entropy"; default compression level)."""
    return len(zlib.compress(text.encode("utf-8")))


def member_scores(stats: TokenStats, text: str, *, k: float = 0.2, ref_loss: float | None = None) -> dict[str, float]:
    """The scores of one example (see the module table); ``ref`` only with ``ref_loss``."""
    lp = stats.logprobs.astype(np.float64)
    loss = float(-lp.mean())
    with np.errstate(divide="ignore", invalid="ignore"):  # sigma 0 (a one-hot distribution) gives inf/nan
        z = (lp - stats.mu.astype(np.float64)) / stats.sigma.astype(np.float64)
    out = {"loss": -loss, "zlib": -loss / zlib_length(text), "min_k": lowest_mean(lp, k),
           "min_k_pp": lowest_mean(z, k)}
    if ref_loss is not None:
        out["ref"] = ref_loss - loss
    return out


# --------------------------------------------------------------------------- the model (device)


def token_stats(graphdef, state, inputs_BxL, targets_BxL):
    """(log p(target), mu, sigma), each [B, L] float32, of the model ``graphdef`` + ``state``."""
    model = nnx.merge(graphdef, state)
    logp_BxLxV = jax.nn.log_softmax(model(inputs_BxL).astype(jnp.float32), axis=-1)
    target_BxL = jnp.take_along_axis(logp_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    p_BxLxV = jnp.exp(logp_BxLxV)
    mu_BxL = jnp.sum(p_BxLxV * logp_BxLxV, axis=-1)
    var_BxL = jnp.sum(p_BxLxV * jnp.square(logp_BxLxV - mu_BxL[..., None]), axis=-1)
    return target_BxL, mu_BxL, jnp.sqrt(var_BxL)


_PROGRAMS: dict = {}


def _program(graphdef):
    """``token_stats`` jitted over one model structure (shared by every scorer over an equal graphdef, so a
    second model of the same shape, or a second run in one process, compiles nothing new)."""
    if graphdef not in _PROGRAMS:
        _PROGRAMS[graphdef] = jax.jit(partial(token_stats, graphdef))
    return _PROGRAMS[graphdef]


class TokenScorer:
    """``TokenStats`` of many token sequences under one model (see the module docstring for the batching).

    With ``mesh`` (the model already placed on it, e.g. by ``load_pretrained(..., mesh=mesh)``) the rows are
    split over its data x fsdp axes, which must divide ``batch_size``.
    """

    def __init__(self, model, *, batch_size: int = 8, mesh=None, min_bucket: int = 16):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.graphdef, self.state = nnx.split(model)
        self.batch_size, self.mesh, self.min_bucket = int(batch_size), mesh, int(min_bucket)
        self._program = _program(self.graphdef)
        self.buckets: set[int] = set()  # padded lengths run so far: one compiled program each
        self._rows = None
        if mesh is not None:
            sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
            if batch_size % (sizes["data"] * sizes["fsdp"]):
                raise ValueError(f"batch_size {batch_size} is not divisible by the mesh's data x fsdp = "
                                 f"{sizes['data'] * sizes['fsdp']}")
            self._rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))

    def __call__(self, sequences: Sequence[np.ndarray], *, progress: bool = False, desc: str = "score") \
            -> list[TokenStats]:
        """One ``TokenStats`` per sequence (each of at least two tokens), in the given order."""
        from tqdm.auto import tqdm

        lengths = np.array([len(s) for s in sequences])
        if len(lengths) and lengths.min() < 2:
            raise ValueError(f"sequence {int(np.argmin(lengths))} has fewer than two tokens")
        order = np.argsort(-lengths, kind="stable")  # longest first: a batch too large fails at once
        out: list[TokenStats | None] = [None] * len(sequences)
        with tqdm(total=len(sequences), desc=desc, unit="ex", disable=not progress, dynamic_ncols=True) as bar:
            for lo in range(0, len(order), self.batch_size):
                idx = order[lo:lo + self.batch_size]
                for i, stats in zip(idx, self._batch([sequences[i] for i in idx])):
                    out[i] = stats
                bar.update(len(idx))
        return out  # type: ignore[return-value]

    def _batch(self, seqs: Sequence[np.ndarray]) -> list[TokenStats]:
        L = prompt_bucket(max(len(s) for s in seqs) - 1, self.min_bucket)
        inputs = np.zeros((self.batch_size, L), np.int32)
        targets = np.zeros((self.batch_size, L), np.int32)
        for r, s in enumerate(seqs):
            inputs[r, :len(s) - 1], targets[r, :len(s) - 1] = s[:-1], s[1:]
        self.buckets.add(L)
        if self._rows is not None:
            inputs, targets = jax.device_put(inputs, self._rows), jax.device_put(targets, self._rows)
            with jax.set_mesh(self.mesh):
                arrays = self._program(self.state, inputs, targets)
        else:
            arrays = self._program(self.state, inputs, targets)
        lp, mu, sigma = (np.asarray(a) for a in jax.device_get(arrays))
        return [TokenStats(lp[r, :len(s) - 1], mu[r, :len(s) - 1], sigma[r, :len(s) - 1]) for r, s in enumerate(seqs)]
