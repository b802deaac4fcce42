"""Next-token choice from logits, row by row, inside jit: greedy, temperature, top-k and top-p.

Order of the filters, as in Hugging Face ``generate`` and vLLM: the logits are divided by the temperature,
then top-k keeps the k most likely tokens, then top-p keeps the smallest set of the most likely tokens whose
probability (after temperature and top-k) reaches p. Ties are broken by the lower token id (a stable sort),
so top-k keeps exactly k tokens. A temperature of 0 is greedy (argmax; the filters do not matter).

Each row samples with its own key, folded with the index of the token it generates, so a request's tokens
do not depend on which other requests share its batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _descending(logits_V):
    """(sorted logits, token ids) in descending order, ties by the lower id."""
    neg_sorted, ids = jax.lax.sort((-logits_V, jnp.arange(logits_V.shape[-1], dtype=jnp.int32)), num_keys=1,
                                   is_stable=True)
    return -neg_sorted, ids


def keep_sorted(sorted_logits_V, temperature, top_k, top_p):
    """[V] bool over the descending-sorted logits: which tokens survive top-k (0 = off) and top-p."""
    V = sorted_logits_V.shape[-1]
    rank = jnp.arange(V)
    keep = rank < jnp.where(top_k > 0, top_k, V)
    scaled = jnp.where(keep, sorted_logits_V / jnp.maximum(temperature, 1e-6), -jnp.inf)
    probs = jax.nn.softmax(scaled)
    mass_before = jnp.cumsum(probs) - probs
    # top_p = 1 keeps everything (float32 cumulative sums can reach 1 before the last, tiny, tokens)
    return keep & ((mass_before < top_p) | (rank == 0) | (top_p >= 1))


def keep_mask(logits_V, temperature, top_k, top_p):
    """[V] bool in token order: the tokens a sampled row may draw (for tests and inspection)."""
    sorted_logits, ids = _descending(logits_V)
    return jnp.zeros(logits_V.shape, bool).at[ids].set(keep_sorted(sorted_logits, temperature, top_k, top_p))


def _sample_row(logits_V, temperature, top_k, top_p, key, index):
    sorted_logits, ids = _descending(logits_V)
    keep = keep_sorted(sorted_logits, temperature, top_k, top_p)
    scaled = jnp.where(keep, sorted_logits / jnp.maximum(temperature, 1e-6), -jnp.inf)
    choice = jax.random.categorical(jax.random.fold_in(key, index), scaled)
    return jnp.where(temperature > 0, ids[choice], jnp.argmax(logits_V).astype(jnp.int32))


def next_tokens(logits_BxV, temperature_B, top_k_B, top_p_B, keys_Bx2, index_B, *, greedy: bool):
    """[B] int32 next tokens. ``greedy`` (static) skips the sort when every row has temperature 0.
    keys_Bx2: a raw uint32 PRNG key per row; index_B: how many tokens the row generated before this one."""
    if greedy:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    return jax.vmap(_sample_row)(logits_BxV, temperature_B, top_k_B, top_p_B, keys_Bx2, index_B)


def token_logprobs(logits_BxV, tokens_B, n: int):
    """(logprob of the chosen token [B], top-n logprobs [B, n], their ids [B, n]) under the model's own
    distribution (before temperature and filters, as OpenAI-compatible servers report them)."""
    logp_BxV = jax.nn.log_softmax(logits_BxV.astype(jnp.float32), axis=-1)
    chosen_B = jnp.take_along_axis(logp_BxV, tokens_B[:, None], axis=-1)[:, 0]
    top_logp, top_ids = jax.lax.top_k(logp_BxV, max(n, 1))
    return chosen_B, top_logp[:, :n], top_ids[:, :n].astype(jnp.int32)
