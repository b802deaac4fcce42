"""The pure SFT steps: masked next-token loss, one optimizer update (with microbatch accumulation),
evaluation sums. Parameters travel as a plain dict (``nnx.to_pure_dict``) and are merged into the
model's graph inside the jitted function."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx


def masked_nll_sums(logits_BxLxV, targets_BxL, mask_BxL):
    """(sum of -log p(target) over masked-in tokens, number of those tokens), both float32 scalars.

    log-softmax via one logsumexp: the [B, L, V] logits are read twice and never copied as log-probs.
    """
    logits_BxLxV = logits_BxLxV.astype(jnp.float32)
    logz_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
    target_logit_BxL = jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    mask_BxL = mask_BxL.astype(jnp.float32)
    return jnp.sum((logz_BxL - target_logit_BxL) * mask_BxL), jnp.sum(mask_BxL)


def loss_sums(params, graphdef, rest, batch):
    """Summed token loss and token count of ``batch`` under the model ``graphdef`` + ``params``."""
    model = nnx.merge(graphdef, params, rest)
    logits_BxLxV = model(batch["input_ids"], positions_BxL=batch["positions"], segment_ids_BxL=batch["segment_ids"])
    return masked_nll_sums(logits_BxLxV, batch["targets"], batch["loss_mask"])


def microbatches(batch, n: int):
    """[B, L] -> [n, B/n, L], microbatch k holding rows k, k+n, ... so that a batch dimension sharded
    over devices stays sharded the same way within every microbatch (no data movement)."""
    def split(x):
        b = x.shape[0]
        return jnp.swapaxes(x.reshape(b // n, n, *x.shape[1:]), 0, 1)
    return jax.tree.map(split, batch)


def make_train_step(graphdef, rest, tx: optax.GradientTransformation, accum_steps: int = 1):
    """``train_step(params, opt_state, batch) -> (params, opt_state, metrics)``: one optimizer update on
    the whole global batch. The loss is the sum over all unmasked tokens of the batch (all microbatches)
    divided by their count, so accumulation over ``accum_steps`` microbatches equals one big batch."""
    grad_fn = jax.value_and_grad(loss_sums, has_aux=True)

    def grads_and_sums(params, batch):
        if accum_steps == 1:
            (loss_sum, count), grads = grad_fn(params, graphdef, rest, batch)
            return grads, loss_sum, count

        def body(carry, mb):
            g_acc, l_acc, n_acc = carry
            (loss, n), g = grad_fn(params, graphdef, rest, mb)
            return (jax.tree.map(jnp.add, g_acc, g), l_acc + loss, n_acc + n), None

        zero = jnp.zeros((), jnp.float32)
        init = (jax.tree.map(jnp.zeros_like, params), zero, zero)
        (grads, loss_sum, count), _ = jax.lax.scan(body, init, microbatches(batch, accum_steps))
        return grads, loss_sum, count

    def train_step(params, opt_state, batch):
        grads, loss_sum, count = grads_and_sums(params, batch)
        count = jnp.maximum(count, 1.0)
        grads = jax.tree.map(lambda g: (g / count).astype(g.dtype), grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss_sum / count, "loss_tokens": count, "grad_norm": optax.tree.norm(grads)}
        return params, opt_state, metrics

    return train_step


def make_eval_step(graphdef, rest):
    """``eval_step(params, batch) -> (loss_sum, count)``; sum over batches, then divide."""
    def eval_step(params, batch):
        return loss_sums(params, graphdef, rest, batch)

    return eval_step
