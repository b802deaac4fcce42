"""LLM backends behind one batched interface (``base.Backend.generate(prompts, params, role)``).

This package holds what every backend shares and knows nothing of the instruction environment: the interface
(``base``), per-role accounting, the persistent ``CompletionCache`` any backend can sit behind, the
OpenAI-compatible client (``openai_backend``: OpenAI, vLLM, SGLang, llama.cpp server, Ollama) and our own JAX
model (``jax_backend``). The offline simulator imitates the environment's instructor and reviewer, so it lives
beside them (``teamsrl_jax.env.simulator``); the factory that knows every kind, ``make_backend`` and the
``BackendConfig`` the CLIs share, sits above both in ``teamsrl_jax.llm``:

    from teamsrl_jax.backends import SamplingParams
    from teamsrl_jax.llm import make_backend
    with make_backend("openai", model="meta-llama/Llama-3.1-8B-Instruct", base_url="http://127.0.0.1:8000/v1",
                      cache_path="runs/cache.sqlite") as llm:       # a local vLLM server needs no key
        replies = llm.generate(prompts, SamplingParams(temperature=1.0, top_k=40), role="instructor")
    print(llm.accounting.format_table())
"""

from __future__ import annotations

from teamsrl_jax.backends.accounting import QueryAccounting
from teamsrl_jax.backends.base import (ROLES, Backend, BackendError, BackendRequestError, BackendUnavailableError,
                                       Completion, IncrementalBackend, Role, SamplingParams, TokenLogprob)
from teamsrl_jax.backends.cache import CachedBackend, CacheError, CompletionCache, cache_key

__all__ = ["ROLES", "Backend", "BackendError", "BackendRequestError", "BackendUnavailableError", "CacheError",
           "CachedBackend", "Completion", "CompletionCache", "IncrementalBackend", "QueryAccounting", "Role",
           "SamplingParams", "TokenLogprob", "cache_key"]
