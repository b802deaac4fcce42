import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teamsrl_jax.rl.config import preset
from teamsrl_jax.rl.networks import ValueNet, make_policy

from .conftest import no_x64


def test_paper_policy_shapes_init_and_dtype(x64):
    cfg = preset("paper")
    policy = make_policy(cfg.policy, 6, 6, rngs=nnx.Rngs(0))
    params = nnx.state(policy, nnx.Param)
    leaves = jax.tree_util.tree_leaves(params)
    assert sum(x.size for x in leaves) == 6 * 64 + 64 + 64 * 64 + 64 + 64 * 6 + 6 + 6
    assert all(x.dtype == jnp.float64 for x in leaves)
    first, out = policy.net.hidden[0], policy.net.out
    assert float(jnp.max(jnp.abs(first.kernel[...]))) <= 1 / np.sqrt(6)
    assert float(jnp.max(jnp.abs(first.bias[...]))) > 0.05  # torch init: biases are not zero
    assert float(jnp.max(jnp.abs(out.kernel[...]))) <= 0.1 / 8.0
    np.testing.assert_array_equal(out.bias[...], 0.0)
    np.testing.assert_array_equal(policy.log_std[...], 0.0)
    dist = policy(jnp.zeros((3, 6)))
    assert dist.mean.shape == (3, 6) and dist.log_std.shape == (3, 6)
    # +0.3 on index 0 (means ~0, std 1): P(action 0) is about 0.236 (NumPy Monte Carlo), not 1/6
    actions = policy.act(jnp.zeros((8000, 6)), jax.random.key(0))
    z = np.random.default_rng(0).normal(size=(400000, 6)) + np.asarray(dist.mean[0]) + np.eye(6)[0] * 0.3
    assert float(jnp.mean(actions == 0)) == pytest.approx(np.mean(z.argmax(-1) == 0), abs=0.015)


def test_categorical_and_value_shapes():
    cfg = preset("default")
    policy = make_policy(cfg.policy, 4, 3, rngs=nnx.Rngs(0))
    value = ValueNet(4, cfg.value, rngs=nnx.Rngs(1))
    obs = jnp.ones((2, 5, 4))
    assert policy(obs).logits.shape == (2, 5, 3)
    assert value(obs).shape == (2, 5)
    assert policy.act(obs, jax.random.key(0)).shape == (2, 5)
    assert policy.act(obs, None, deterministic=True, bias=jnp.array([0.0, 0.0, 100.0])).tolist() == [[2] * 5] * 2


def test_float64_without_x64_is_a_clear_error():
    with no_x64(), pytest.raises(ValueError, match="jax_enable_x64"):
        make_policy(preset("paper").policy, 6, 6, rngs=nnx.Rngs(0))
