"""One TRPO update, side by side: our jitted step (JAX) against sb3-contrib's ``TRPO.train()`` (PyTorch).

    python benchmarks/trpo_update.py [--quick] [--json] [--repeats 30] [--threads 2]

Both sides do the same work on the same random batch: a categorical policy and a value net, each an MLP with
two tanh hidden layers of 64 (sb3's default ``MlpPolicy``), float32; advantage normalisation; the TRPO policy
step with CG 15 iterations, damping 0.1, max KL 0.01 and at most 10 line-search steps at 0.8^k (sb3's rule);
then the critic: ``n_critic_updates=10`` Adam epochs over minibatches of 128 (ours: ``ValueConfig(fit='adam',
adam_epochs=10, minibatch_size=128)``). Sizes: CartPole (obs 4, 2 actions, batch 2048) and the paper's
(obs 6, 6 actions, 6 transitions, CG 10, critic minibatch = the batch). A third row times our ``paper``
preset step (Gaussian-argmax policy, float64, L-BFGS 25 value fit), which sb3 cannot express.

Ours runs in two layouts, both timed: two CPU devices, one per core, with the policy step and the critic at once
(:class:`teamsrl_jax.rl.concurrent.ConcurrentUpdate`; they only read the batch), and one device running the two
jitted functions one after the other. JAX dispatches synchronously (``configure_cpu_devices``).

Timing: median wall time of ``repeats`` updates after warm-up (compilation excluded), the calls taking turns round
by round, each from a fresh, consistent batch (sb3's stored old log-probs are recomputed before every call, outside
the timed region) and after a 20 ms pause, so that no call starts while torch's OpenMP workers still spin; JAX
results are waited for with ``block_until_ready``. PyTorch is timed with ``torch.set_num_threads(1)`` and with
``--threads`` (default: all cores, 2 here; ``--quick``: 1 only), and the faster is sb3's figure (on a busy machine
torch's thread pool can be several times slower than one thread); the speedup is that over the faster of ours.
With ``--json`` the last stdout line is one JSON object: ``jax_ms`` (the faster layout), ``sb3_ms``, ``speedup``
(batch 2048), each layout's time, ``paper_*`` for the paper size, and the sb3 times per thread count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from sb3_contrib import TRPO
from stable_baselines3.common.logger import configure

from teamsrl_jax.rl import (PolicyConfig, RLConfig, TRPOBatch, TRPOConfig, ValueConfig, ValueNet, make_policy,
                            preset, value_fit_init)
from teamsrl_jax.rl.concurrent import ConcurrentUpdate, available_cores, configure_cpu_devices


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    obs_dim: int
    num_actions: int
    batch: int
    cg_iters: int
    critic_minibatch: int


CARTPOLE = Case("cartpole", obs_dim=4, num_actions=2, batch=2048, cg_iters=15, critic_minibatch=128)
PAPER = Case("paper", obs_dim=6, num_actions=6, batch=6, cg_iters=10, critic_minibatch=6)


class OneHotEnv(gymnasium.Env):
    """Only for building sb3's model at the paper's sizes: obs = one-hot of the previous action."""

    def __init__(self, n: int):
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (n,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(n)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return np.eye(self.action_space.n, dtype=np.float32)[action], 1.0, False, False, {}


def random_batch(case: Case, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return dict(obs=rng.normal(size=(case.batch, case.obs_dim)).astype(np.float32),
                actions=rng.integers(0, case.num_actions, case.batch),
                advantages=rng.normal(size=case.batch).astype(np.float32),
                returns=rng.normal(size=case.batch).astype(np.float32))


def time_interleaved(calls: dict, repeats: int, warmup: int, settle_s: float = 0.02) -> dict[str, float]:
    """Median milliseconds per call for each ``name: (fn, prepare)``, the calls taking turns round by round so that
    a busy machine slows them alike; ``prepare()`` runs untimed before each ``fn()``, then a pause of ``settle_s``
    so that no call starts while the previous one's threads still spin (torch's OpenMP workers do, briefly)."""
    times = {name: [] for name in calls}
    for i in range(warmup + repeats):
        for name, (fn, prepare) in calls.items():
            prepare()
            time.sleep(settle_s)
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


# ----------------------------------------------------------------------------------------------- sb3-contrib


def sb3_model(case: Case):
    env = gymnasium.make("CartPole-v1") if case is CARTPOLE else OneHotEnv(case.num_actions)
    model = TRPO("MlpPolicy", env, n_steps=case.batch, batch_size=case.critic_minibatch, cg_max_steps=case.cg_iters,
                 cg_damping=0.1, line_search_shrinking_factor=0.8, line_search_max_iter=10, n_critic_updates=10,
                 learning_rate=1e-3, target_kl=0.01, device="cpu", seed=0)
    model.set_logger(configure(None, []))
    return model


def sb3_fill(model, data: dict[str, np.ndarray]) -> None:
    """Put ``data`` in the rollout buffer (already flattened), old log-probs and values from the current policy."""
    buf = model.rollout_buffer
    obs = torch.as_tensor(data["obs"])
    actions = torch.as_tensor(data["actions"])
    with torch.no_grad():
        values, log_prob, _ = model.policy.evaluate_actions(obs, actions)
    buf.observations = data["obs"].copy()
    buf.actions = data["actions"].astype(np.float32)[:, None]
    buf.values = values.numpy().reshape(-1, 1)
    buf.log_probs = log_prob.numpy().reshape(-1, 1)
    buf.advantages = data["advantages"][:, None].copy()
    buf.returns = data["returns"][:, None].copy()
    buf.full, buf.generator_ready = True, True


def sb3_call(case: Case, data, threads: int):
    """``(fn, prepare)``: ``model.train()`` on ``threads`` torch threads, and the untimed buffer refill."""
    model = sb3_model(case)

    def prepare():
        torch.set_num_threads(threads)
        sb3_fill(model, data)

    return model.train, prepare


# ----------------------------------------------------------------------------------------------------- ours


def jax_call(case: Case, data, pcfg=None, vcfg=None, tcfg=None, devices=None):
    """``(fn, prepare)`` for our update (:class:`ConcurrentUpdate` on ``devices``), compiled; every call starts from
    the same parameters, with the batch on the first device."""
    pcfg = pcfg or PolicyConfig(kind="categorical", hidden=(64, 64), activation="tanh")
    vcfg = vcfg or ValueConfig(hidden=(64, 64), activation="tanh", fit="adam", adam_lr=1e-3, adam_epochs=10,
                               minibatch_size=case.critic_minibatch, l2=0.0)
    tcfg = tcfg or TRPOConfig(max_kl=0.01, damping=0.1, cg_iters=case.cg_iters, line_search_steps=10, backtrack=0.8,
                              accept="improve", kl_slack=1.0)
    devices = devices or jax.local_devices()[:1]
    rngs = nnx.Rngs(0)
    gp, pp = nnx.split(make_policy(pcfg, case.obs_dim, case.num_actions, rngs=rngs))
    gv, vp = nnx.split(ValueNet(case.obs_dim, vcfg, rngs=rngs))
    update = ConcurrentUpdate(gp, gv, RLConfig(policy=pcfg, value=vcfg, trpo=tcfg), devices)
    dtype = jnp.dtype(pcfg.dtype)
    # The value state where it stays between updates (the second device when there are two).
    state = (jax.device_put(pp, devices[0]), *jax.device_put((vp, value_fit_init(vcfg, vp)), devices[-1]),
             jax.device_put(jax.random.key(0), devices[0]))
    batch = jax.device_put((TRPOBatch(jnp.asarray(data["obs"], dtype), jnp.asarray(data["actions"]),
                                      jnp.asarray(data["advantages"], dtype)), jnp.asarray(data["returns"], dtype)),
                           devices[0])

    def call():
        return jax.block_until_ready(update(state[0], state[1], state[2], *batch, state[3]))

    call()  # compile
    return call, (lambda: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="20 timed updates after 2 warm-up, sb3 at 1 thread only, no paper-preset row (< 60 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--repeats", type=int, default=None, help="timed updates per case (default 30; quick 20)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch threads besides 1 (default: all cores)")
    args = parser.parse_args()
    repeats = args.repeats or (20 if args.quick else 30)
    warmup = 2 if args.quick else 3
    thread_counts = [1] if args.quick else sorted({1, args.threads})

    num_devices = configure_cpu_devices(min(2, len(available_cores())))
    devices = jax.local_devices()
    ours = {"ours": devices[:2], "one": devices[:1]}  # at once on two devices; one after the other on one
    rows, sb3_by_threads = {}, {}
    for case in (CARTPOLE, PAPER):
        data = random_batch(case)
        calls = {**{k: jax_call(case, data, devices=d) for k, d in ours.items()},
                 **{t: sb3_call(case, data, t) for t in thread_counts}}
        ms = time_interleaved(calls, repeats, warmup)
        sb3_by_threads[case.name] = {t: ms[t] for t in thread_counts}
        rows[case.name] = (ms["ours"], ms["one"], min(sb3_by_threads[case.name].values()))
    paper_preset = None
    if not args.quick:  # its L-BFGS takes a while to compile
        with jax.enable_x64(True):
            paper = preset("paper")
            calls = {k: jax_call(PAPER, random_batch(PAPER), paper.policy, paper.value, paper.trpo, devices=d)
                     for k, d in ours.items()}
            ms = time_interleaved(calls, repeats, warmup)
            paper_preset = (ms["ours"], ms["one"])

    print(f"TRPO update (policy step + critic), median of {repeats} after {warmup} warm-up; {os.cpu_count()} CPU "
          f"cores, jax {jax.__version__} on {jax.default_backend()} ({num_devices} devices), torch {torch.__version__}")
    sb3_cols = "".join(f"{f'sb3 {t}thr (ms)':>15}" for t in thread_counts)
    print(f"{'case':<46}{'2 devices':>10}{'1 device':>10}{sb3_cols}{'speedup':>9}")
    for name, label in (("cartpole", "obs 4, batch 2048, CG 15, critic 10x16 Adam"),
                        ("paper", "obs 6, batch 6, CG 10, critic 10x1 Adam")):
        two, one, sb3 = rows[name]
        cols = "".join(f"{sb3_by_threads[name][t]:>15.2f}" for t in thread_counts)
        print(f"{label:<46}{two:>10.2f}{one:>10.2f}{cols}{sb3 / min(two, one):>8.1f}x")
    if paper_preset is not None:
        print(f"{'paper preset: f64, Gaussian-argmax, L-BFGS 25':<46}{paper_preset[0]:>10.2f}{paper_preset[1]:>10.2f}")
    print("ours (ms): 2 devices = policy step and critic at once on two CPU devices, one per core (ConcurrentUpdate);"
          " 1 device = one after the other. speedup = the faster sb3 column / the faster of ours")
    if args.json:
        (two, one, sb3_ms), (ptwo, pone, ps) = rows["cartpole"], rows["paper"]
        jax_ms, paper_ms = min(two, one), min(ptwo, pone)
        print(json.dumps(dict(jax_ms=round(jax_ms, 3), sb3_ms=round(sb3_ms, 3), speedup=round(sb3_ms / jax_ms, 2),
                              jax_two_devices_ms=round(two, 3), jax_one_device_ms=round(one, 3),
                              paper_jax_ms=round(paper_ms, 3), paper_sb3_ms=round(ps, 3),
                              paper_speedup=round(ps / paper_ms, 2), paper_jax_two_devices_ms=round(ptwo, 3),
                              paper_jax_one_device_ms=round(pone, 3),
                              paper_preset_jax_ms=paper_preset and round(min(paper_preset), 3), repeats=repeats,
                              devices=num_devices,
                              sb3_ms_by_threads={k: {str(t): round(v, 3) for t, v in d.items()}
                                                 for k, d in sb3_by_threads.items()})))


if __name__ == "__main__":
    main()
