import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from flax import nnx
from jax.flatten_util import ravel_pytree

from teamsrl_jax.rl.config import preset
from teamsrl_jax.rl.networks import ValueNet
from teamsrl_jax.rl.value_fit import make_value_fit, value_fit_init, value_loss


def problem(batch=64):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(batch, 6))
    return obs, 3 * rng.normal(size=batch) + 2 * obs[:, 0]


def test_lbfgs_fit_matches_scipy(x64):
    cfg = preset("paper").value  # L-BFGS 25 iterations, l2 1e-3, float64, ReLU 6-64-64-1
    graphdef, params = nnx.split(ValueNet(6, cfg, rngs=nnx.Rngs(0)))
    obs, targets = problem()
    fit = make_value_fit(graphdef, cfg)
    new, _, m = fit(params, None, obs, targets, jax.random.key(0))

    # the original: scipy.optimize.fmin_l_bfgs_b(maxiter=25) on the same loss from the same start
    flat0, unravel = ravel_pytree(params)
    loss_and_grad = jax.jit(jax.value_and_grad(lambda x: value_loss(graphdef, unravel(x), obs, targets, cfg.l2)))
    fn = lambda x: tuple(np.asarray(v, np.float64) for v in loss_and_grad(jnp.asarray(x)))
    _, f25, _ = scipy.optimize.fmin_l_bfgs_b(fn, np.asarray(flat0), maxiter=25)
    _, fmin, _ = scipy.optimize.fmin_l_bfgs_b(fn, np.asarray(flat0), maxiter=300, factr=10, pgtol=1e-10)

    before, after = float(m["loss_before"]), float(m["loss_after"])
    assert int(m["steps"]) == 25
    assert after == pytest.approx(float(value_loss(graphdef, new, obs, targets, cfg.l2)))
    assert after <= 1.25 * f25  # as good as scipy's 25 iterations (within 25%)
    assert (after - fmin) / (before - fmin) < 0.05  # and closes > 95% of the gap to scipy's minimum
    # a NaN target poisons the fit, not the caller's parameters
    bad = targets.copy()
    bad[0] = np.nan
    kept, _, _ = fit(params, None, obs, bad, jax.random.key(0))
    np.testing.assert_array_equal(ravel_pytree(kept)[0], flat0)


def test_adam_fit_decreases_loss_and_keeps_state(x64):
    cfg = dataclasses.replace(preset("default").value, fit="adam", adam_epochs=10, minibatch_size=16,
                              dtype="float64", l2=0.0)
    graphdef, params = nnx.split(ValueNet(6, cfg, rngs=nnx.Rngs(0)))
    obs, targets = problem()
    fit = make_value_fit(graphdef, cfg)
    state = value_fit_init(cfg, params)
    params, state, m1 = fit(params, state, obs, targets, jax.random.key(0))
    params, state, m2 = fit(params, state, obs, targets, jax.random.key(1))
    assert int(m1["steps"]) == 40 and int(state[0].count) == 80  # 64 // 16 minibatches x 10 epochs, twice
    assert float(m2["loss_after"]) < 0.7 * float(m1["loss_before"])
    assert float(m2["loss_before"]) == pytest.approx(float(m1["loss_after"]))
