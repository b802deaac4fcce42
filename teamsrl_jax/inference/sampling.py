"""Next-token choice from logits, row by row, inside jit: greedy, temperature, top-k and top-p.

Order of the filters, as in Hugging Face ``generate`` and vLLM: the logits are divided by the temperature,
then top-k keeps the k most likely tokens, then top-p keeps the smallest set of the most likely tokens whose
probability (after temperature and top-k) reaches p. Ties are broken by the lower token id, so top-k keeps
exactly k tokens. A temperature of 0 is greedy (argmax; the filters do not matter).

Speed: sorting a 50K vocabulary costs ~15 ms per row on a CPU, so the kept set is found among the
``CANDIDATES`` most likely tokens (``lax.top_k``) whenever it lies inside them, and by a full sort only for a
step where some row's set reaches past them (a nucleus wider than the candidates). Rows that keep every token
need no sort either.

The draw is Gumbel-max with noise derived from (row key, token index, token id): the same token gets the same
noise whichever path computes it, so a request's tokens depend only on its seed, never on the other rows of
its batch or on the path taken.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CANDIDATES = 256
"""Tokens among which the kept set is looked for before falling back to a full sort."""


def _descending(logits_V):
    """(sorted logits, token ids) in descending order, ties by the lower id."""
    neg_sorted, ids = jax.lax.sort((-logits_V, jnp.arange(logits_V.shape[-1], dtype=jnp.int32)), num_keys=1,
                                   is_stable=True)
    return -neg_sorted, ids


def keep_sorted(sorted_logits_V, temperature, top_k, top_p):
    """[V] bool over the descending-sorted logits: which tokens survive top-k (0 = off) and top-p."""
    temperature = jnp.maximum(temperature, 1e-6)
    lse = jax.nn.logsumexp(sorted_logits_V / temperature)
    return _candidate_keep(sorted_logits_V, lse, temperature, top_k, top_p)[0]


def keep_mask(logits_V, temperature, top_k, top_p):
    """[V] bool in token order: the tokens a sampled row may draw (the reference the fast path must equal)."""
    sorted_logits, ids = _descending(logits_V)
    return jnp.zeros(logits_V.shape, bool).at[ids].set(keep_sorted(sorted_logits, temperature, top_k, top_p))


def _gumbel(key, index, ids):
    """Gumbel noise for token ``ids`` at the row's ``index``-th generated token (one stream per token id)."""
    step = jax.random.fold_in(key, index)
    u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(step, i), minval=1e-12, maxval=1.0))(ids)
    return -jnp.log(-jnp.log(u))


def _candidate_keep(top_logits_K, lse_V, temperature, top_k, top_p):
    """(keep [K], complete): the kept set among the K most likely tokens (descending; K = V for the whole
    vocabulary), and whether it ends inside them (else the row needs the full vocabulary). ``lse_V``: the
    log-sum-exp of all V logits over ``temperature``."""
    K = top_logits_K.shape[-1]
    rank = jnp.arange(K)
    within_k = (top_k > 0) & (top_k <= K)
    in_k = rank < jnp.where(within_k, top_k, K)
    scaled = top_logits_K / temperature
    # the probabilities top-p reads: over the top-k set when it lies inside the candidates, else over everything
    norm = jnp.where(within_k, jax.nn.logsumexp(jnp.where(in_k, scaled, -jnp.inf)), lse_V)
    probs = jnp.where(in_k, jnp.exp(scaled - norm), 0.0)
    mass_before = jnp.cumsum(probs) - probs
    keep = in_k & ((mass_before < top_p) | (rank == 0) | (top_p >= 1))
    complete = (within_k & (top_p >= 1)) | ((top_p < 1) & (probs.sum() >= top_p))
    return keep, complete


def _fast_row(logits_V, temperature, top_k, top_p, key, index, candidates):
    t = jnp.where(temperature > 0, temperature, 1.0)
    top_logits, ids = jax.lax.top_k(logits_V, candidates)  # descending, ties by the lower id
    keep, complete = _candidate_keep(top_logits, jax.nn.logsumexp(logits_V / t), t, top_k, top_p)
    choice = jnp.argmax(jnp.where(keep, top_logits / t + _gumbel(key, index, ids), -jnp.inf))
    # one gather (two, ids[choice] and ids[0], make XLA's CPU backend sort the whole row instead of top-k)
    sampled = ids[jnp.where(temperature > 0, choice, 0)]
    keep_all = (top_p >= 1) & ((top_k <= 0) | (top_k >= logits_V.shape[-1]))
    return sampled, complete | (temperature <= 0), keep_all  # a greedy row is complete at its first candidate


def _full_row(logits_V, temperature, top_k, top_p, key, index, *, sort: bool):
    t = jnp.where(temperature > 0, temperature, 1.0)
    V = logits_V.shape[-1]
    keep = keep_mask(logits_V, t, top_k, top_p) if sort else jnp.ones(V, bool)
    noise = _gumbel(key, index, jnp.arange(V, dtype=jnp.int32))
    choice = jnp.argmax(jnp.where(keep, logits_V / t + noise, -jnp.inf)).astype(jnp.int32)
    return jnp.where(temperature > 0, choice, jnp.argmax(logits_V).astype(jnp.int32))


def next_tokens(logits_BxV, temperature_B, top_k_B, top_p_B, keys_Bx2, index_B, *, greedy: bool,
                candidates: int = CANDIDATES):
    """[B] int32 next tokens. ``greedy`` (static) is plain argmax when every row has temperature 0.
    keys_Bx2: a raw uint32 PRNG key per row; index_B: how many tokens the row generated before this one."""
    if greedy:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    candidates = min(candidates, logits_BxV.shape[-1])
    rows = (logits_BxV, temperature_B, top_k_B, top_p_B, keys_Bx2, index_B)
    fast, complete, keep_all = jax.vmap(lambda *r: _fast_row(*r, candidates))(*rows)

    def full(sort):
        tokens = jax.vmap(lambda *r: _full_row(*r, sort=sort))(*rows)
        return jnp.where(complete, fast, tokens)

    # full vocabulary only for a step where some row's kept set reaches past the candidates
    needs_sort = jnp.any(~complete & ~keep_all)
    return jax.lax.cond(jnp.all(complete), lambda: fast,
                        lambda: jax.lax.cond(needs_sort, lambda: full(True), lambda: full(False)))


def token_logprobs(logits_BxV, tokens_B, n: int):
    """(logprob of the chosen token [B], top-n logprobs [B, n], their ids [B, n]) under the model's own
    distribution (before temperature and filters, as OpenAI-compatible servers report them)."""
    logp_BxV = jax.nn.log_softmax(logits_BxV.astype(jnp.float32), axis=-1)
    chosen_B = jnp.take_along_axis(logp_BxV, tokens_B[:, None], axis=-1)[:, 0]
    top_logp, top_ids = jax.lax.top_k(logp_BxV, max(n, 1))
    return chosen_B, top_logp[:, :n], top_ids[:, :n].astype(jnp.int32)
