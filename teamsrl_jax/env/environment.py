"""The batched instruction-evolution environment: N instruction chains stepped together.

One step, for all chains at once: render the chosen operation's prompt for each chain, make ONE
batched instructor call, parse the rewrites, apply the elimination gates, make ONE batched reviewer
call for the kept rewrites (skipped only when none is kept), and compute the rewards. A kept rewrite
becomes the chain's current instruction; an eliminated one leaves the chain where it was.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from teamsrl_jax.backends.base import Backend, SamplingParams
from teamsrl_jax.env.features import FEATURE_KINDS, default_features, obs_dim, one_hot_previous
from teamsrl_jax.env.operations import OperationSet
from teamsrl_jax.env.reward import Reward, RewardConfig
from teamsrl_jax.env.seeds import SeedPool

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
    """Sampling for the reviewer calls."""
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


class InstructionEnv:
    """N instruction chains evolved in lockstep by a policy choosing one operation per chain per step."""

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
        self.encoder = None
        if config.features == "embedding":
            from teamsrl_jax.env.encoder import SentenceEncoder  # imports JAX; only for this feature kind
            self.encoder = SentenceEncoder(config.encoder_path)
        self.records: list[dict[str, Any]] = []
        """One dict per chain per step (see ``step``); take them with ``pop_records``."""
        n = config.num_chains
        self._texts: list[str] | None = None
        self._origins: list[str] = [""] * n
        self._prev = np.full(n, -1, np.int64)
        self._t = 0
        self.episode = -1

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

    def _observe(self) -> np.ndarray:
        if self.config.features == "paper":
            return one_hot_previous(self._prev, self.num_actions)
        vectors = None if self.encoder is None else self.encoder(self._texts)
        return default_features(self._texts, self._prev, self._t, self.config.horizon, self.num_actions,
                                self._text_dim, text_vectors=vectors)

    def reset(self) -> np.ndarray:
        """Start an episode; returns obs [N, obs_dim] float32."""
        if self._texts is None or self.config.reset_chains == "fresh_seeds":
            self._texts = [s.text for s in self.seed_pool.draw(self.config.num_chains)]
            self._origins = list(self._texts)
        self._prev[:] = -1
        self._t = 0
        self.episode += 1
        return self._observe()

    def _check_actions(self, actions: Any) -> np.ndarray:
        a = np.asarray(actions)
        if a.shape != (self.config.num_chains,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"actions must be an integer array of shape ({self.config.num_chains},), "
                             f"got {a.dtype} {a.shape}")
        if a.min() < 0 or a.max() >= self.num_actions:
            raise ValueError(f"actions must be in [0, {self.num_actions}), got min {a.min()} max {a.max()}")
        return a.astype(np.int64)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Apply one operation per chain. Returns (obs [N, obs_dim] float32, rewards [N] float32,
        dones [N] bool, info).

        info: ``parents``, ``rewrites`` (parsed, None on failure), ``instructions`` (current after the
        step), ``operations`` (names), ``eliminated`` (reason or ""), ``reviewer_notes`` (why a reply gave
        no verdict/score, or ""), ``instructor_replies``, ``reviewer_replies`` (None where not asked):
        lists of N; ``reward_components``: dict of [N] float32 arrays; ``step`` (1..H), ``episode``."""
        if self._texts is None:
            raise RuntimeError("call reset() before step()")
        if self._t >= self.config.horizon:
            raise RuntimeError(f"the episode ended after {self.config.horizon} steps: call reset()")
        actions = self._check_actions(actions)
        parents = self._texts
        prompts = [self.operations.render(a, p) for a, p in zip(actions, parents)]
        replies = [c.text for c in _checked(self.backend.generate(prompts, self.config.instructor, role="instructor"),
                                            len(prompts), "instructor")]
        rewrites = [self.operations.parse(r) for r in replies]
        templates = [self.operations.templates[a] for a in actions]
        result = self.reward_fn(parents, rewrites, templates, self.backend, self.config.reviewer)
        self._texts = [p if why else r for p, r, why in zip(parents, rewrites, result.eliminated)]
        self._prev = actions
        self._t += 1
        names = [self.operations.names[a] for a in actions]
        self._record(parents, rewrites, names, result)
        info = {"parents": parents, "rewrites": rewrites, "instructions": list(self._texts), "operations": names,
                "eliminated": result.eliminated, "reviewer_notes": result.notes, "instructor_replies": replies,
                "reviewer_replies": result.reviewer_replies, "reward_components": result.components,
                "step": self._t, "episode": self.episode}
        dones = np.full(self.config.num_chains, self._t >= self.config.horizon)
        return self._observe(), result.rewards, dones, info

    def _record(self, parents, rewrites, names, result) -> None:
        for i, (parent, rewrite, name) in enumerate(zip(parents, rewrites, names)):
            self.records.append({
                "episode": self.episode, "step": self._t, "chain": i, "seed": self._origins[i],
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
        not included: take them with ``pop_records`` before saving."""
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
        self._t, self.episode = int(state["t"]), int(state["episode"])
        self.seed_pool.load_state_dict(state["seed_pool"])
        if self.reward_fn.memory is not None:
            self.reward_fn.memory.load_state_dict(state["novelty"])

    def pop_records(self) -> list[dict[str, Any]]:
        """Every (instruction, operation, parent, reward, components, ...) produced since the last call.

        Keys: episode, step, chain, seed (the episode's starting text), operation, parent, instruction (the
        parsed rewrite, None on parse failure), kept, eliminated, reward, components, reviewer_note, backend,
        model. No I/O here: writing a dataset is the caller's job."""
        out, self.records = self.records, []
        return out
