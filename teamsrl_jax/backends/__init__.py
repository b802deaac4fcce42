"""LLM backends behind one batched interface (``base.Backend.generate(prompts, params, role)``).

Kinds: "openai" (any OpenAI-compatible endpoint: OpenAI, vLLM, SGLang, llama.cpp server, Ollama) and
"simulated" (offline, deterministic). Any kind can sit behind the persistent ``CompletionCache``.
``make_backend`` builds one from keyword arguments; ``BackendConfig`` is the typed config CLIs share.
The OpenAI SDK is imported only when an "openai" backend is made (it takes about a second).

    from teamsrl_jax.backends import SamplingParams, make_backend
    with make_backend("openai", model="meta-llama/Llama-3.1-8B-Instruct", base_url="http://127.0.0.1:8000/v1",
                      cache_path="runs/cache.sqlite") as llm:       # a local vLLM server needs no key
        replies = llm.generate(prompts, SamplingParams(temperature=1.0, top_k=40), role="instructor")
    print(llm.accounting.format_table())
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from teamsrl_jax.backends.accounting import QueryAccounting
from teamsrl_jax.backends.base import (ROLES, Backend, BackendError, BackendRequestError, BackendUnavailableError,
                                       Completion, IncrementalBackend, Role, SamplingParams)
from teamsrl_jax.backends.cache import CachedBackend, CacheError, CompletionCache, cache_key

KINDS = ("openai", "simulated")

__all__ = ["KINDS", "ROLES", "Backend", "BackendConfig", "BackendError", "BackendRequestError",
           "BackendUnavailableError", "CacheError", "CachedBackend", "Completion", "CompletionCache",
           "IncrementalBackend", "QueryAccounting", "Role", "SamplingParams", "cache_key", "make_backend"]


def make_backend(kind: str, *, cache_path: str | None = None, **kwargs: Any) -> Backend:
    """A backend of ``kind`` built with ``kwargs`` (its constructor's arguments); with ``cache_path``,
    wrapped in a ``CachedBackend`` over that SQLite file (closing the backend closes the cache)."""
    if kind == "openai":
        from teamsrl_jax.backends.openai_backend import OpenAIBackend
        backend: Backend = OpenAIBackend(**kwargs)
    elif kind == "simulated":
        from teamsrl_jax.backends.simulated import SimulatedBackend
        backend = SimulatedBackend(**kwargs)
    else:
        raise ValueError(f"unknown backend kind {kind!r}; expected one of: {', '.join(KINDS)}")
    if cache_path is not None:
        backend = CachedBackend(backend, CompletionCache(cache_path))
    return backend


@dataclass
class BackendConfig:
    """Which LLM to query and how; shared by the CLIs (one per role where roles differ)."""

    kind: str = "simulated"
    """Backend kind: "openai" (any OpenAI-compatible HTTP endpoint) or "simulated" (offline)."""
    base_url: str = "https://api.openai.com/v1"
    """Endpoint root for kind "openai", e.g. http://127.0.0.1:8000/v1 for a local vLLM server."""
    model: str = ""
    """Model id sent to the endpoint; part of the cache key. Required for "openai"; "" keeps the simulated
    backend's default."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (the key itself is never in a config).
    Unset is allowed for local servers, which get the placeholder "EMPTY"."""
    concurrency: int = 64
    """Requests in flight at once."""
    timeout_s: float = 120.0
    """Per-request time limit in seconds."""
    max_retries: int = 6
    """Retries per request after the first attempt (429, 5xx, timeouts, dropped connections, bad JSON)."""
    backoff_base_s: float = 1.0
    """Backoff before retry k is uniform in [0, min(backoff_max_s, backoff_base_s * 2^k)] (full jitter),
    and never shorter than the server's Retry-After."""
    backoff_max_s: float = 60.0
    """Cap on the exponential backoff, in seconds."""
    cache_path: str | None = None
    """SQLite completion cache; reruns and resumed runs query only what it lacks. None: no cache."""
    temperature: float = 0.7
    """Default sampling temperature (0 = greedy)."""
    top_p: float = 0.95
    """Default nucleus sampling mass."""
    max_tokens: int = 1024
    """Default cap on generated tokens."""
    top_k: int | None = None
    """Default top-k (sent as extra_body; OpenAI itself ignores it). None: not sent."""
    seed: int | None = None
    """Default sampling seed for servers that honour one."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further constructor arguments for the backend (e.g. the simulated backend's options)."""

    def sampling(self, **overrides: Any) -> SamplingParams:
        """The default SamplingParams of this config, with ``overrides`` (e.g. a role's system prompt)."""
        fields = dict(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                      top_k=self.top_k, seed=self.seed)
        return SamplingParams(**{**fields, **overrides})

    def build(self) -> Backend:
        """The backend this config describes (cached when ``cache_path`` is set)."""
        kwargs = dict(self.extra)
        if self.kind == "openai":
            kwargs.update(base_url=self.base_url, api_key_env=self.api_key_env, concurrency=self.concurrency,
                          timeout_s=self.timeout_s, max_retries=self.max_retries,
                          backoff_base_s=self.backoff_base_s, backoff_max_s=self.backoff_max_s)
        elif self.kind == "simulated":
            kwargs.setdefault("concurrency", self.concurrency)  # slots of its simulated latency
        if self.model or self.kind == "openai":  # the simulated backend has a default model id
            kwargs["model"] = self.model
        return make_backend(self.kind, cache_path=self.cache_path, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
