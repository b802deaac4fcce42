"""The batched instruction-evolution environment: N instruction chains stepped together.

One step, for all chains at once: render the chosen operation's prompt for each chain, make ONE
batched instructor call, parse the rewrites, apply the elimination gates, make ONE batched reviewer
call for the kept rewrites (skipped only when none is kept), and compute the rewards. A kept rewrite
becomes the chain's current instruction; an eliminated one leaves the chain where it was.

The step is written once, as a generator over a contiguous group of chains that yields its two backend
calls (``InstructionEnv.step_chains``); ``step`` drives it for all chains with ``run_step``, and the
pipelined rollout of ``train_policy.rollout`` drives several groups so that one group's calls are in
flight while another group's CPU work (features, gates, rewards) runs.

Plain-loop usage::

    env = InstructionEnv(EnvConfig.from_preset("default", num_chains=64), backend)
    obs = env.reset()                                   # [N, obs_dim] float32
    for _ in range(env.config.horizon):
        obs, rewards, dones, info = env.step(actions)   # actions: [N] ints in [0, num_actions)
    dataset_rows = env.pop_records()

After ``horizon`` steps every chain is done and ``reset()`` starts the next episode: fresh seeds for every
chain (``reset_chains="fresh_seeds"``), or, with ``"persistent_chain"`` (the original's quirk), the same
chains carry on from where they stopped; only the step counter and the previous action are reset.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from teamsrl_jax.backends.base import Backend, Completion, SamplingParams
from teamsrl_jax.env.features import (FEATURE_KINDS, TextFeatureCache, default_features, obs_dim, one_hot_previous,
                                      text_stats)
from teamsrl_jax.env.operations import OperationSet
from teamsrl_jax.env.reward import REVIEW_PREFILLS, Reward, RewardConfig
from teamsrl_jax.env.seeds import Seed, SeedPool

RESET_MODES = ("fresh_seeds", "persistent_chain")


def _checked(completions: list, expected: int, role: str) -> list:
    """The backend contract: one completion per prompt (a short batch would silently misalign chains)."""
    if len(completions) != expected:
        raise RuntimeError(f"{role} backend returned {len(completions)} completions for {expected} prompts")
    return completions


@dataclass(frozen=True)
class EnvConfig:
    """The instruction-evolution MDP. Build one with ``EnvConfig.from_preset(name, **overrides)``."""

    num_chains: int = 64
    """Parallel instruction chains N (the batch of every backend call)."""
    horizon: int = 6
    """Steps per episode H."""
    reset_chains: str = "fresh_seeds"
    """``fresh_seeds``: every episode starts each chain from a new seed; ``persistent_chain``: chains are
    never reset between episodes (the original's quirk; only the first reset draws seeds)."""
    seed: int = 0
    """Seed of the seed-pool order (and the held-out split)."""
    features: str = "default"
    """Observation kind: ``default`` (hashed text features), ``embedding`` (sentence embeddings from
    ``encoder_path``) or ``paper`` (one-hot of the previous action)."""
    feature_dim: int = 256
    """Width of the hashed text part of the ``default`` features (obs_dim = feature_dim + A + 1 + 4)."""
    encoder_path: str | None = None
    """Local sentence-encoder folder (all-MiniLM-L6-v2 layout) for ``features="embedding"``."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Reward kind, elimination gates and novelty bonus."""
    instructor: SamplingParams = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=1024)
    """Sampling for the rewrite calls."""
    reviewer: SamplingParams = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=128)
    """Sampling for the reviewer calls. ``logprobs`` (e.g. 20) asks for token probabilities, from which the
    reward reads the score (``reward.score_from``); None: the score is parsed from the text."""
    seed_file: str | None = None
    """Alpaca / Self-Instruct seed file; None uses the small bundled default set."""
    held_out_fraction: float = 0.0
    """Fraction of the seed file kept out of training (``env.held_out_seeds``); 0 keeps all."""
    operations_file: str | None = None
    """YAML/JSON file of extra or replacement operations; None uses the six built-in ones."""
    operations_mode: str = "merge"
    """``merge`` (file entries replace same-named built-ins or are appended) or ``replace``."""

    def __post_init__(self) -> None:
        for name, cls in (("reward", RewardConfig), ("instructor", SamplingParams), ("reviewer", SamplingParams)):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, cls(**value))
            elif not isinstance(value, cls):
                raise ValueError(f"EnvConfig.{name} must be a {cls.__name__} or a dict, got {type(value).__name__}")
        def positive_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1

        checks = (("num_chains", positive_int(self.num_chains), "must be an integer >= 1"),
                  ("horizon", positive_int(self.horizon), "must be an integer >= 1"),
                  ("seed", isinstance(self.seed, (int, np.integer)), "must be an integer"),
                  ("reset_chains", self.reset_chains in RESET_MODES, f"must be one of {', '.join(RESET_MODES)}"),
                  ("features", self.features in FEATURE_KINDS, f"must be one of {', '.join(FEATURE_KINDS)}"),
                  ("feature_dim", positive_int(self.feature_dim) and self.feature_dim >= 8, "must be an integer >= 8"),
                  ("held_out_fraction", isinstance(self.held_out_fraction, (int, float))
                   and 0 <= self.held_out_fraction < 1, "must be in [0, 1)"),
                  ("operations_mode", self.operations_mode in ("merge", "replace"), "must be merge or replace"))
        if self.features == "embedding" and not self.encoder_path:
            raise ValueError("EnvConfig.encoder_path must name a local sentence-encoder folder "
                             "when features='embedding'")
        for name, ok, message in checks:
            if not ok:
                raise ValueError(f"EnvConfig.{name} {message}, got {getattr(self, name)!r}")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> EnvConfig:
        """A preset (``ENV_PRESETS``) with field overrides; ``reward``/``instructor``/``reviewer`` overrides
        may be partial dicts merged into the preset's values."""
        if name not in ENV_PRESETS:
            raise ValueError(f"unknown env preset {name!r}; choose from {', '.join(ENV_PRESETS)}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown EnvConfig field(s): {', '.join(sorted(unknown))}")
        values = dict(ENV_PRESETS[name])
        base = cls()
        for key, value in overrides.items():
            nested = values.get(key, getattr(base, key))
            if isinstance(value, dict) and dataclasses.is_dataclass(getattr(base, key)):
                nested = nested if isinstance(nested, dict) else dataclasses.asdict(nested)
                value = {**nested, **value}
            values[key] = value
        return cls(**values)


ENV_PRESETS: dict[str, dict[str, Any]] = {
    # Ours: text features, graded reviewer score gated by elimination checks, novelty bonus, many chains.
    "default": {},
    # The original MDP (see REFERENCE §2): one chain that is never reset, one-hot previous action,
    # Equal / Not Equal reward, WizardLM-13B-style sampling for both roles, seed 543.
    "paper": {
        "num_chains": 1, "horizon": 6, "reset_chains": "persistent_chain", "seed": 543, "features": "paper",
        "reward": {"kind": "paper", "eliminate": False, "novelty_weight": 0.0},
        "instructor": {"temperature": 1.0, "top_p": 0.95, "top_k": 40, "max_tokens": 2048},
        "reviewer": {"temperature": 1.0, "top_p": 0.95, "top_k": 40, "max_tokens": 2048},
    },
}


@dataclass(frozen=True)
class LLMRequest:
    """One batched backend call that a step asks for (see ``InstructionEnv.step_chains``)."""

    role: str
    prompts: list[str]
    params: SamplingParams
    sample_indices: list[int]
    """Per prompt: how many chains before it in this step sent the same prompt, so that repeats are
    distinct samples (and distinct cache keys) however the chains are grouped."""

    def send(self, backend: Backend) -> list[Completion]:
        """Make the call on ``backend`` (none for an empty batch)."""
        if not self.prompts:
            return []
        return backend.generate(self.prompts, self.params, role=self.role, sample_indices=self.sample_indices)


StepResult = tuple[np.ndarray | None, np.ndarray, np.ndarray, dict[str, Any]]
StepGenerator = Generator[LLMRequest, list[Completion], StepResult]


def run_step(step: StepGenerator, backend: Backend) -> StepResult:
    """Drive a ``step_chains`` generator to its end, making each call it asks for on ``backend``."""
    try:
        request = next(step)
        while True:
            request = step.send(request.send(backend))
    except StopIteration as end:
        return end.value


class InstructionEnv:
    """N instruction chains evolved in lockstep by a policy choosing one operation per chain per step.

    ``step`` moves every chain. ``step_chains`` moves a contiguous group of chains and is written as a
    generator that yields its two backend calls, so that a driver can overlap one group's calls with
    another group's CPU work (``train_policy.rollout``). Groups stepped in chain order within each step
    give exactly what ``step`` gives: the same sample indices, the same novelty memory (a step's kept
    rewrites are remembered once every chain has made that step, in chain order), the same records."""

    def __init__(self, config: EnvConfig, backend: Backend, seeds: SeedPool | None = None,
                 operations: OperationSet | None = None):
        """``seeds``/``operations`` override ``config.seed_file``/``config.operations_file`` when given."""
        self.config = config
        self.backend = backend
        if operations is None:
            operations = (OperationSet.from_file(config.operations_file, config.operations_mode)
                          if config.operations_file else OperationSet())
        self.operations = operations
        self.held_out_seeds: SeedPool | None = None
        if seeds is None:
            seeds = SeedPool.from_file(config.seed_file, seed=config.seed)
            if config.held_out_fraction > 0:
                seeds, self.held_out_seeds = seeds.split(config.held_out_fraction, seed=config.seed)
        self.seed_pool = seeds
        self.reward_fn = Reward(config.reward)
        self._reviewer_params = config.reviewer
        if config.reward.prefill:
            self._reviewer_params = dataclasses.replace(config.reviewer, prefix=REVIEW_PREFILLS[config.reward.kind])
        self.encoder = None
        if config.features == "embedding":
            from teamsrl_jax.env.encoder import SentenceEncoder  # imports JAX; only for this feature kind
            self.encoder = SentenceEncoder(config.encoder_path)
        n = config.num_chains
        self._features = TextFeatureCache(config.feature_dim, capacity=max(8192, 4 * n))
        self.records: list[dict[str, Any]] = []
        """One dict per chain per step (see ``step``); take them with ``pop_records``."""
        self._texts: list[str] | None = None
        self._origins: list[str] = [""] * n
        self._prev = np.full(n, -1, np.int64)
        self._steps = np.zeros(n, np.int64)  # steps taken in this episode, per chain
        self.episode = -1
        self._reset_step_bookkeeping()

    def _reset_step_bookkeeping(self) -> None:
        """Counters that keep groups stepped out of phase equal to one batch (empty between steps)."""
        self._age = np.zeros(self.config.num_chains, np.int64)  # steps taken since this point, per chain
        self._remembered = 0         # steps whose kept rewrites are all in the novelty memory
        self._staged: dict[int, np.ndarray] = {}      # chain start -> encoded kept rewrites, for step _remembered
        self._staged_chains = 0
        self._sample_counts: dict[str, tuple[int, int, Counter]] = {}  # role -> (age, next start, prompt counts)

    @property
    def num_actions(self) -> int:
        return len(self.operations)

    @property
    def _text_dim(self) -> int:
        return self.encoder.dim if self.encoder is not None else self.config.feature_dim

    @property
    def obs_dim(self) -> int:
        return obs_dim(self.config.features, self.num_actions, self._text_dim)

    @property
    def texts(self) -> list[str]:
        """Current instruction of every chain."""
        return list(self._texts or [])

    @property
    def _t(self) -> int:
        """The step of the episode (all chains between steps)."""
        if (self._steps != self._steps[0]).any():
            raise RuntimeError("chains are at different steps: finish stepping every group first")
        return int(self._steps[0])

    def _observe(self, start: int, stop: int) -> np.ndarray:
        prev = self._prev[start:stop]
        if self.config.features == "paper":
            return one_hot_previous(prev, self.num_actions)
        texts = self._texts[start:stop]
        if self.encoder is None:
            rows = self._features(texts)
            text_part, stats = rows[:, :self._text_dim], rows[:, self._text_dim:]
        else:
            text_part, stats = self.encoder(texts), text_stats(texts)
        return default_features(text_part, stats, prev, int(self._steps[start]), self.config.horizon,
                                self.num_actions)

    def reset(self, seeds: Sequence[Seed | str] | None = None) -> np.ndarray:
        """Start an episode for every chain (also after groups were left mid-step by an error); returns obs
        [N, obs_dim] float32. ``seeds`` (one per chain) starts the chains from these instead of drawing from
        the seed pool (the dataset stage walks a seed file in order)."""
        self._reset_step_bookkeeping()
        if seeds is not None:
            if len(seeds) != self.config.num_chains:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.config.num_chains} chains")
            self._texts = [s if isinstance(s, str) else s.text for s in seeds]
            self._origins = list(self._texts)
        elif self._texts is None or self.config.reset_chains == "fresh_seeds":
            self._texts = [s.text for s in self.seed_pool.draw(self.config.num_chains)]
            self._origins = list(self._texts)
        self._prev[:] = -1
        self._steps[:] = 0
        self.episode += 1
        return self._observe(0, self.config.num_chains)

    def _check_actions(self, actions: Any, n: int) -> np.ndarray:
        a = np.asarray(actions)
        if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"actions must be an integer array of shape ({n},), got {a.dtype} {a.shape}")
        if a.min() < 0 or a.max() >= self.num_actions:
            raise ValueError(f"actions must be in [0, {self.num_actions}), got min {a.min()} max {a.max()}")
        return a.astype(np.int64)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Apply one operation per chain. Returns (obs [N, obs_dim] float32, rewards [N] float32,
        dones [N] bool, info).

        info: ``parents``, ``rewrites`` (parsed, None on failure), ``instructions`` (current after the
        step), ``operations`` (names), ``eliminated`` (reason or ""), ``reviewer_notes`` (why a reply gave
        no verdict/score, or ""), ``score_sources`` ("logprobs", "text" or "": how the score was obtained),
        ``instructor_replies``, ``reviewer_replies`` (None where not asked):
        lists of N; ``reward_components``: dict of [N] float32 arrays; ``step`` (1..H), ``episode``."""
        return run_step(self.step_chains(0, self.config.num_chains, actions), self.backend)

    def step_chains(self, start: int, stop: int, actions: Any, *, observe: bool = True,
                    review: bool = True) -> StepGenerator:
        """``step`` for chains ``start..stop-1`` as a generator: it yields the ``LLMRequest`` of the
        instructor and then of the reviewer (an empty one when every rewrite was eliminated), is sent each
        call's completions, and returns (obs or None when not ``observe``, rewards, dones, info) for the
        group. With ``review=False`` there is no reviewer call: the gates alone decide what is kept and every
        reward is 0 (the dataset stage, where only the rewrites are wanted). Drive it with ``run_step`` or overlap several groups' calls; within a step, groups must
        make each call in chain order (checked), and a group must not score step k before every chain has
        finished step k-1 (checked)."""
        n = stop - start
        if self._texts is None:
            raise RuntimeError("call reset() before step()")
        if not 0 <= start < stop <= self.config.num_chains:
            raise ValueError(f"chains [{start}, {stop}) are not inside [0, {self.config.num_chains})")
        t, age = int(self._steps[start]), int(self._age[start])
        if (self._steps[start:stop] != t).any():
            raise RuntimeError(f"chains [{start}, {stop}) are at different steps")
        if t >= self.config.horizon:
            raise RuntimeError(f"the episode ended after {self.config.horizon} steps: call reset()")
        actions = self._check_actions(actions, n)
        parents = self._texts[start:stop]
        prompts = [self.operations.render(a, p) for a, p in zip(actions, parents)]
        request = self._request("instructor", start, stop, age, prompts, self.config.instructor)
        replies = [c.text for c in _checked((yield request), n, "instructor")]
        rewrites = [self.operations.parse(r) for r in replies]
        eliminated = self.reward_fn.gates(parents, rewrites, [self.operations.templates[a] for a in actions])
        if review:
            prompts = self.reward_fn.review_prompts(parents, rewrites, eliminated)
            request = self._request("reviewer", start, stop, age, prompts, self._reviewer_params)
            reviews = _checked((yield request), len(prompts), "reviewer")
            if self.reward_fn.memory is not None and self._remembered != age:
                raise RuntimeError(f"chains [{start}, {stop}) scored step {age} before every chain finished the "
                                   "step before it: step the groups in chain order")
            result = self.reward_fn.score(rewrites, eliminated, reviews)
            self._remember(start, stop, result.novelty_rows)
        else:
            result = self.reward_fn.unscored(eliminated)
        self._texts[start:stop] = [p if why else r for p, r, why in zip(parents, rewrites, eliminated)]
        self._prev[start:stop] = actions
        self._steps[start:stop] += 1
        self._age[start:stop] += 1
        names = [self.operations.names[a] for a in actions]
        self._record(start, t + 1, parents, rewrites, names, result)
        info = {"parents": parents, "rewrites": rewrites, "instructions": self._texts[start:stop],
                "operations": names, "eliminated": result.eliminated, "reviewer_notes": result.notes,
                "score_sources": result.score_sources, "instructor_replies": replies,
                "reviewer_replies": result.reviewer_replies,
                "reward_components": result.components, "step": t + 1, "episode": self.episode}
        dones = np.full(n, t + 1 >= self.config.horizon)
        return (self._observe(start, stop) if observe else None), result.rewards, dones, info

    def _request(self, role: str, start: int, stop: int, age: int, prompts: list[str],
                 params: SamplingParams) -> LLMRequest:
        """The request, with sample indices counted over the chains before ``start`` in this step too."""
        if start == 0:
            counts: Counter = Counter()
        else:
            last_age, next_start, counts = self._sample_counts.get(role, (-1, 0, Counter()))
            if (last_age, next_start) != (age, start):
                raise RuntimeError(f"chains [{start}, {stop}) made their {role} call of step {age} out of chain "
                                   "order: step the groups in chain order")
        indices = []
        for p in prompts:
            indices.append(counts[p])
            counts[p] += 1
        self._sample_counts[role] = (age, stop, counts)
        return LLMRequest(role, prompts, params, indices)

    def _remember(self, start: int, stop: int, rows: np.ndarray | None) -> None:
        """Stage a group's kept rewrites; once every chain made the step, add them all in chain order."""
        if rows is None:
            return
        self._staged[start] = rows
        self._staged_chains += stop - start
        if self._staged_chains == self.config.num_chains:
            for key in sorted(self._staged):
                self.reward_fn.memory.add_encoded(self._staged[key])
            self._staged, self._staged_chains = {}, 0
            self._remembered += 1

    def _record(self, start: int, step: int, parents, rewrites, names, result) -> None:
        for i, (parent, rewrite, name) in enumerate(zip(parents, rewrites, names)):
            self.records.append({
                "episode": self.episode, "step": step, "chain": start + i, "seed": self._origins[start + i],
                "operation": name, "parent": parent, "instruction": rewrite,
                "kept": not result.eliminated[i], "eliminated": result.eliminated[i],
                "reward": float(result.rewards[i]),
                "components": {k: float(v[i]) for k, v in result.components.items()},
                "reviewer_note": result.notes[i],
                "backend": self.backend.name, "model": self.backend.model,
            })

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly (NumPy arrays + JSON-able values): the
        chains, the step and episode counters, the seed-pool order and the novelty memory. Records are
        not included: take them with ``pop_records`` before saving. Only between steps of all chains."""
        memory = self.reward_fn.memory
        return {"texts": None if self._texts is None else list(self._texts), "origins": list(self._origins),
                "prev": self._prev.copy(), "t": self._t, "episode": self.episode,
                "seed_pool": self.seed_pool.state_dict(),
                "novelty": None if memory is None else memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict`` taken from an environment with the same config and seeds."""
        n = self.config.num_chains
        texts = state["texts"]
        if (texts is not None and len(texts) != n) or np.shape(state["prev"]) != (n,):
            raise ValueError(f"environment state is for another number of chains (this one has {n})")
        if (state["novelty"] is None) != (self.reward_fn.memory is None):
            raise ValueError("environment state and config disagree on the novelty memory (novelty_weight)")
        self._texts = None if texts is None else [str(t) for t in texts]
        self._origins = [str(t) for t in state["origins"]]
        self._prev = np.asarray(state["prev"], np.int64).copy()
        self._steps[:], self.episode = int(state["t"]), int(state["episode"])
        self.seed_pool.load_state_dict(state["seed_pool"])
        if self.reward_fn.memory is not None:
            self.reward_fn.memory.load_state_dict(state["novelty"])
        self._reset_step_bookkeeping()

    def pop_records(self) -> list[dict[str, Any]]:
        """Every (instruction, operation, parent, reward, components, ...) produced since the last call.

        Keys: episode, step, chain, seed (the episode's starting text), operation, parent, instruction (the
        parsed rewrite, None on parse failure), kept, eliminated, reward, components, reviewer_note, backend,
        model. No I/O here: writing a dataset is the caller's job."""
        out, self.records = self.records, []
        return out
