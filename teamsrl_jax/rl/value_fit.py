"""Fitting the value network to return targets: L-BFGS (the paper) or minibatch Adam (as sb3-contrib).

    graphdef, vparams = nnx.split(value_net)
    fit = make_value_fit(graphdef, cfg.value)              # jitted
    opt_state = value_fit_init(cfg.value, vparams)         # Adam moments (kept across fits); None for L-BFGS
    vparams, opt_state, metrics = fit(vparams, opt_state, obs_BxD, targets_B, key)

Loss: ``mean((V(obs) - targets)**2) + l2 * sum(theta**2)`` over all value parameters (the original's weight
decay). ``lbfgs``: ``optax.lbfgs`` (zoom line search, memory ``lbfgs_memory``) restarted at every fit, at
most ``lbfgs_iters`` iterations, stopping early once max|grad| <= 1e-5 (scipy's ``pgtol``); a non-finite
result keeps the old parameters. ``adam``: ``adam_epochs`` passes over shuffled minibatches of
``minibatch_size`` (remainder dropped; shuffles from :func:`teamsrl_jax.rl.shuffle.permutations`), eps 1e-5 as
sb3. Metrics: ``loss_before``, ``loss_after``, ``steps``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from teamsrl_jax.rl.config import ValueConfig
from teamsrl_jax.rl.shuffle import permutations

_PGTOL = 1e-5  # scipy fmin_l_bfgs_b's default projected-gradient tolerance


def value_loss(graphdef: nnx.GraphDef, params: nnx.State, obs: jax.Array, targets: jax.Array,
               l2: float) -> jax.Array:
    pred = nnx.merge(graphdef, params)(obs)
    mse = jnp.mean((pred - jnp.asarray(targets, pred.dtype)) ** 2)
    return mse + l2 * sum(jnp.sum(p**2) for p in jax.tree_util.tree_leaves(params))


def _adam(cfg: ValueConfig) -> optax.GradientTransformation:
    return optax.adam(cfg.adam_lr, eps=1e-5)


def value_fit_init(cfg: ValueConfig, params: nnx.State):
    """Optimiser state carried between fits: Adam's moments (of the flat parameter vector), or None for L-BFGS."""
    return _adam(cfg).init(ravel_pytree(params)[0]) if cfg.fit == "adam" else None


def _fit_lbfgs(loss_fn, params, cfg: ValueConfig):
    opt = optax.lbfgs(memory_size=cfg.lbfgs_memory)
    value_and_grad = optax.value_and_grad_from_state(loss_fn)

    def cond(carry):
        _, state, step = carry
        grad = optax.tree.get(state, "grad")
        gmax = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree_util.tree_leaves(grad)]))
        return (step < cfg.lbfgs_iters) & ((step == 0) | (gmax > _PGTOL))

    def body(carry):
        params, state, step = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss_fn)
        return optax.apply_updates(params, updates), state, step + 1

    new, _, steps = jax.lax.while_loop(cond, body, (params, opt.init(params), jnp.zeros((), jnp.int32)))
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(p)) for p in jax.tree_util.tree_leaves(new)]))
    return jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, params), steps


def _fit_adam(graphdef, params, opt_state, obs, targets, key, cfg: ValueConfig):
    # On one flat vector: a few fused ops per Adam step instead of a few per parameter array.
    tx = _adam(cfg)
    flat, unravel = ravel_pytree(params)
    n = obs.shape[0]
    mb = n if cfg.minibatch_size == 0 or cfg.minibatch_size >= n else cfg.minibatch_size
    grad_fn = jax.grad(lambda f, o, t: value_loss(graphdef, unravel(f), o, t, cfg.l2))

    def minibatch(carry, batch):
        flat, opt_state = carry
        updates, opt_state = tx.update(grad_fn(flat, *batch), opt_state, flat)
        return (flat + updates, opt_state), None

    def epoch(carry, order):  # one epoch's minibatches are gathered at a time (memory: one copy of the batch)
        idx = order[: (n // mb) * mb].reshape(n // mb, mb)
        return jax.lax.scan(minibatch, carry, (obs[idx], targets[idx]))[0], None

    orders = permutations(key, n, cfg.adam_epochs)  # all epochs' shuffles in one cheap sort
    (flat, opt_state), _ = jax.lax.scan(epoch, (flat, opt_state), orders)
    return unravel(flat), opt_state, jnp.asarray(cfg.adam_epochs * (n // mb), jnp.int32)


def fit_value(graphdef: nnx.GraphDef, cfg: ValueConfig, params: nnx.State, opt_state, obs: jax.Array,
              targets: jax.Array, key: jax.Array):
    """Fit ``nnx.merge(graphdef, params)`` to ``targets``; returns ``(params, opt_state, metrics)``. Pure."""
    obs, targets = jnp.asarray(obs), jnp.asarray(targets)
    loss_fn = functools.partial(value_loss, graphdef, obs=obs, targets=targets, l2=cfg.l2)
    before = loss_fn(params)
    if cfg.fit == "lbfgs":
        params, steps = _fit_lbfgs(lambda p: loss_fn(p), params, cfg)
    else:
        params, opt_state, steps = _fit_adam(graphdef, params, opt_state, obs, targets, key, cfg)
    return params, opt_state, dict(loss_before=before, loss_after=loss_fn(params), steps=steps)


def make_value_fit(graphdef: nnx.GraphDef, cfg: ValueConfig):
    """``jax.jit`` of :func:`fit_value` with ``graphdef`` and ``cfg`` bound:
    ``fit(params, opt_state, obs, targets, key)``."""
    return jax.jit(functools.partial(fit_value, graphdef, cfg))
