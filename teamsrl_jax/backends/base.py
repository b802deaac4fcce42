"""The one interface every LLM backend implements: batched ``generate(prompts, params, role)``.

A backend turns a batch of prompts into one completion each, in order, and counts what it did per
role (instructor, reviewer, responder) in its ``accounting``. Implementations: ``OpenAIBackend`` (any
OpenAI-compatible HTTP endpoint), ``JaxBackend`` (our own model, in process), ``CachedBackend`` (wraps any
backend with a persistent cache), and, beside the environment it imitates, ``env.simulator.SimulatedBackend``
(offline, deterministic); ``OpenAIBackend`` and ``CachedBackend`` finish requests one by one and derive from
``IncrementalBackend``. Nothing in this package imports the environment.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, get_args

from teamsrl_jax.backends.accounting import QueryAccounting

Role = Literal["instructor", "reviewer", "responder"]
ROLES: tuple[str, ...] = get_args(Role)

OnResult = Callable[[int, "Completion"], None]
"""Called with (index in the batch, completion) as soon as one completion is available."""


class BackendError(RuntimeError):
    """A backend could not produce a completion. Messages are one line and never contain secrets."""


class BackendUnavailableError(BackendError):
    """The endpoint stayed unreachable or overloaded after every retry."""


class BackendRequestError(BackendError):
    """The endpoint refused the request in a way retrying cannot fix (e.g. 400, 401, 404)."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one completion. All fields are part of the cache key."""

    temperature: float = 0.7
    """Softmax temperature; 0 means greedy (then repeated samples of one prompt share a cache entry)."""
    top_p: float = 0.95
    """Nucleus sampling mass, in (0, 1]."""
    max_tokens: int = 1024
    """Upper bound on generated tokens (>= 1)."""
    top_k: int | None = None
    """Top-k truncation; sent as extra_body for servers that accept it (vLLM, SGLang, llama.cpp, Ollama)."""
    stop: tuple[str, ...] = ()
    """Stop strings; generation ends before any of them."""
    system: str | None = None
    """Optional system message sent before the user prompt."""
    seed: int | None = None
    """Sampling seed for servers that honour one."""
    logprobs: int | None = None
    """Return, for each generated token, its log-probability and the ``logprobs`` most likely alternatives
    at that position (OpenAI's ``logprobs=True, top_logprobs=N``; at most 20). None: not requested."""

    prefix: str | None = None
    """Assistant prefill: the reply is made to start with this text, and the completion is what follows it
    (e.g. "Score:" so that a reviewer's first token is its score). Our ``jax`` backend and servers that continue
    a final assistant message (vLLM, SGLang, llama.cpp) honour it; None: the model starts its reply freely."""

    def __post_init__(self) -> None:
        if not self.temperature >= 0:  # also rejects NaN
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError(f"SamplingParams.top_k must be None or an integer >= 1, got {self.top_k!r}")
        if isinstance(self.stop, str) or not all(isinstance(s, str) for s in self.stop):
            raise ValueError(f"SamplingParams.stop must be a tuple of strings, got {self.stop!r}")
        if self.prefix is not None and not isinstance(self.prefix, str):
            raise ValueError(f"SamplingParams.prefix must be None or a string, got {self.prefix!r}")
        if self.logprobs is not None and (isinstance(self.logprobs, bool) or not isinstance(self.logprobs, int)
                                          or not 0 <= self.logprobs <= 20):
            raise ValueError(f"SamplingParams.logprobs must be None or an integer in [0, 20], got {self.logprobs!r}")
        object.__setattr__(self, "stop", tuple(self.stop))  # accept lists; keep the dataclass hashable

    def cache_key(self) -> str:
        """Canonical JSON of all fields (sorted keys, no whitespace): equal params give equal strings."""
        fields = asdict(self)
        for name in ("logprobs", "prefix"):
            if fields[name] is None:  # keys written before these fields existed stay valid
                del fields[name]
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability under the model, and the most likely alternatives."""

    token: str
    """The generated token's text."""
    logprob: float
    """Its natural-log probability."""
    top: tuple[tuple[str, float], ...] = ()
    """The ``SamplingParams.logprobs`` most likely tokens at this position, (text, logprob), most likely first."""


@dataclass
class Completion:
    """One generated reply."""

    text: str
    prompt_tokens: int | None = None
    """Prompt tokens as reported by the server (None where it reports none)."""
    completion_tokens: int | None = None
    """Generated tokens as reported by the server (None where it reports none)."""
    finish_reason: str | None = None
    """Why generation stopped ("stop", "length", ...), as reported."""
    cached: bool = False
    """True when this came from the on-disk cache rather than from the model."""
    logprobs: list[TokenLogprob] | None = None
    """Per generated token, when ``SamplingParams.logprobs`` asked for them and the backend returns them."""


def check_role(role: str) -> None:
    """Raise a one-line ValueError unless ``role`` is one of ROLES."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")


def resolve_sample_indices(prompts: Sequence[str], sample_indices: Sequence[int] | None) -> list[int]:
    """The given indices (checked for length), or by default: the k-th repeat of a prompt gets index k."""
    if sample_indices is not None:
        if len(sample_indices) != len(prompts):
            raise ValueError(f"sample_indices has {len(sample_indices)} entries for {len(prompts)} prompts")
        return [int(i) for i in sample_indices]
    seen: dict[str, int] = {}
    out = []
    for p in prompts:
        out.append(seen.get(p, 0))
        seen[p] = out[-1] + 1
    return out


class Backend(abc.ABC):
    """A batched text generator with per-role query accounting."""

    name: str
    """Backend kind ("openai", "simulated", ...); part of the cache key."""
    model: str
    """Model id; part of the cache key."""
    accounting: QueryAccounting

    @abc.abstractmethod
    def generate(self, prompts: Sequence[str], params: SamplingParams, role: Role,
                 sample_indices: Sequence[int] | None = None) -> list[Completion]:
        """Batched: one completion per prompt, same order. Each prompt is sent as a single user message.
        sample_indices distinguishes repeated samples of the same prompt when temperature > 0 (part of the
        cache key); default: the k-th repeat of an identical prompt inside this batch gets index k."""

    def generate_incremental(self, prompts: Sequence[str], params: SamplingParams, role: Role,
                             sample_indices: Sequence[int] | None = None, *,
                             on_result: OnResult | None = None) -> list[Completion]:
        """``generate``, calling ``on_result(i, completion)`` as each completion becomes available.

        This default reports everything once the whole batch is done; backends that finish requests one
        by one (HTTP) override it so that a caller (the cache) can persist each result on arrival.
        """
        results = self.generate(prompts, params, role, sample_indices)
        if on_result is not None:
            for i, completion in enumerate(results):
                on_result(i, completion)
        return results

    def close(self) -> None:
        """Release connections and other resources. Idempotent."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class IncrementalBackend(Backend):
    """A backend that finishes requests one by one: it implements ``generate_incremental``, and ``generate`` is
    that without a callback."""

    def generate(self, prompts: Sequence[str], params: SamplingParams, role: Role,
                 sample_indices: Sequence[int] | None = None) -> list[Completion]:
        return self.generate_incremental(prompts, params, role, sample_indices)

    @abc.abstractmethod
    def generate_incremental(self, prompts: Sequence[str], params: SamplingParams, role: Role,
                             sample_indices: Sequence[int] | None = None, *,
                             on_result: OnResult | None = None) -> list[Completion]:
        """See :meth:`Backend.generate_incremental`; ``on_result`` is called as each completion arrives."""
