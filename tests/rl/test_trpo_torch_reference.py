"""The jitted TRPO step against an independent PyTorch float64 reference of the same algorithm.

The reference follows ikostrikov/pytorch-trpo (the original TeaMs-RL's copy): loss = -mean(A * ratio),
Fisher-vector product by double backprop of the mean KL(old || new) plus damping, its conjugate-gradient loop,
step ``stepdir / sqrt(0.5 s.Fs / max_kl)``, and its backtracking line search; optionally sb3-contrib's
acceptance rule (objective up and KL below the bound, shrink 0.8). Written here, from the formulas.
"""
import dataclasses
import math

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from teamsrl_jax.rl.config import PolicyConfig, TRPOConfig, preset
from teamsrl_jax.rl.networks import make_policy
from teamsrl_jax.rl.trpo import TRPOBatch, make_trpo_update


def torch_forward(p, obs, n_hidden, activation):
    act = torch.relu if activation == "relu" else torch.tanh
    h = obs
    for i in range(n_hidden):
        h = act(h @ p[f"h{i}.kernel"] + p[f"h{i}.bias"])
    return h @ p["out.kernel"] + p["out.bias"]


def torch_dist(p, obs, kind, n_hidden, activation):
    """Logits, or the Gaussian's (mean, log_std)."""
    out = torch_forward(p, obs, n_hidden, activation)
    return (out,) if kind == "categorical" else (out, p["log_std"].expand_as(out))


def torch_log_prob_and_kl(new, old, actions):
    """Per-sample log-prob of ``actions`` under ``new`` and KL(old || new)."""
    if len(new) == 1:
        logp_all, old_logp_all = torch.log_softmax(new[0], -1), torch.log_softmax(old[0], -1)
        kl = (old_logp_all.exp() * (old_logp_all - logp_all)).sum(-1)
        return logp_all.gather(1, actions[:, None])[:, 0], kl
    (mean, log_std), (mean0, log_std0) = new, old
    std = log_std.exp()
    x = torch.nn.functional.one_hot(actions, mean.shape[-1]).double()  # the executed one-hot vector
    logp = (-(x - mean).pow(2) / (2 * std.pow(2)) - 0.5 * math.log(2 * math.pi) - log_std).sum(1)
    kl = (log_std - log_std0 + (log_std0.exp().pow(2) + (mean0 - mean).pow(2)) / (2.0 * std.pow(2)) - 0.5).sum(1)
    return logp, kl


def conjugate_gradients(avp, b, nsteps, residual_tol):
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rdotr = torch.dot(r, r)
    for _ in range(nsteps):
        _avp = avp(p)
        alpha = rdotr / torch.dot(p, _avp)
        x += alpha * p
        r -= alpha * _avp
        new_rdotr = torch.dot(r, r)
        p = r + new_rdotr / rdotr * p
        rdotr = new_rdotr
        if rdotr < residual_tol:
            break
    return x


def torch_trpo_step(p, obs, actions, adv, kind, n_hidden, activation, cfg: TRPOConfig):
    names = list(p)
    params = [p[n].clone().requires_grad_(True) for n in names]
    as_dict = lambda ps: dict(zip(names, ps))
    dist = lambda ps: torch_dist(as_dict(ps), obs, kind, n_hidden, activation)
    old = tuple(t.detach() for t in dist(params))
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    fixed_log_prob = torch_log_prob_and_kl(old, old, actions)[0]

    def get_loss(ps):
        logp = torch_log_prob_and_kl(dist(ps), old, actions)[0]
        return -(adv * torch.exp(logp - fixed_log_prob)).mean()

    def get_kl(ps):
        return torch_log_prob_and_kl(dist(ps), old, actions)[1].mean()

    loss = get_loss(params)
    loss_grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])

    def fvp(v):
        grads = torch.autograd.grad(get_kl(params), params, create_graph=True)
        kl_v = (torch.cat([g.reshape(-1) for g in grads]) * v).sum()
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(kl_v, params)]) + v * cfg.damping

    stepdir = conjugate_gradients(fvp, -loss_grad, cfg.cg_iters, cfg.cg_tol)
    shs = 0.5 * (stepdir * fvp(stepdir)).sum()
    lm = torch.sqrt(shs / cfg.max_kl)
    fullstep = stepdir / lm
    expected_improve_rate = (-loss_grad * stepdir).sum() / lm

    x0 = torch.cat([t.detach().reshape(-1) for t in params])
    sizes = [t.numel() for t in params]

    def unflat(x):
        return [c.reshape(t.shape) for c, t in zip(torch.split(x, sizes), params)]

    fval = loss.detach()
    accepted_frac = 0.0
    x = x0
    for k in range(cfg.line_search_steps):
        stepfrac = cfg.backtrack**k
        xnew = x0 + stepfrac * fullstep
        with torch.no_grad():
            newfval = get_loss(unflat(xnew))
            kl = get_kl(unflat(xnew))
        actual = (fval - newfval).item()
        if cfg.accept == "ratio":  # ikostrikov
            ok = actual / (expected_improve_rate * stepfrac).item() > cfg.accept_ratio and actual > 0
        else:  # sb3-contrib
            ok = actual > 0
        if ok and kl.item() <= cfg.kl_slack * cfg.max_kl:
            x, accepted_frac = xnew, stepfrac
            break
    return dict(zip(names, unflat(x))), accepted_frac


def jax_to_named(params):
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        if keys[0] == "log_std":
            out["log_std"] = leaf
        elif keys[1] == "hidden":
            out[f"h{keys[2]}.{keys[3]}"] = leaf
        else:
            out[f"out.{keys[2]}"] = leaf
    return {k: torch.from_numpy(np.array(v)) for k, v in out.items()}


PAPER = preset("paper")
SB3_POLICY = PolicyConfig(kind="categorical", hidden=(64, 64), activation="tanh", out_scale=1.0, dtype="float64")
SB3_TRPO = TRPOConfig(cg_iters=15, backtrack=0.8, accept="improve", kl_slack=1.0)
# name: (policy config, TRPO config, obs dim, actions, batch, the accepted step fraction)
CASES = {
    # the paper preset: Gaussian-argmax policy, ReLU 6-64-64-6, 6 transitions, ikostrikov's rule, no KL test
    "paper": (PAPER.policy, PAPER.trpo, 6, 6, 6, 1.0),
    # a trust region so large that the full step fails ikostrikov's ratio test: one backtrack to 0.5
    "paper_backtracks": (PAPER.policy, dataclasses.replace(PAPER.trpo, max_kl=3.0), 6, 6, 6, 0.5),
    # sb3's variant on a CartPole-sized categorical policy (CG 15, shrink 0.8); a tight KL test forces 0.8^3
    "sb3_kl_bound": (SB3_POLICY, dataclasses.replace(SB3_TRPO, max_kl=0.05, kl_slack=0.2), 4, 2, 256, 0.8**3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_jitted_update_matches_torch_float64(x64, case):
    pcfg, tcfg, obs_dim, num_actions, batch, want_frac = CASES[case]
    policy = make_policy(pcfg, obs_dim, num_actions, rngs=nnx.Rngs(3))
    graphdef, params = nnx.split(policy)
    rng = np.random.default_rng(7)
    obs = rng.normal(size=(batch, obs_dim))
    actions = rng.integers(0, num_actions, size=batch)
    adv = rng.normal(size=batch) + 0.3 * obs[:, 0]
    new, metrics = make_trpo_update(graphdef, tcfg)(params, TRPOBatch(obs, actions, adv))

    ref, frac = torch_trpo_step(jax_to_named(params), torch.from_numpy(obs), torch.from_numpy(actions),
                                torch.from_numpy(adv), pcfg.kind, len(pcfg.hidden), pcfg.activation, tcfg)
    assert frac == pytest.approx(want_frac) and bool(metrics["accepted"])
    assert float(metrics["step_fraction"]) == pytest.approx(frac)
    got, old = jax_to_named(new), jax_to_named(params)
    moved = max(float((got[k] - old[k]).abs().max()) for k in got)
    assert moved > 1e-3  # the step is not trivially zero
    for name in ref:
        np.testing.assert_allclose(got[name].numpy(), ref[name].detach().numpy(), rtol=0, atol=1e-8, err_msg=name)
