"""The TRPO policy step as one pure function (jit it once with :func:`make_trpo_update`).

    graphdef, params = nnx.split(policy)                 # policy from networks.make_policy
    update = make_trpo_update(graphdef, cfg.trpo)        # jitted; reuse it for every batch
    batch = TRPOBatch(obs_BxD, actions_B, advantages_B)  # e.g. (T, N) chains flattened to B = T * N
    params, metrics = update(params, batch)
    nnx.update(policy, params)

The batch must have been collected with ``params`` (the "old" policy): TRPO maximises the surrogate
``mean(exp(logp_new - logp_old) * A)`` subject to ``mean KL(old || new) <= max_kl``:

1. ``g`` = gradient of the surrogate, on the parameters as one flat vector (``ravel_pytree``);
2. ``s`` ~= ``(F + damping I)^-1 g`` by conjugate gradient (``lax.fori_loop``, skips after convergence), where
   ``F v`` is the Hessian of the mean KL times ``v``: Gauss-Newton ``J^T M J v`` by jvp and transposed jvp
   (``cfg.fvp='gauss_newton'``), or forward-over-reverse ``jax.linearize(jax.grad(kl))`` (``'hessian'``, the
   original's double backprop); the two are equal at the old parameters, the first at about half the cost;
3. full step ``s * sqrt(2 max_kl / s^T (F + damping I) s)``;
4. backtracking line search (``lax.while_loop``) over fractions ``backtrack**k``: accept when the KL is within
   ``kl_slack * max_kl`` and the improvement test of ``cfg.accept`` passes (see :class:`TRPOConfig`). The KL is
   KL(old || new) everywhere (sb3-contrib uses KL(new || old); the two agree to second order).

A non-finite gradient, step direction, ``s^T F s`` or surrogate leaves the parameters unchanged
(``finite = False``); non-finite candidates in the line search are never accepted.

Metrics (scalars): ``kl``, ``surrogate_before``, ``surrogate_after``, ``expected_improve``, ``step_fraction``
(0 if rejected), ``line_search_tries``, ``cg_residual`` (norm of the CG residual), ``grad_norm``, ``entropy``
(of the old policy), ``finite``, ``accepted``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.flatten_util import ravel_pytree

from teamsrl_jax.rl.config import TRPOConfig
from teamsrl_jax.rl.gae import normalize_advantages


class TRPOBatch(NamedTuple):
    """Transitions collected with the current policy, flattened over (time, chain)."""

    obs: jax.Array         # (B, obs_dim), as the policy saw them (already normalised, if so)
    actions: jax.Array     # (B,) int, the executed actions
    advantages: jax.Array  # (B,)


def conjugate_gradient(mvp: Callable[[jax.Array], jax.Array], b: jax.Array, iters: int,
                       tol: float) -> tuple[jax.Array, jax.Array]:
    """Solve ``mvp(x) = b`` from x = 0 (ikostrikov's loop); returns ``(x, r.r)``.

    Runs ``iters`` iterations; once ``r.r < tol`` the remaining ones are skipped by ``lax.cond`` (so a ``b`` that
    is already below ``tol`` gives x = 0, where the original would still take one step).
    """

    def iterate(carry):
        x, r, p, rr = carry
        ap = mvp(p)
        alpha = rr / jnp.dot(p, ap)
        x, r = x + alpha * p, r - alpha * ap
        rr_new = jnp.dot(r, r)
        return x, r, r + (rr_new / rr) * p, rr_new

    def body(_, carry):
        # r.r == 0 means solved exactly: stop even at tol = 0 (another iteration would divide 0 by 0)
        return jax.lax.cond((carry[3] >= tol) & (carry[3] > 0), iterate, lambda c: c, carry)

    x, _, _, rr = jax.lax.fori_loop(0, iters, body, (jnp.zeros_like(b), b, b, jnp.dot(b, b)))
    return x, rr


def make_fvp(kl_fn: Callable[[jax.Array], jax.Array], flat_params: jax.Array,
             damping: float) -> Callable[[jax.Array], jax.Array]:
    """``v -> (H_kl + damping I) v`` at ``flat_params``, forward-over-reverse (the original's double backprop).

    The forward part of the KL gradient is linearised once and reused by every product.
    """
    _, hvp = jax.linearize(jax.grad(kl_fn), flat_params)
    return lambda v: hvp(v) + damping * v


def make_gn_fvp(dist_fn: Callable, old, flat_params: jax.Array, damping: float) -> Callable[[jax.Array], jax.Array]:
    """``v -> (J^T M J + damping I) v``: J the Jacobian of ``dist_fn`` (parameters -> distribution parameters),
    M the Hessian of ``mean KL(old || d)`` in the distribution parameters ``d``.

    Equal to :func:`make_fvp` where ``dist_fn(flat_params) == old`` (the KL's first derivative vanishes there),
    at about half the cost: one jvp and one transposed jvp of the network per product.
    """
    out, jvp = jax.linearize(dist_fn, flat_params)
    vjp = jax.linear_transpose(jvp, flat_params)
    _, m = jax.linearize(jax.grad(lambda d: jnp.mean(old.kl(d))), out)
    return lambda v: vjp(m(jvp(v)))[0] + damping * v


def _accept(cfg: TRPOConfig, actual: jax.Array, expected: jax.Array, kl: jax.Array) -> jax.Array:
    improve = actual > 0
    if cfg.accept == "ratio":
        improve &= actual / expected > cfg.accept_ratio
    return improve & (kl <= cfg.kl_slack * cfg.max_kl)


def line_search(objective_and_kl: Callable[[jax.Array], tuple[jax.Array, jax.Array]], x0: jax.Array,
                f0: jax.Array, fullstep: jax.Array, expected_rate: jax.Array, cfg: TRPOConfig,
                enabled: jax.Array | bool = True) -> dict[str, jax.Array]:
    """Try ``x0 + backtrack**k * fullstep`` for k = 0.. until one is accepted (maximising the objective).

    ``expected_rate`` is the linearised improvement of the full step (``g . fullstep``). Returns ``x`` (``x0`` if
    nothing was accepted), ``accepted``, ``fraction`` (0 if not accepted), ``objective``, ``kl``, ``tries``.
    """

    def cond(c):
        return enabled & (c["tries"] < cfg.line_search_steps) & ~c["accepted"]

    def body(c):
        frac = jnp.asarray(cfg.backtrack, x0.dtype) ** c["tries"]
        f, kl = objective_and_kl(x0 + frac * fullstep)
        ok = _accept(cfg, f - f0, expected_rate * frac, kl)
        return dict(tries=c["tries"] + 1, accepted=ok, fraction=frac, objective=f, kl=kl)

    zero = jnp.zeros((), x0.dtype)
    init = dict(tries=jnp.zeros((), jnp.int32), accepted=jnp.zeros((), bool), fraction=zero, objective=f0, kl=zero)
    out = jax.lax.while_loop(cond, body, init)
    ok = out["accepted"]
    return dict(x=jnp.where(ok, x0 + out["fraction"] * fullstep, x0), accepted=ok,
                fraction=jnp.where(ok, out["fraction"], zero), objective=jnp.where(ok, out["objective"], f0),
                kl=jnp.where(ok, out["kl"], zero), tries=out["tries"])


class Objectives(NamedTuple):
    flat: jax.Array              # the parameters as one vector
    unravel: Callable            # vector -> parameter pytree
    old: Any                     # the distribution at ``flat`` on the batch, gradient stopped
    dist_at: Callable            # vector -> distribution on the batch
    surrogate_and_kl: Callable   # vector -> (mean ratio * A, mean KL(old || new))


def make_objectives(graphdef: nnx.GraphDef, params: nnx.State, batch: TRPOBatch, normalize_adv: bool) -> Objectives:
    """The functions of the flat parameters that a TRPO step needs, on ``batch``."""
    batch = TRPOBatch(*(jnp.asarray(x) for x in batch))
    flat0, unravel = ravel_pytree(params)

    def dist_at(flat):
        return nnx.merge(graphdef, unravel(flat))(batch.obs)

    old = jax.tree_util.tree_map(jax.lax.stop_gradient, dist_at(flat0))
    old_logp = old.log_prob(batch.actions)
    adv = jnp.asarray(batch.advantages, flat0.dtype)
    if normalize_adv:
        adv = normalize_advantages(adv)

    def surrogate_and_kl(flat):
        dist = dist_at(flat)
        surrogate = jnp.mean(jnp.exp(dist.log_prob(batch.actions) - old_logp) * adv)
        return surrogate, jnp.mean(old.kl(dist))

    return Objectives(flat0, unravel, old, dist_at, surrogate_and_kl)


def trpo_update(graphdef: nnx.GraphDef, cfg: TRPOConfig, params: nnx.State,
                batch: TRPOBatch) -> tuple[nnx.State, dict[str, jax.Array]]:
    """One TRPO step of the policy ``nnx.merge(graphdef, params)`` on ``batch``; pure, jit-able."""
    flat0, unravel, old, dist_at, surrogate_and_kl = make_objectives(graphdef, params, batch, cfg.normalize_advantages)
    surr0, grad = jax.value_and_grad(lambda f: surrogate_and_kl(f)[0])(flat0)
    if cfg.fvp == "gauss_newton":
        fvp = make_gn_fvp(dist_at, old, flat0, cfg.damping)
    else:
        fvp = make_fvp(lambda f: surrogate_and_kl(f)[1], flat0, cfg.damping)
    direction, rr = conjugate_gradient(fvp, grad, cfg.cg_iters, cfg.cg_tol)
    shs = jnp.dot(direction, fvp(direction))
    # A zero gradient gives a zero step (rejected by the line search), not 0 * inf.
    fullstep = direction * jnp.where(shs > 0, jnp.sqrt(2.0 * cfg.max_kl / jnp.where(shs > 0, shs, 1.0)), 0.0)
    expected_rate = jnp.dot(grad, fullstep)
    finite = (jnp.all(jnp.isfinite(grad)) & jnp.all(jnp.isfinite(direction)) & jnp.isfinite(shs)
              & jnp.isfinite(surr0) & jnp.isfinite(expected_rate))

    ls = line_search(surrogate_and_kl, flat0, surr0, fullstep, expected_rate, cfg, enabled=finite)
    metrics = dict(
        kl=ls["kl"], surrogate_before=surr0, surrogate_after=ls["objective"],
        expected_improve=expected_rate * jnp.where(ls["accepted"], ls["fraction"], 1.0),
        step_fraction=ls["fraction"], line_search_tries=ls["tries"], cg_residual=jnp.sqrt(rr),
        grad_norm=jnp.linalg.norm(grad), entropy=jnp.mean(old.entropy()), finite=finite, accepted=ls["accepted"],
    )
    return unravel(ls["x"]), metrics


def make_trpo_update(graphdef: nnx.GraphDef, cfg: TRPOConfig):
    """``jax.jit`` of :func:`trpo_update` with ``graphdef`` and ``cfg`` bound: ``update(params, batch)``."""
    return jax.jit(functools.partial(trpo_update, graphdef, cfg))
