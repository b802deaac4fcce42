"""Typed configuration of the RL core, and its presets.

``RLConfig`` groups ``PolicyConfig``, ``ValueConfig`` and ``TRPOConfig`` plus the return/advantage settings.
Every field has a one-line docstring (read by :mod:`teamsrl_jax.rl.cli` for ``--help``). Bad values raise a
one-line ``ValueError`` that names the field, at construction time.

Presets are data: ``PRESETS["paper"]`` holds every constant of the original TeaMs-RL code (a copy of
ikostrikov/pytorch-trpo), ``PRESETS["default"]`` is ours, ``PRESETS["cartpole"]`` is tuned for the sanity
environment. ``preset(name)`` returns one; change fields with ``dataclasses.replace`` (validation runs again).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax

ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu")
INITS = ("orthogonal", "torch")
DTYPES = ("float32", "float64")


def _fail(cls: object, name: str, msg: str, value: object) -> None:
    raise ValueError(f"{type(cls).__name__}.{name} {msg}, got {value!r}")


def _check_choice(obj: object, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        _fail(obj, name, f"must be one of {', '.join(choices)}", value)


def _check_positive(obj: object, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
        if not number or not (value >= 0 if allow_zero else value > 0):
            _fail(obj, name, "must be >= 0" if allow_zero else "must be > 0", value)


def _check_net(obj: object) -> None:
    if not isinstance(obj.hidden, tuple) or not all(isinstance(h, int) and h > 0 for h in obj.hidden):
        _fail(obj, "hidden", "must be a tuple of positive ints", obj.hidden)
    _check_choice(obj, "activation", ACTIVATIONS)
    _check_choice(obj, "init", INITS)
    _check_choice(obj, "dtype", DTYPES)
    _check_positive(obj, "out_scale", allow_zero=True)


@dataclass(frozen=True)
class PolicyConfig:
    """The policy network and its action distribution."""

    kind: str = "categorical"
    """'categorical' (softmax over logits) or 'gaussian_argmax' (the paper's argmax of a Gaussian sample)."""
    hidden: tuple[int, ...] = (64, 64)
    """Widths of the hidden layers of the MLP trunk."""
    activation: str = "tanh"
    """Hidden-layer nonlinearity: relu, tanh, elu, gelu or silu."""
    init: str = "orthogonal"
    """'orthogonal' (gain sqrt 2 in the trunk, zero biases) or 'torch' (PyTorch nn.Linear's uniform default)."""
    out_scale: float = 0.01
    """Factor on the output layer's initial weights; its bias starts at 0."""
    log_std_init: float = 0.0
    """Initial state-independent log standard deviation (gaussian_argmax only)."""
    action_bias: tuple[float, ...] = ()
    """Added when acting (to the Gaussian sample before the argmax, or to the logits), zero-padded; paper: (0.3,)."""
    dtype: str = "float32"
    """Parameter and compute dtype; 'float64' needs jax_enable_x64."""

    def __post_init__(self) -> None:
        _check_choice(self, "kind", ("categorical", "gaussian_argmax"))
        _check_net(self)
        if not all(isinstance(b, (int, float)) and math.isfinite(b) for b in self.action_bias):
            _fail(self, "action_bias", "must be a tuple of finite floats", self.action_bias)


@dataclass(frozen=True)
class ValueConfig:
    """The value network and how it is fitted to the return targets."""

    hidden: tuple[int, ...] = (64, 64)
    """Widths of the hidden layers of the MLP trunk."""
    activation: str = "tanh"
    """Hidden-layer nonlinearity: relu, tanh, elu, gelu or silu."""
    init: str = "orthogonal"
    """'orthogonal' (gain sqrt 2 in the trunk, zero biases) or 'torch' (PyTorch nn.Linear's uniform default)."""
    out_scale: float = 1.0
    """Factor on the output layer's initial weights; its bias starts at 0."""
    dtype: str = "float32"
    """Parameter and compute dtype; 'float64' needs jax_enable_x64."""
    fit: str = "lbfgs"
    """'lbfgs' (full batch, restarted at every fit, as the paper) or 'adam' (minibatch epochs, state kept)."""
    lbfgs_iters: int = 25
    """L-BFGS iterations per fit (scipy's maxiter in the original)."""
    lbfgs_memory: int = 10
    """L-BFGS history length (scipy's default m=10)."""
    l2: float = 1e-3
    """Weight of the L2 penalty sum(theta**2) added to the mean squared error."""
    adam_lr: float = 1e-3
    """Adam learning rate."""
    adam_epochs: int = 10
    """Passes over the batch per fit with Adam."""
    minibatch_size: int = 128
    """Adam minibatch size; 0 or more than the batch means full batch. A remainder is dropped per epoch."""
    target: str = "gae"
    """Regression target: 'gae' (advantages + values) or 'mc' (discounted returns, lambda = 1, as the paper)."""

    def __post_init__(self) -> None:
        _check_net(self)
        _check_choice(self, "fit", ("lbfgs", "adam"))
        _check_choice(self, "target", ("gae", "mc"))
        _check_positive(self, "lbfgs_iters", "lbfgs_memory", "adam_lr", "adam_epochs")
        _check_positive(self, "l2", "minibatch_size", allow_zero=True)


@dataclass(frozen=True)
class TRPOConfig:
    """The TRPO policy step: natural gradient by conjugate gradient, then a backtracking line search."""

    max_kl: float = 0.01
    """Trust-region radius delta on the mean KL(old || new)."""
    damping: float = 0.1
    """Added times the identity to the Fisher matrix in every Fisher-vector product."""
    fvp: str = "gauss_newton"
    """Fisher-vector product: 'gauss_newton' (J^T M J by jvp/vjp) or 'hessian' (double backprop of the KL)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations (fixed count; iterations after convergence are skipped)."""
    cg_tol: float = 1e-10
    """CG stops once the squared residual norm falls below this."""
    line_search_steps: int = 10
    """Step fractions tried: backtrack**k for k = 0 .. line_search_steps-1."""
    backtrack: float = 0.5
    """Shrink factor of the line search (ikostrikov 0.5, sb3 and Spinning Up 0.8)."""
    accept: str = "ratio"
    """'ratio' (ikostrikov: actual/expected improvement > accept_ratio, actual > 0) or 'improve' (sb3: actual > 0)."""
    accept_ratio: float = 0.1
    """Least ratio of actual to expected (linearised) improvement under the 'ratio' rule."""
    kl_slack: float = 1.5
    """A step is accepted only if its KL <= kl_slack * max_kl; inf disables the test (the original has none)."""
    normalize_advantages: bool = True
    """Standardise advantages over the batch: (A - mean) / (std + 1e-8), std with ddof=1 as torch."""

    def __post_init__(self) -> None:
        _check_positive(self, "max_kl", "cg_iters", "line_search_steps", "kl_slack")
        _check_positive(self, "damping", "cg_tol", "accept_ratio", allow_zero=True)
        if not 0.0 < self.backtrack < 1.0:
            _fail(self, "backtrack", "must be in (0, 1)", self.backtrack)
        _check_choice(self, "accept", ("ratio", "improve"))
        _check_choice(self, "fvp", ("gauss_newton", "hessian"))


@dataclass(frozen=True)
class RLConfig:
    """Everything the RL core needs: networks, value fit, TRPO step, returns and observation normalising."""

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Policy network and action distribution."""
    value: ValueConfig = field(default_factory=ValueConfig)
    """Value network and its fit."""
    trpo: TRPOConfig = field(default_factory=TRPOConfig)
    """TRPO policy step."""
    gamma: float = 0.99
    """Discount factor."""
    lam: float = 0.95
    """GAE lambda."""
    normalize_obs: bool = False
    """Pass observations through the running mean/std normaliser."""
    obs_clip: float = 5.0
    """Clip normalised observations to [-obs_clip, obs_clip]."""
    seed: int = 0
    """Seed of parameter initialisation and sampling."""

    def __post_init__(self) -> None:
        for name in ("gamma", "lam"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                _fail(self, name, "must be in [0, 1]", value)
        _check_positive(self, "obs_clip")
        if not isinstance(self.seed, int) or self.seed < 0:
            _fail(self, "seed", "must be a non-negative int", self.seed)

    def enable_x64_if_needed(self) -> None:
        """Switch on ``jax_enable_x64`` when a network is float64 (the paper preset, as the original); JAX needs
        the flag before any array is made."""
        if "float64" in (self.policy.dtype, self.value.dtype):
            jax.config.update("jax_enable_x64", True)


PRESETS: dict[str, RLConfig] = {
    # Every constant of the original (REFERENCE.md section 2): ikostrikov/pytorch-trpo with a ReLU MLP,
    # the Gaussian-argmax policy, float64, no KL test in the line search, MC returns as value targets.
    "paper": RLConfig(
        policy=PolicyConfig(
            kind="gaussian_argmax", hidden=(64, 64), activation="relu", init="torch", out_scale=0.1,
            log_std_init=0.0, action_bias=(0.3,), dtype="float64",
        ),
        value=ValueConfig(
            hidden=(64, 64), activation="relu", init="torch", out_scale=0.1, dtype="float64", fit="lbfgs",
            lbfgs_iters=25, l2=1e-3, target="mc",
        ),
        trpo=TRPOConfig(
            max_kl=0.01, damping=0.1, fvp="hessian", cg_iters=10, cg_tol=1e-10, line_search_steps=10, backtrack=0.5,
            accept="ratio", accept_ratio=0.1, kl_slack=math.inf, normalize_advantages=True,
        ),
        gamma=0.995, lam=0.97, normalize_obs=True, obs_clip=5.0, seed=543,
    ),
    # Ours: a categorical policy for discrete operations, a KL-checked line search, GAE value targets.
    "default": RLConfig(),
    # Tuned on the pure-JAX CartPole (teamsrl_jax.rl.cartpole): 8 of 8 seeds at 500 by ~20k steps.
    "cartpole": RLConfig(
        value=ValueConfig(fit="adam", adam_lr=3e-3, adam_epochs=20, minibatch_size=128, l2=0.0),
        trpo=TRPOConfig(max_kl=0.01, backtrack=0.8),
        gamma=0.99, lam=0.98, normalize_obs=True,
    ),
}


def preset(name: str) -> RLConfig:
    """The preset called ``name`` ('paper', 'default' or 'cartpole')."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]

