import dataclasses

import jax
import numpy as np
from flax import nnx

from teamsrl_jax.rl import (PolicyConfig, Rollout, TRPOBatch, ValueConfig, ValueNet, fit_value, make_policy, preset,
                            rl_update, trpo_update, value_fit_init)


def test_rl_update_is_gae_then_value_fit_then_trpo_on_pre_fit_advantages(x64):
    T, N, D, A = 5, 3, 4, 3
    cfg = dataclasses.replace(
        preset("paper"),
        policy=PolicyConfig(kind="categorical", hidden=(8,), dtype="float64"),
        value=ValueConfig(hidden=(8,), dtype="float64", fit="adam", adam_epochs=2, minibatch_size=5, target="mc"),
    )
    rngs = nnx.Rngs(0)
    gp, pp = nnx.split(make_policy(cfg.policy, D, A, rngs=rngs))
    gv, vp = nnx.split(ValueNet(D, cfg.value, rngs=rngs))
    rng = np.random.default_rng(0)
    dones = np.zeros((T, N))
    dones[[1, 4], [0, 2]] = 1.0
    ro = Rollout(rng.normal(size=(T, N, D)), rng.integers(0, A, (T, N)), rng.random((T, N)), dones,
                 rng.normal(size=(N, D)))
    key = jax.random.key(3)
    opt = value_fit_init(cfg.value, vp)

    # the same by hand: advantages (lambda 0.97) and MC targets from a Python loop with the *pre-fit* values
    values = np.asarray(nnx.merge(gv, vp)(ro.obs))
    next_v, adv, ret = np.asarray(nnx.merge(gv, vp)(ro.last_obs)), np.zeros((T, N)), np.zeros((T, N))
    next_adv, next_ret = np.zeros(N), next_v
    for t in reversed(range(T)):
        nd = 1 - dones[t]
        adv[t] = ro.rewards[t] + 0.995 * next_v * nd - values[t] + 0.995 * 0.97 * nd * next_adv
        ret[t] = ro.rewards[t] + 0.995 * nd * next_ret
        next_v, next_adv, next_ret = values[t], adv[t], ret[t]
    obs = ro.obs.reshape(-1, D)

    @jax.jit  # both paths in one compilation
    def both():
        got = rl_update(gp, gv, cfg, pp, vp, opt, ro, key)
        want_v = fit_value(gv, cfg.value, vp, opt, obs, ret.reshape(-1), key)[0]
        want_p = trpo_update(gp, cfg.trpo, pp, TRPOBatch(obs, ro.actions.reshape(-1), adv.reshape(-1)))[0]
        return got, want_p, want_v

    (pp_new, vp_new, _, m), want_p, want_v = both()
    for got, want in ((pp_new, want_p), (vp_new, want_v)):
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert bool(m["accepted"]) and float(m["value_loss_after"]) < float(m["value_loss_before"])
