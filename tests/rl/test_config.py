import math

import pytest

from teamsrl_jax.rl.cartpole import CartPoleConfig
from teamsrl_jax.rl.cli import field_docs, parse_config
from teamsrl_jax.rl.config import PRESETS, PolicyConfig, RLConfig, TRPOConfig, ValueConfig, preset


@pytest.mark.parametrize("make, field", [
    (lambda: TRPOConfig(max_kl=0.0), "TRPOConfig.max_kl"),
    (lambda: TRPOConfig(cg_iters=-1), "TRPOConfig.cg_iters"),
    (lambda: TRPOConfig(backtrack=1.0), "TRPOConfig.backtrack"),
    (lambda: TRPOConfig(accept="sometimes"), "TRPOConfig.accept"),
    (lambda: TRPOConfig(max_kl=math.nan), "TRPOConfig.max_kl"),
    (lambda: TRPOConfig(damping="0.1"), "TRPOConfig.damping"),
    (lambda: PolicyConfig(activation="swish"), "PolicyConfig.activation"),
    (lambda: PolicyConfig(kind="beta"), "PolicyConfig.kind"),
    (lambda: PolicyConfig(hidden=(64, 0)), "PolicyConfig.hidden"),
    (lambda: ValueConfig(fit="sgd"), "ValueConfig.fit"),
    (lambda: ValueConfig(lbfgs_iters=0), "ValueConfig.lbfgs_iters"),
    (lambda: RLConfig(gamma=1.5), "RLConfig.gamma"),
    (lambda: preset("nope"), "unknown preset 'nope'"),
    (lambda: CartPoleConfig(num_envs=0), "CartPoleConfig.num_envs"),
])
def test_bad_values_give_one_line_errors(make, field):
    with pytest.raises(ValueError) as err:
        make()
    assert field in str(err.value) and "\n" not in str(err.value)


def test_paper_preset_holds_the_original_constants():
    p = preset("paper")
    assert (p.gamma, p.lam, p.seed, p.obs_clip) == (0.995, 0.97, 543, 5.0)
    assert (p.trpo.max_kl, p.trpo.damping, p.trpo.cg_iters, p.trpo.cg_tol) == (0.01, 0.1, 10, 1e-10)
    assert (p.trpo.line_search_steps, p.trpo.backtrack, p.trpo.accept, p.trpo.accept_ratio) == (10, 0.5, "ratio", 0.1)
    assert (p.value.fit, p.value.lbfgs_iters, p.value.l2, p.value.target) == ("lbfgs", 25, 1e-3, "mc")
    assert (p.policy.kind, p.policy.hidden, p.policy.activation, p.policy.dtype) == (
        "gaussian_argmax", (64, 64), "relu", "float64")
    assert p.policy.action_bias == (0.3,) and p.policy.out_scale == 0.1
    assert set(PRESETS) >= {"paper", "default"}


def test_cli_flags_and_errors(capsys):
    cfg = parse_config(CartPoleConfig, ["--seed", "3", "--max-kl", "0.02", "--no-progress", "--num-envs", "4"])
    assert (cfg.seed, cfg.max_kl, cfg.progress, cfg.num_envs) == (3, 0.02, False, 4)
    assert cfg.rl_config().trpo.max_kl == 0.02 and cfg.rl_config().seed == 3
    assert "Parallel CartPole chains." == field_docs(CartPoleConfig)["num_envs"]
    with pytest.raises(SystemExit):
        parse_config(CartPoleConfig, ["--max-kl", "-1"])
    assert "TRPOConfig.max_kl must be > 0, got -1.0" in capsys.readouterr().err
