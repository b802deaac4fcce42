import jax
import numpy as np

from teamsrl_jax.rl.gae import gae, normalize_advantages


def loop_gae(rewards, values, dones, last_value, gamma, lam):
    T = len(rewards)
    adv = np.zeros_like(values)
    next_value, next_adv = last_value, np.zeros_like(last_value)
    for t in reversed(range(T)):
        nd = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * nd - values[t]
        adv[t] = delta + gamma * lam * nd * next_adv
        next_value, next_adv = values[t], adv[t]
    return adv, adv + values


def test_scan_equals_python_loop(x64):
    rng = np.random.default_rng(0)
    T, N = 37, 5
    rewards, values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    dones = (rng.random((T, N)) < 0.15).astype(np.float64)
    last = rng.normal(size=N)
    adv, ret = jax.jit(gae, static_argnames=("gamma", "lam"))(rewards, values, dones, last, gamma=0.99, lam=0.95)
    want_adv, want_ret = loop_gae(rewards, values, dones, last, 0.99, 0.95)
    np.testing.assert_allclose(adv, want_adv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ret, want_ret, rtol=1e-12, atol=1e-12)


def test_lambda_one_gives_the_original_discounted_returns(x64):
    # The original (ikostrikov main.py) regresses the value net on masked discounted returns.
    rng = np.random.default_rng(1)
    rewards, values = rng.random(12), rng.normal(size=12)
    dones = np.zeros(12)
    dones[[5, 11]] = 1.0
    returns, prev = np.zeros(12), 0.0
    for i in reversed(range(12)):
        prev = returns[i] = rewards[i] + 0.995 * prev * (1 - dones[i])
    _, ret = gae(rewards, values, dones, np.float64(123.0), gamma=0.995, lam=1.0)
    np.testing.assert_allclose(ret, returns, rtol=1e-12)


def test_normalize_advantages_uses_torch_std(x64):
    adv = np.array([1.0, 2.0, 4.0, 8.0])
    out = normalize_advantages(adv)
    np.testing.assert_allclose(out, (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8), rtol=1e-12)
