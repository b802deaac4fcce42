"""RL core: policy/value networks (flax.nnx), observation normaliser, GAE, and a jit-compiled TRPO step.

Pure functions on ``(graphdef, params)`` pairs from ``nnx.split``; configs are frozen dataclasses with two
presets (``paper``: the original TeaMs-RL constants; ``default``: ours). See each module's docstring:
``config``, ``distributions``, ``networks``, ``normalizer``, ``gae``, ``trpo``, ``value_fit``, ``shuffle`` (cheap
random permutations for the minibatches), ``update`` (one learning step on a rollout of N chains x T steps: GAE,
value fit, TRPO) and ``concurrent`` (the TRPO step and the value fit at once on two CPU cores); the sanity
environment ``cartpole_env`` and its trainer ``cartpole`` (``python -m teamsrl_jax.rl.cartpole``); ``cli`` turns
a config dataclass into command-line flags.
"""

from teamsrl_jax.rl.config import PRESETS, PolicyConfig, RLConfig, TRPOConfig, ValueConfig, preset
from teamsrl_jax.rl.distributions import Categorical, OneHotGaussian
from teamsrl_jax.rl.gae import gae, normalize_advantages
from teamsrl_jax.rl.networks import CategoricalPolicy, GaussianArgmaxPolicy, ValueNet, make_policy
from teamsrl_jax.rl.normalizer import RunningNorm, norm_apply, norm_init, norm_update
from teamsrl_jax.rl.trpo import (TRPOBatch, conjugate_gradient, line_search, make_fvp, make_gn_fvp, make_trpo_update,
                                 trpo_update)
from teamsrl_jax.rl.update import Rollout, advantages_and_targets, rl_update
from teamsrl_jax.rl.value_fit import fit_value, make_value_fit, value_fit_init, value_loss

__all__ = [
    "PRESETS", "PolicyConfig", "RLConfig", "TRPOConfig", "ValueConfig", "preset",
    "Categorical", "OneHotGaussian",
    "gae", "normalize_advantages",
    "CategoricalPolicy", "GaussianArgmaxPolicy", "ValueNet", "make_policy",
    "RunningNorm", "norm_apply", "norm_init", "norm_update",
    "TRPOBatch", "conjugate_gradient", "line_search", "make_fvp", "make_gn_fvp", "make_trpo_update", "trpo_update",
    "fit_value", "make_value_fit", "value_fit_init", "value_loss",
    "Rollout", "advantages_and_targets", "rl_update",
]
