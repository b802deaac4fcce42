import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from teamsrl_jax.rl.concurrent import ConcurrentUpdate, CoreWorkers, configure_cpu_devices
from teamsrl_jax.rl.config import preset
from teamsrl_jax.rl.networks import ValueNet, make_policy
from teamsrl_jax.rl.trpo import TRPOBatch, trpo_update
from teamsrl_jax.rl.value_fit import fit_value, value_fit_init

from .conftest import enable_x64


def setup(cfg, obs_dim=5, actions=4, batch=96):
    rng = np.random.default_rng(0)
    dtype = np.dtype(cfg.policy.dtype)
    gp, pp = nnx.split(make_policy(cfg.policy, obs_dim, actions, rngs=nnx.Rngs(0)))
    gv, vp = nnx.split(ValueNet(obs_dim, cfg.value, rngs=nnx.Rngs(1)))
    data = TRPOBatch(rng.normal(size=(batch, obs_dim)).astype(dtype), rng.integers(0, actions, batch),
                     rng.normal(size=batch).astype(dtype))
    targets = rng.normal(size=batch).astype(dtype)
    return gp, pp, gv, vp, data, targets


def reference(cfg, gp, pp, gv, vp, data, targets, key):
    policy, metrics = jax.jit(lambda p, b: trpo_update(gp, cfg.trpo, p, b))(pp, data)
    value, opt, vm = jax.jit(lambda *a: fit_value(gv, cfg.value, *a))(vp, value_fit_init(cfg.value, vp), data.obs,
                                                                       targets, key)
    return policy, value, opt, metrics, vm


@pytest.mark.parametrize("name", ["default", "paper"])
def test_two_devices_and_one_give_the_reference_result(name):
    cfg = preset(name)  # paper: float64 Gaussian-argmax policy; both with a short Adam fit (L-BFGS compiles slowly)
    cfg = dataclasses.replace(cfg, value=dataclasses.replace(cfg.value, fit="adam", adam_epochs=3, minibatch_size=32))
    with enable_x64() if cfg.policy.dtype == "float64" else jax.enable_x64(False):
        gp, pp, gv, vp, data, targets = setup(cfg)
        key = jax.random.key(3)
        ref_p, ref_v, ref_opt, ref_m, ref_vm = reference(cfg, gp, pp, gv, vp, data, targets, key)
        assert bool(ref_m["accepted"])  # a real step, so equality below is not 0 == 0
        devices = jax.local_devices()
        assert len(devices) >= 2  # the suite runs with 8 CPU devices
        for layout in (devices[:2], devices[:1]):
            update = ConcurrentUpdate(gp, gv, cfg, layout)
            assert update.concurrent == (len(layout) == 2)
            policy, value, opt, metrics = update(pp, vp, value_fit_init(cfg.value, vp), data, targets, key)
            update.close()
            np.testing.assert_allclose(ravel_pytree(policy)[0], ravel_pytree(ref_p)[0], rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(ravel_pytree(value)[0], ravel_pytree(ref_v)[0], rtol=1e-6, atol=1e-7)
            assert ravel_pytree(value)[0].dtype == ravel_pytree(ref_v)[0].dtype  # x64 carried into the workers
            assert float(metrics["kl"]) == pytest.approx(float(ref_m["kl"]), rel=1e-5)
            assert float(metrics["value_loss_after"]) == pytest.approx(float(ref_vm["loss_after"]), rel=1e-5)
            assert int(metrics["value_steps"]) == int(ref_vm["steps"])
            if len(layout) == 2:
                assert {d for leaf in jax.tree_util.tree_leaves(policy) for d in leaf.devices()} == {layout[0]}
                assert {d for leaf in jax.tree_util.tree_leaves(value) for d in leaf.devices()} == {layout[1]}


def test_workers_run_at_once_and_raise_errors():
    import threading

    workers = CoreWorkers(2)
    barrier = threading.Barrier(2, timeout=10)  # only passes if both functions run at the same time
    assert workers.run([lambda: barrier.wait() * 0 + 1, lambda: barrier.wait() * 0 + 2]) == [1, 2]

    def boom():
        raise KeyError("inside a worker")

    with pytest.raises(KeyError, match="inside a worker"):
        workers.run([lambda: 1, boom])
    with pytest.raises(ValueError, match="3 functions for 2 workers"):
        workers.run([int, int, int])
    workers.close()


def test_configure_after_start_is_refused():
    jax.numpy.zeros(1).block_until_ready()
    with pytest.raises(RuntimeError, match="before JAX's first computation"):
        configure_cpu_devices(2)
