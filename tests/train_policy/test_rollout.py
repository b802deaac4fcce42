"""Pipelined rollouts: the same transitions as stepping all chains together, whatever the threads' timing."""

from __future__ import annotations

import json
import random
import threading
import time

import numpy as np
import pytest

from teamsrl_jax.backends.base import Backend
from teamsrl_jax.env.simulator import SimulatedBackend
from teamsrl_jax.env.environment import EnvConfig, InstructionEnv
from teamsrl_jax.rl import preset as rl_preset
from teamsrl_jax.train_policy.agent import Agent
from teamsrl_jax.train_policy.rollout import collect, group_bounds


class Jittery(Backend):
    """Forwards to ``inner`` after a random sleep, and logs (thread, role, batch size) of every call."""

    def __init__(self, inner: Backend, max_sleep_s: float, seed: int):
        self.inner, self.name, self.model, self.accounting = inner, inner.name, inner.model, inner.accounting
        self.max_sleep_s, self.rng, self.calls, self.lock = max_sleep_s, random.Random(seed), [], threading.Lock()

    def generate(self, prompts, params, role, sample_indices=None):
        with self.lock:
            delay = self.rng.uniform(0, self.max_sleep_s)
            self.calls.append((threading.current_thread().name, role, len(prompts)))
        time.sleep(delay)
        return self.inner.generate(prompts, params, role, sample_indices)


class RowPolicy:
    """A stand-in agent whose action for a chain depends on that chain's observation only (not on the batch)."""

    def act(self, obs):
        return (np.abs(obs).sum(axis=1) * 997).astype(np.int64) % 6, obs


def make_env(backend, num_chains=8, **overrides):
    config = EnvConfig.from_preset("default", num_chains=num_chains, horizon=3, seed=5, **overrides)
    return InstructionEnv(config, backend)


def test_group_bounds_cover_the_chains_evenly():
    assert group_bounds(8, 2) == [(0, 4), (4, 8)]
    assert group_bounds(7, 3) == [(0, 2), (2, 4), (4, 7)]
    assert group_bounds(2, 5) == [(0, 1), (1, 2)]
    with pytest.raises(ValueError, match="groups"):
        group_bounds(4, 0)


def test_pipelined_groups_give_exactly_the_sequential_rollout():
    """With a batch-independent policy, 3 groups on threads (with random call delays) give the same
    transitions, records, novelty memory and cache keys as all chains stepped together."""
    results = []
    for groups, sleep in ((1, 0.0), (3, 0.02)):
        backend = Jittery(SimulatedBackend(seed=1), sleep, seed=groups)
        env = make_env(backend, num_chains=10)
        rollout, stats = collect(env, RowPolicy(), episodes=2, groups=groups)
        results.append((rollout, stats, env.pop_records(), env.state_dict(), backend))
    seq, seq_stats, seq_records, seq_state, seq_backend = results[0]
    pipe, pipe_stats, pipe_records, pipe_state, backend = results[1]
    for a, b in zip(seq, pipe):
        np.testing.assert_array_equal(a, b)
    assert seq_stats == pipe_stats and seq_stats["kept_fraction"] > 0.5
    # what the 2 x 3 x 10 rewrites became: kept (each reviewed) or eliminated with a reason
    assert seq_stats["rewrites"] == 60 == seq_stats["reviews"] + sum(seq_stats["eliminated"].values())
    assert seq_stats["kept_fraction"] == seq_stats["reviews"] / 60
    assert seq_stats["scored_by"] == {"logprobs": 0, "text": seq_stats["reviews"]}  # not asked for logprobs
    assert seq_stats["review_scored_fraction"] == 1.0
    assert json.dumps(seq_records) == json.dumps(pipe_records)  # (JSON: a NaN score compares equal)
    np.testing.assert_array_equal(seq_state["novelty"]["bits"], pipe_state["novelty"]["bits"])
    assert seq_state["texts"] == pipe_state["texts"]
    # one call per role per step per group, made from worker threads, never from the main thread
    roles = [(role, n) for _, role, n in backend.calls]
    assert len(roles) == 2 * 3 * 2 * 3 and sum(n for r, n in roles if r == "instructor") == 2 * 3 * 10
    assert all(name.startswith("rollout-llm") for name, _, _ in backend.calls)
    assert seq_backend.inner.accounting.to_dict() == backend.inner.accounting.to_dict()


def test_repeated_prompts_across_groups_keep_distinct_sample_indices():
    """Chains with the same text and action in different groups are distinct samples, as in one batch."""
    from teamsrl_jax.env.seeds import SeedPool

    seen = {}
    for groups in (1, 2):
        calls = []

        class Recording(Backend):
            name, model = "simulated", "simulated-v1"

            def __init__(self):
                self.inner = SimulatedBackend()
                self.accounting = self.inner.accounting

            def generate(self, prompts, params, role, sample_indices=None):
                calls.append((role, list(prompts), list(sample_indices)))
                return self.inner.generate(prompts, params, role, sample_indices)

        env = InstructionEnv(EnvConfig.from_preset("default", num_chains=6, horizon=1), Recording(),
                             seeds=SeedPool(["Explain tides."]))
        collect(env, type("Fixed", (), {"act": lambda self, obs: (np.zeros(len(obs), np.int64), obs)})(),
                episodes=1, groups=groups)
        seen[groups] = [(p, i) for role, prompts, idx in calls if role == "instructor" for p, i in zip(prompts, idx)]
    assert [i for _, i in seen[1]] == [0, 1, 2, 3, 4, 5] and seen[2] == seen[1]


def test_real_agent_rollout_is_deterministic_under_thread_timing():
    """The agent acts group by group in a fixed order, so random call delays change nothing."""
    agent = Agent(rl_preset("default"), obs_dim=make_env(SimulatedBackend()).obs_dim, num_actions=6)
    initial, outs = agent.state, []
    for seed in (0, 1):
        agent.load_state(initial)
        env = make_env(Jittery(SimulatedBackend(), 0.01, seed=seed))
        outs.append(collect(env, agent, episodes=1, groups=2))
    for a, b in zip(outs[0][0], outs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert outs[0][1] == outs[1][1]


def test_out_of_order_groups_are_refused():
    env = make_env(SimulatedBackend())
    env.reset()
    second = env.step_chains(4, 8, np.zeros(4, np.int64))
    with pytest.raises(RuntimeError, match="chain order"):
        next(second)  # group [4, 8) cannot make its instructor call before group [0, 4) made its own
