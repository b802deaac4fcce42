"""Which LLM answers: every backend kind by name (``make_backend``) and the typed config the CLIs share
(``BackendConfig``).

This module sits above the two packages it joins, so that imports point one way: ``teamsrl_jax.backends``
(the interface, accounting, cache, OpenAI-compatible client, JAX model) imports nothing of the environment;
``teamsrl_jax.env`` (whose ``simulator`` imitates an instructor and reviewer) imports only the interface from
``backends``; and only the entry points above both import this factory. Each kind's module is imported when
that kind is made: the OpenAI SDK takes about a second, the JAX model far longer.

    from teamsrl_jax.backends import SamplingParams
    from teamsrl_jax.llm import make_backend
    with make_backend("jax", model="SmolLM2-135M-Instruct.Q4_1.gguf", cache_path="runs/cache.sqlite") as llm:
        replies = llm.generate(prompts, SamplingParams(temperature=0.0, logprobs=20), role="reviewer")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from teamsrl_jax.backends import Backend, CachedBackend, CompletionCache, SamplingParams

KINDS = ("openai", "simulated", "jax")


def make_backend(kind: str, *, cache_path: str | None = None, **kwargs: Any) -> Backend:
    """A backend of ``kind`` built with ``kwargs`` (its constructor's arguments); with ``cache_path``,
    wrapped in a ``CachedBackend`` over that SQLite file (closing the backend closes the cache).

    Kinds: "openai" (``backends.openai_backend.OpenAIBackend``), "simulated" (``env.simulator.SimulatedBackend``)
    and "jax" (``backends.jax_backend.JaxBackend(model, dtype=, mesh=, batch_slots=, seed=)``; ``model`` is
    a .gguf file or a Hugging Face folder)."""
    if kind == "openai":
        from teamsrl_jax.backends.openai_backend import OpenAIBackend
        backend: Backend = OpenAIBackend(**kwargs)
    elif kind == "simulated":
        from teamsrl_jax.env.simulator import SimulatedBackend
        backend = SimulatedBackend(**kwargs)
    elif kind == "jax":
        if not kwargs.get("model"):
            raise ValueError("model must be set for kind 'jax' (a .gguf file or a Hugging Face folder)")
        from teamsrl_jax.backends.jax_backend import JaxBackend
        backend = JaxBackend(**kwargs)
    else:
        raise ValueError(f"unknown backend kind {kind!r}; expected one of: {', '.join(KINDS)}")
    if cache_path is not None:
        backend = CachedBackend(backend, CompletionCache(cache_path))
    return backend


@dataclass
class BackendConfig:
    """Which LLM to query and how; shared by the CLIs (one per role where roles differ)."""

    kind: str = "simulated"
    """Backend kind: "openai" (any OpenAI-compatible HTTP endpoint), "jax" (our own JAX model, in process) or
    "simulated" (offline)."""
    base_url: str = "https://api.openai.com/v1"
    """Endpoint root for kind "openai", e.g. http://127.0.0.1:8000/v1 for a local vLLM server."""
    model: str = ""
    """Model: the id sent to the endpoint (kind "openai", required), a .gguf file or Hugging Face folder (kind
    "jax", required); part of the cache key. "" keeps the simulated backend's default."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (the key itself is never in a config).
    Unset is allowed for local servers, which get the placeholder "EMPTY"."""
    concurrency: int = 64
    """Requests in flight at once (kinds openai and simulated)."""
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
    """Default sampling seed for servers that honour one; for kind jax, the seed of its sampler (None: 0)."""
    dtype: str = "float32"
    """Dtype the model computes in, e.g. "float32" or "bfloat16"; kind jax only."""
    mesh: str = ""
    """Device mesh as "data=..,fsdp=..,tensor=.." (-1 fills the rest); "" lets the backend choose; kind jax only."""
    batch_slots: int = 16
    """Sequences decoded together (rows of the KV cache); kind jax only."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further constructor arguments for the backend (e.g. the simulated backend's options)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"BackendConfig.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "jax" and not self.model:
            raise ValueError("BackendConfig.model must name a .gguf file or a Hugging Face folder for kind 'jax'")
        if isinstance(self.batch_slots, bool) or not isinstance(self.batch_slots, int) or self.batch_slots < 1:
            raise ValueError(f"BackendConfig.batch_slots must be an integer >= 1, got {self.batch_slots!r}")

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
        elif self.kind == "jax":
            kwargs.update(dtype=self.dtype, mesh=self.mesh, batch_slots=self.batch_slots)
            if self.seed is not None:
                kwargs["seed"] = self.seed
        if self.model or self.kind != "simulated":  # the simulated backend has a default model id
            kwargs["model"] = self.model
        return make_backend(self.kind, cache_path=self.cache_path, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
