import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teamsrl_jax.rl.config import PolicyConfig, TRPOConfig
from teamsrl_jax.rl.networks import make_policy
from teamsrl_jax.rl.trpo import (TRPOBatch, conjugate_gradient, line_search, make_fvp, make_gn_fvp,
                                 make_objectives, make_trpo_update)


def small_problem(kind, seed=0, batch=16, obs_dim=3, num_actions=3):
    cfg = PolicyConfig(kind=kind, hidden=(5,), activation="tanh", out_scale=1.0, dtype="float64")
    policy = make_policy(cfg, obs_dim, num_actions, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    data = TRPOBatch(jnp.asarray(rng.normal(size=(batch, obs_dim))), jnp.asarray(rng.integers(0, num_actions, batch)),
                     jnp.asarray(rng.normal(size=batch)))
    return nnx.split(policy), data


def test_cg_solves_spd_system(x64):
    rng = np.random.default_rng(0)
    m = rng.normal(size=(12, 12))
    a = m @ m.T + 0.5 * np.eye(12)
    b = rng.normal(size=12)
    x, rr = jax.jit(lambda b: conjugate_gradient(lambda v: jnp.asarray(a) @ v, b, 40, 1e-20))(b)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-8, atol=1e-10)
    assert float(rr) < 1e-18
    # ikostrikov stops once r.r < tol: with a loose tolerance fewer iterations run and the residual shows it
    x_loose, rr_loose = conjugate_gradient(lambda v: jnp.asarray(a) @ v, jnp.asarray(b), 40, 1e-2)
    assert 1e-6 < float(rr_loose) < 1e-2
    # tolerance 0 and an exact solution (b = 0): x = 0, not 0/0
    x0, rr0 = conjugate_gradient(lambda v: jnp.asarray(a) @ v, jnp.zeros(12), 10, 0.0)
    assert np.all(np.asarray(x0) == 0.0) and float(rr0) == 0.0


@pytest.mark.parametrize("kind", ["categorical", "gaussian_argmax"])
def test_fvp_equals_explicit_kl_hessian(x64, kind):
    (graphdef, params), data = small_problem(kind)
    flat0, _, old, dist_at, surrogate_and_kl = make_objectives(graphdef, params, data, True)
    kl = lambda f: surrogate_and_kl(f)[1]
    hess, kl0, grad0 = jax.jit(lambda f: (jax.hessian(kl)(f), kl(f), jax.grad(kl)(f)))(flat0)
    v = jnp.asarray(np.random.default_rng(1).normal(size=flat0.shape))
    fvp, gn = jax.jit(lambda f, v: (make_fvp(kl, f, 0.1)(v), make_gn_fvp(dist_at, old, f, 0.1)(v)))(flat0, v)
    np.testing.assert_allclose(fvp, hess @ v + 0.1 * v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gn, hess @ v + 0.1 * v, rtol=1e-10, atol=1e-12)
    # KL is 0 with a zero gradient at identical parameters, and its Hessian is PSD (a Fisher matrix)
    # (exactly 0 in exact arithmetic; fused multiply-adds leave ~1e-18 on some CPUs, a real bug gives >> 1e-12)
    assert abs(float(kl0)) < 1e-14
    assert float(jnp.max(jnp.abs(grad0))) < 1e-15
    assert float(jnp.min(jnp.linalg.eigvalsh(hess))) > -1e-12


def quadratic_problem():
    # objective f(x) = x - x^2 (max at 0.5), KL(x) = x^2 / 2; full step 3: f(3) < 0.
    return lambda x: (jnp.sum(x - x**2), jnp.sum(x**2) / 2), jnp.zeros(1), jnp.asarray(0.0), jnp.array([3.0])


def test_line_search_shrinks_until_the_ratio_test_passes(x64):
    fn, x0, f0, step = quadratic_problem()
    cfg = TRPOConfig(max_kl=1.0, backtrack=0.5, accept="ratio", accept_ratio=0.1, kl_slack=math.inf)
    out = line_search(fn, x0, f0, step, jnp.asarray(3.0), cfg)
    # fractions 1, 0.5 lower the objective; 0.25 gives f(0.75) = 0.1875, ratio 0.1875/0.75 = 0.25 > 0.1
    assert bool(out["accepted"]) and float(out["fraction"]) == 0.25 and int(out["tries"]) == 3
    np.testing.assert_allclose(out["x"], [0.75])
    # a stricter ratio pushes it one step further: f(0.375)/0.375 = 0.625
    out = line_search(fn, x0, f0, step, jnp.asarray(3.0), dataclasses.replace(cfg, accept_ratio=0.5))
    assert float(out["fraction"]) == 0.125


def test_line_search_kl_bound_and_rejection(x64):
    fn, x0, f0, step = quadratic_problem()
    # sb3's rule: objective up and KL < target; KL(x) <= 0.1 needs x <= 0.447, i.e. 0.8^k <= 0.149: k = 9
    cfg = TRPOConfig(max_kl=0.1, backtrack=0.8, accept="improve", kl_slack=1.0, line_search_steps=10)
    out = line_search(fn, x0, f0, step, jnp.asarray(3.0), cfg)
    assert bool(out["accepted"]) and int(out["tries"]) == 10
    assert float(out["kl"]) <= 0.1 and float(out["fraction"]) == pytest.approx(0.8**9)
    # without the KL test the first improving fraction (0.8^5: x = 0.98) is taken although KL = 0.48
    out = line_search(fn, x0, f0, step, jnp.asarray(3.0), dataclasses.replace(cfg, kl_slack=math.inf))
    assert float(out["fraction"]) == pytest.approx(0.8**5) and float(out["kl"]) > 0.1
    # one try fewer and nothing is accepted: x stays, fraction 0
    out = line_search(fn, x0, f0, step, jnp.asarray(3.0), dataclasses.replace(cfg, line_search_steps=9))
    assert not bool(out["accepted"]) and float(out["fraction"]) == 0.0
    np.testing.assert_array_equal(out["x"], x0)


@pytest.mark.parametrize("kind", ["categorical", "gaussian_argmax"])
def test_update_respects_the_trust_region(x64, kind):
    (graphdef, params), data = small_problem(kind, batch=64)
    surrogate_and_kl = make_objectives(graphdef, params, data, True).surrogate_and_kl
    for max_kl, slack in ((0.01, 1.0), (0.5, 0.2)):
        # less damping than 0.1, so that the step's quadratic KL model s^T F s / 2 is near max_kl
        cfg = TRPOConfig(max_kl=max_kl, kl_slack=slack, cg_iters=20, damping=0.01)
        new, m = make_trpo_update(graphdef, cfg)(params, data)
        flat_new = jax.flatten_util.ravel_pytree(new)[0]
        surr, kl = surrogate_and_kl(flat_new)
        assert bool(m["accepted"]) and bool(m["finite"])
        assert float(kl) <= slack * max_kl and float(kl) == pytest.approx(float(m["kl"]), rel=1e-10)
        assert float(surr) > float(m["surrogate_before"]) and float(surr) == pytest.approx(float(m["surrogate_after"]))
        if max_kl == 0.01:  # the quadratic model is good here: the full step is taken and KL ~= max_kl
            assert float(m["step_fraction"]) == 1.0 and 0.6 * max_kl < float(kl) <= max_kl
        if slack == 0.2:  # the full step (KL ~ max_kl) breaks the bound, a shorter one is taken
            assert float(m["step_fraction"]) < 1.0


def test_non_finite_advantages_change_nothing(x64):
    (graphdef, params), data = small_problem("categorical")
    bad = data._replace(advantages=data.advantages.at[3].set(jnp.nan))
    new, m = make_trpo_update(graphdef, TRPOConfig())(params, bad)
    assert not bool(m["finite"]) and not bool(m["accepted"]) and float(m["step_fraction"]) == 0.0
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_zero_advantages_reject_without_nan(x64):
    (graphdef, params), data = small_problem("categorical")
    cfg = TRPOConfig(normalize_advantages=False)
    new, m = make_trpo_update(graphdef, cfg)(params, data._replace(advantages=jnp.zeros(16)))
    assert bool(m["finite"]) and not bool(m["accepted"])
    np.testing.assert_array_equal(jax.flatten_util.ravel_pytree(new)[0], jax.flatten_util.ravel_pytree(params)[0])
