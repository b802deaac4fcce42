"""Policy and value networks in flax.nnx.

Build with :func:`make_policy` / :class:`ValueNet`; call on observations of shape ``(..., obs_dim)``:

    policy = make_policy(cfg.policy, obs_dim, num_actions, rngs=nnx.Rngs(0))
    dist = policy(obs_BxD)                 # Categorical or OneHotGaussian (see distributions.py)
    actions_B = policy.act(obs_BxD, key)   # int actions, the configured action_bias applied
    logp_B = dist.log_prob(actions_B)
    value_B = ValueNet(obs_dim, cfg.value, rngs=nnx.Rngs(1))(obs_BxD)

For the pure-functional updates split a module into ``graphdef, params = nnx.split(module)`` and pass those.

``CategoricalPolicy``: MLP obs -> hidden -> A logits. ``GaussianArgmaxPolicy`` (the paper's): MLP obs -> 64 ->
64 -> A means (weights x0.1, bias 0 with ``init='torch', out_scale=0.1``) and a state-independent log-std
parameter, acting by argmax(sample + bias). ``ValueNet``: the same kind of trunk, one output.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from teamsrl_jax.rl.config import PolicyConfig, ValueConfig
from teamsrl_jax.rl.distributions import Categorical, OneHotGaussian

_ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "elu": jax.nn.elu, "gelu": jax.nn.gelu, "silu": jax.nn.silu}


def _dtype(name: str) -> jnp.dtype:
    if name == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype='float64' needs jax_enable_x64: call jax.config.update('jax_enable_x64', True) "
                         "or build inside `with jax.enable_x64(True):`")
    return jnp.dtype(name)


def _torch_uniform(fan_in: int):
    """PyTorch nn.Linear's default for weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def _linear(fan_in: int, fan_out: int, *, init: str, scale: float | None, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """A dense layer; ``scale=None`` marks a trunk layer, a float an output layer (weights x scale, bias 0)."""
    if init == "torch":
        base = _torch_uniform(fan_in)
        kernel_init = base if scale is None else (lambda k, s, d=dtype: scale * base(k, s, d))
        bias_init = base if scale is None else nnx.initializers.zeros
    else:
        kernel_init = nnx.initializers.orthogonal(math.sqrt(2.0) if scale is None else scale)
        bias_init = nnx.initializers.zeros
    return nnx.Linear(fan_in, fan_out, kernel_init=kernel_init, bias_init=bias_init,
                      param_dtype=dtype, dtype=dtype, rngs=rngs)


class MLP(nnx.Module):
    """Hidden layers followed by one output layer."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int, *, activation: str, init: str,
                 out_scale: float, dtype: str, rngs: nnx.Rngs):
        dt = _dtype(dtype)
        widths = (in_dim, *hidden)
        self.hidden = nnx.List([_linear(a, b, init=init, scale=None, dtype=dt, rngs=rngs)
                                for a, b in zip(widths[:-1], widths[1:])])
        self.out = _linear(widths[-1], out_dim, init=init, scale=out_scale, dtype=dt, rngs=rngs)
        self.activation = activation
        self.dtype = dt

    def __call__(self, x: jax.Array) -> jax.Array:
        act = _ACTIVATIONS[self.activation]
        x = jnp.asarray(x, self.dtype)
        for layer in self.hidden:
            x = act(layer(x))
        return self.out(x)


class _Policy(nnx.Module):
    action_bias: tuple[float, ...]

    def _bias(self, num_actions: int, bias: jax.Array | None) -> jax.Array | None:
        if bias is not None:
            return bias
        if not any(self.action_bias):
            return None
        return jnp.pad(jnp.asarray(self.action_bias), (0, num_actions - len(self.action_bias)))

    def act(self, obs: jax.Array, key: jax.Array, *, deterministic: bool = False,
            bias: jax.Array | None = None) -> jax.Array:
        """Integer actions for ``obs``; ``bias`` (shape ``(A,)``) overrides the configured action_bias."""
        dist = self(obs)
        bias = self._bias(self.num_actions, bias)
        return dist.mode(bias) if deterministic else dist.sample(key, bias)


class CategoricalPolicy(_Policy):
    """MLP logits over ``num_actions``; ``__call__`` returns a :class:`Categorical`."""

    def __init__(self, obs_dim: int, num_actions: int, cfg: PolicyConfig, *, rngs: nnx.Rngs):
        _check_sizes(obs_dim, num_actions, cfg)
        self.net = MLP(obs_dim, cfg.hidden, num_actions, activation=cfg.activation, init=cfg.init,
                       out_scale=cfg.out_scale, dtype=cfg.dtype, rngs=rngs)
        self.num_actions = num_actions
        self.action_bias = tuple(cfg.action_bias)

    def __call__(self, obs: jax.Array) -> Categorical:
        return Categorical(self.net(obs))


class GaussianArgmaxPolicy(_Policy):
    """The paper's policy: MLP means and a state-independent log-std; ``__call__`` returns a :class:`OneHotGaussian`."""

    def __init__(self, obs_dim: int, num_actions: int, cfg: PolicyConfig, *, rngs: nnx.Rngs):
        _check_sizes(obs_dim, num_actions, cfg)
        self.net = MLP(obs_dim, cfg.hidden, num_actions, activation=cfg.activation, init=cfg.init,
                       out_scale=cfg.out_scale, dtype=cfg.dtype, rngs=rngs)
        self.log_std = nnx.Param(jnp.full((num_actions,), cfg.log_std_init, _dtype(cfg.dtype)))
        self.num_actions = num_actions
        self.action_bias = tuple(cfg.action_bias)

    def __call__(self, obs: jax.Array) -> OneHotGaussian:
        mean = self.net(obs)
        return OneHotGaussian(mean, jnp.broadcast_to(self.log_std[...], mean.shape))


def _check_sizes(obs_dim: int, num_actions: int, cfg: PolicyConfig) -> None:
    if obs_dim < 1:
        raise ValueError(f"obs_dim must be >= 1, got {obs_dim}")
    if num_actions < 2:
        raise ValueError(f"num_actions must be >= 2, got {num_actions}")
    if len(cfg.action_bias) > num_actions:
        raise ValueError(f"PolicyConfig.action_bias has {len(cfg.action_bias)} entries for {num_actions} actions")


def make_policy(cfg: PolicyConfig, obs_dim: int, num_actions: int, *, rngs: nnx.Rngs) -> _Policy:
    """The policy that ``cfg.kind`` names."""
    cls = CategoricalPolicy if cfg.kind == "categorical" else GaussianArgmaxPolicy
    return cls(obs_dim, num_actions, cfg, rngs=rngs)


class ValueNet(nnx.Module):
    """State-value MLP: ``(..., obs_dim) -> (...)``."""

    def __init__(self, obs_dim: int, cfg: ValueConfig, *, rngs: nnx.Rngs):
        self.net = MLP(obs_dim, cfg.hidden, 1, activation=cfg.activation, init=cfg.init, out_scale=cfg.out_scale,
                       dtype=cfg.dtype, rngs=rngs)

    def __call__(self, obs: jax.Array) -> jax.Array:
        return self.net(obs)[..., 0]
