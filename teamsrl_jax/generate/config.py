"""Typed configuration of ``python -m teamsrl_jax.generate``, shared by the CLI and the code."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from teamsrl_jax.llm import BackendConfig

SCHEDULES = ("policy", "paper")


@dataclass
class GenerateConfig:
    """One dataset-generation run."""

    policy: str = ""
    """A ``train_policy`` run folder: its newest checkpoint, preset, features and operations are used."""
    seeds: str | None = None
    """Seed instructions (Alpaca JSON/JSONL or Self-Instruct JSONL), walked in file order, each once (repeated
    texts once); None uses the policy run's own seed file (or the bundled default set when it had none)."""
    schedule: str = "policy"
    """``policy``: the trained policy alone chooses every operation; ``paper``: the original's generation-time
    overrides (+0.7 on add_constraints, breadth forced at the 2nd and 5th step, breadth elsewhere replaced by
    add_constraints)."""
    steps: int | None = None
    """Evolution steps per seed (each step can emit one example); None keeps the policy's horizon (6)."""
    greedy: bool = False
    """Act by the policy's most likely operation instead of sampling."""
    max_examples: int | None = None
    """Stop once this many examples are written; None walks every seed."""
    chains: int = 64
    """Seeds evolved together: every step is one batched instructor call over this many chains."""
    seed: int = 0
    """Seed of the policy's sampling."""
    min_words: int = 3
    """An evolved instruction of fewer words is dropped (``too_short``)."""
    max_words: int = 2048
    """An evolved instruction of more words is dropped (``too_long``)."""
    dedup_threshold: float | None = 0.7
    """Near-duplicate filter: drop an instruction whose ROUGE-L F against any earlier accepted one is at least
    this (Self-Instruct's rule and tokenisation); None turns the filter off."""
    eliminate: bool = True
    """Apply the WizardLM elimination checks (refusal, copies of the prompt template, no information gain)
    as well as the format checks the environment always applies."""
    keep_truncated: bool = False
    """Keep responses that hit ``responder_max_tokens`` (by default they are dropped as ``truncated_response``)."""
    instructor_temperature: float | None = None
    """Sampling temperature of the rewrites; None keeps the policy preset's (default 0.7, paper 1.0)."""
    instructor_max_tokens: int | None = None
    """Cap on the tokens of one rewrite; None keeps the policy preset's (default 1024, paper 2048)."""
    responder_temperature: float = 0.7
    """Sampling temperature of the responses."""
    responder_top_p: float = 0.95
    """Nucleus mass of the responses."""
    responder_max_tokens: int = 1024
    """Cap on the tokens of one response."""
    responder_system: str | None = None
    """System message sent with every responder request (None: none)."""
    backend: BackendConfig = field(default_factory=BackendConfig)
    """The instructor LLM (rewrites the instructions)."""
    responder: BackendConfig | None = None
    """The responder LLM (the expert that answers them); None: the instructor's backend."""

    def __post_init__(self) -> None:
        if isinstance(self.backend, dict):
            self.backend = BackendConfig(**self.backend)
        if isinstance(self.responder, dict):
            self.responder = BackendConfig(**self.responder)
        if not self.policy:
            raise ValueError("GenerateConfig.policy must name a train_policy run folder")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"GenerateConfig.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("chains", "min_words", "max_words", "responder_max_tokens"):
            _check_int(name, getattr(self, name))
        for name in ("steps", "max_examples", "instructor_max_tokens"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name))
        if self.max_words < self.min_words:
            raise ValueError(f"GenerateConfig.max_words ({self.max_words}) is below min_words ({self.min_words})")
        t = self.dedup_threshold
        if t is not None and not (isinstance(t, (int, float)) and 0 < t <= 1):
            raise ValueError(f"GenerateConfig.dedup_threshold must be in (0, 1] or None, got {t!r}")
        for name in ("instructor_temperature", "responder_temperature"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"GenerateConfig.{name} must be >= 0, got {v!r}")
        if not 0 < self.responder_top_p <= 1:
            raise ValueError(f"GenerateConfig.responder_top_p must be in (0, 1], got {self.responder_top_p!r}")

    @property
    def responder_backend(self) -> BackendConfig:
        return self.backend if self.responder is None else self.responder

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"GenerateConfig.{name} must be an integer >= 1, got {value!r}")


RESUME_KEYS = ("policy", "seeds", "schedule", "steps", "greedy", "chains", "seed", "min_words", "max_words",
               "dedup_threshold", "eliminate", "keep_truncated", "instructor_temperature", "instructor_max_tokens",
               "responder_temperature", "responder_top_p", "responder_max_tokens", "responder_system")
"""Fields whose change alters the examples: ``--resume`` refuses a run folder saved with other values
(``max_examples`` may grow; the backends' kind, model and endpoint are checked too)."""
BACKEND_RESUME_KEYS = ("kind", "model", "base_url", "dtype")
