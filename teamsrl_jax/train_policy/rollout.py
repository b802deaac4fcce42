"""Rollouts with the LLM in the loop, pipelined: one group's backend calls overlap another group's CPU work.

A step of the environment is CPU work (policy, state features, elimination gates, parsing, rewards, novelty)
around two batched LLM calls (instructor, then reviewer). Stepping all N chains together leaves the server
idle during the CPU work. Here the chains are split into G contiguous groups that are stepped out of phase:

    group 0:  act+prompts | instructor ....... | gates | reviewer ....... | rewards+features+act | ...
    group 1:         act+prompts | instructor ....... | gates | reviewer ....... | rewards+features+act

All CPU work runs on the calling thread, in a fixed round-robin order (group 0, 1, ..., G-1, then group 0's
next phase, ...); only the blocking backend calls run on worker threads, one per group. So the result does
not depend on thread timing: every group's next phase starts only after its own call returned, and the
order in which phases run is fixed. The environment keeps the step itself identical to stepping all chains
at once (``InstructionEnv.step_chains``: sample indices and the novelty memory are counted in chain order).
What grouping does change is the policy's batches: each group acts on its own observations (its own
normaliser update and PRNG split, in the fixed order), so G is part of a run's configuration.

Each group makes one batched call per role per step; with a backend of C concurrent slots a group of at
least C chains keeps the server full while the other group's CPU work runs (``SimulatedBackend`` models
the slots as one pool shared by all callers, ``OpenAIBackend`` shares its concurrency limit across threads).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from teamsrl_jax.backends.base import Backend, Completion
from teamsrl_jax.env.environment import InstructionEnv, LLMRequest, run_step
from teamsrl_jax.env.reward import ELIMINATION_REASONS, SCORE_SOURCES
from teamsrl_jax.train_policy.agent import Agent, Rollout


def group_bounds(num_chains: int, groups: int) -> list[tuple[int, int]]:
    """``groups`` contiguous (start, stop) ranges covering the chains, sizes differing by at most one
    (fewer groups when there are fewer chains)."""
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    groups = min(groups, num_chains)
    edges = [num_chains * g // groups for g in range(groups + 1)]
    return list(zip(edges[:-1], edges[1:]))


class _Buffer:
    """The (T, N, ...) arrays of a rollout, filled group by group, and the counts of what the rewrites became."""

    def __init__(self, steps: int, chains: int):
        self.steps, self.chains = steps, chains
        self.obs: np.ndarray | None = None     # dtypes from the first group's: what the policy produced
        self.actions: np.ndarray | None = None
        self.rewards = np.zeros((steps, chains), np.float32)
        self.dones = np.zeros((steps, chains), bool)
        self.kept = np.zeros((steps, chains), np.float32)
        self.eliminated: Counter = Counter()  # reason -> rewrites
        self.scored_by: Counter = Counter()   # "logprobs" / "text" -> reviews that gave a score

    def put(self, t: int, start: int, stop: int, obs_n: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
            dones: np.ndarray, info: dict[str, Any]) -> None:
        kept = info["reward_components"]["kept"]
        self.eliminated.update(why for why in info["eliminated"] if why)
        self.scored_by.update(source for source in info["score_sources"] if source)
        if self.obs is None:
            self.obs = np.zeros((self.steps, self.chains, obs_n.shape[1]), obs_n.dtype)
            self.actions = np.zeros((self.steps, self.chains), actions.dtype)
        self.obs[t, start:stop], self.actions[t, start:stop] = obs_n, actions
        self.rewards[t, start:stop], self.dones[t, start:stop], self.kept[t, start:stop] = rewards, dones, kept


def _group_episode(env: InstructionEnv, agent: Agent, start: int, stop: int, obs: np.ndarray, buffer: _Buffer,
                   t0: int) -> Generator[LLMRequest, list[Completion], None]:
    """One episode of one group: act, then the environment's step (which yields its two calls), H times."""
    horizon = env.config.horizon
    for t in range(horizon):
        actions, obs_n = agent.act(obs)
        obs, rewards, dones, info = yield from env.step_chains(start, stop, actions, observe=t + 1 < horizon)
        buffer.put(t0 + t, start, stop, obs_n, actions, rewards, dones, info)


def _drive(episodes: list[Generator], backend: Backend, pool: ThreadPoolExecutor | None,
           in_flight: Callable[[], None]) -> None:
    """Round-robin over the groups: wait for a group's call, run its next phase here, submit its next call.
    ``in_flight`` runs once, as soon as the first call is on its way (with one group: before stepping)."""
    if pool is None:  # one group: no thread to hop to
        in_flight()
        for episode in episodes:
            run_step(episode, backend)
        return
    calls: list[Future | None] = [None] * len(episodes)
    live = list(range(len(episodes)))
    started = False
    while live:
        for g in list(live):
            try:
                request = episodes[g].send(None if calls[g] is None else calls[g].result())
            except StopIteration:
                live.remove(g)
                continue
            calls[g] = pool.submit(request.send, backend)
            if not started:
                started = True
                in_flight()


def collect(env: InstructionEnv, agent: Agent, episodes: int, groups: int = 1,
            in_flight: Callable[[], None] | None = None) -> tuple[Rollout, dict[str, Any]]:
    """Run ``episodes`` full episodes of all chains with the agent's sampling policy, the chains split into
    ``groups`` groups stepped out of phase (1: all chains together, no threads); ``in_flight`` runs once per
    episode, as soon as its first LLM request is on its way (the trainer passes ``Agent.fit_value`` so the
    previous update's value fit overlaps that request). Returns the rollout
    (T = episodes x H) and summary statistics: mean return and step reward, operation counts, and what the
    rewrites became (``rewrite_stats``)."""
    horizon, n = env.config.horizon, env.config.num_chains
    bounds = group_bounds(n, groups)
    buffer = _Buffer(episodes * horizon, n)
    pool = ThreadPoolExecutor(len(bounds), thread_name_prefix="rollout-llm") if len(bounds) > 1 else None
    try:
        for e in range(episodes):
            obs = env.reset()
            _drive([_group_episode(env, agent, a, b, obs[a:b], buffer, e * horizon) for a, b in bounds],
                   env.backend, pool, in_flight or (lambda: None))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    rollout = Rollout(obs=buffer.obs, actions=buffer.actions, rewards=buffer.rewards.astype(buffer.obs.dtype),
                      dones=buffer.dones, last_obs=np.zeros_like(buffer.obs[-1]))
    counts = np.bincount(buffer.actions.ravel(), minlength=env.num_actions)
    reviews = int(buffer.kept.sum())  # every kept rewrite is reviewed
    stats = {
        "episode_return": float(rollout.rewards.sum() / max(rollout.dones.sum(), 1)),
        "step_reward": float(rollout.rewards.mean()),
        "operations": {name: int(c) for name, c in zip(env.operations.names, counts)},
        **rewrite_stats(buffer.kept.size, reviews, buffer.eliminated, buffer.scored_by),
    }
    return rollout, stats


def rewrite_stats(rewrites: int, reviews: int, eliminated: Mapping[str, int],
                  scored_by: Mapping[str, int]) -> dict[str, Any]:
    """What the rewrites became: ``rewrites`` (made), ``kept_fraction``, ``eliminated`` (count per reason, every
    reason listed), ``reviews`` (= kept rewrites), ``review_scored_fraction`` (reviews that gave a score or
    verdict; None without reviews) and ``scored_by`` (those reviews by how the score was read: from the token
    probabilities or from the text)."""
    scored = sum(scored_by.values())
    reasons = dict.fromkeys([*ELIMINATION_REASONS, *sorted(eliminated)])  # any other reason after the known ones
    return {
        "rewrites": int(rewrites), "kept_fraction": reviews / rewrites if rewrites else 0.0,
        "eliminated": {reason: int(eliminated.get(reason, 0)) for reason in reasons},
        "reviews": int(reviews), "review_scored_fraction": scored / reviews if reviews else None,
        "scored_by": {source: int(scored_by.get(source, 0)) for source in SCORE_SOURCES},
    }
