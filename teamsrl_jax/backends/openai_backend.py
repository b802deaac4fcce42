"""``OpenAIBackend``: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, llama.cpp
server, Ollama) through the official SDK's async client.

Why our own retry loop: the SDK's retries are switched off (``max_retries=0``) so that one policy is in
force and every failed attempt is counted: exponential backoff with full jitter, at least the server's
``Retry-After`` / ``retry-after-ms`` on 429, retries on 408/409/429/5xx, timeouts, dropped connections and
malformed replies; other 4xx fail at once.

Event loop: ``generate`` is synchronous. The backend owns a private asyncio loop running on its own daemon
thread; each batch is submitted to it (``asyncio.run_coroutine_threadsafe``) and the caller blocks until the
batch is done, so it works from plain synchronous code, from inside a running loop (a notebook), and from
several threads at once: batches from different threads run concurrently and share one limit of
``concurrency`` requests in flight (one semaphore on the loop), as the server's slots are shared.

Secrets: the API key is read from the environment variable named by ``api_key_env`` and handed only to
the SDK client (which keeps it to sign requests); no attribute of ours holds it, and it is scrubbed from
every message we log or raise. Raised errors carry no chained SDK exception (those hold the request).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import ipaddress
import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import openai
from tqdm.auto import tqdm

from teamsrl_jax.backends.accounting import QueryAccounting
from teamsrl_jax.backends.base import (BackendRequestError, BackendUnavailableError, Completion,
                                       IncrementalBackend, OnResult, Role, SamplingParams, TokenLogprob, check_role,
                                       resolve_sample_indices)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOCAL_PLACEHOLDER_KEY = "EMPTY"
MAX_RETRY_AFTER_S = 120.0  # a longer server-requested wait is cut to this (the SDK draws the same line)
RETRYABLE_STATUS = frozenset({408, 409, 429})  # plus every 5xx


@dataclass(frozen=True)
class _Retryable:
    """One failed attempt that may succeed when repeated."""

    cause: str
    retry_after: float | None = None


def is_local_url(base_url: str) -> bool:
    """True for loopback and private-network hosts (a local vLLM/llama.cpp/Ollama server needs no key)."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_loopback or addr.is_private or addr.is_unspecified


def resolve_api_key(api_key_env: str, base_url: str) -> str:
    """The key from ``$api_key_env``; "EMPTY" for a local server when the variable is unset."""
    key = os.environ.get(api_key_env, "")
    if key:
        return key
    if is_local_url(base_url):
        return LOCAL_PLACEHOLDER_KEY
    raise ValueError(f"environment variable {api_key_env} is not set; it must hold the API key for {base_url}")


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date; else None."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        value = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
        return max(0.0, float(value))
    return value if math.isfinite(value) and value >= 0 else None


class OpenAIBackend(IncrementalBackend):
    """Batched chat completions from an OpenAI-compatible server; see the module docstring."""

    name = "openai"

    def __init__(self, model: str, base_url: str = DEFAULT_BASE_URL, *, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 64, timeout_s: float = 120.0, max_retries: int = 6,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 60.0, progress_min_batch: int = 256,
                 accounting: QueryAccounting | None = None):
        if not model:
            raise ValueError("model must be set (the model id the endpoint serves)")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._warned_top_k = False
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.progress_min_batch = progress_min_batch
        self.accounting = accounting if accounting is not None else QueryAccounting()
        key = resolve_api_key(api_key_env, self.base_url)

        def scrub(text: str) -> str:  # the key lives in this closure, not in an attribute repr() or vars() show
            return text.replace(key, "***") if key != LOCAL_PLACEHOLDER_KEY else text

        self._scrub = scrub
        self._client = openai.AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s)
        self._rng = random.Random()
        self._semaphore: asyncio.Semaphore | None = None  # made on the loop thread, shared by all batches
        self._lock = threading.Lock()  # guards _closed and _batches
        self._batches: set[concurrent.futures.Future] = set()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-backend-loop", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return (f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r}, "
                f"concurrency={self.concurrency}, timeout_s={self.timeout_s}, max_retries={self.max_retries})")

    # ---- synchronous entry points -------------------------------------------------------------------

    def generate_incremental(self, prompts: Sequence[str], params: SamplingParams, role: Role,
                             sample_indices: Sequence[int] | None = None, *,
                             on_result: OnResult | None = None) -> list[Completion]:
        check_role(role)
        resolve_sample_indices(prompts, sample_indices)  # validates the length; requests do not depend on it
        if not prompts:
            return []
        started, done = threading.Event(), threading.Event()

        async def batch() -> list[Completion]:
            started.set()
            try:
                return await self._generate_async(list(prompts), params, role, on_result)
            finally:
                done.set()

        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            future = asyncio.run_coroutine_threadsafe(batch(), self._loop)
            self._batches.add(future)
        try:
            return future.result()
        except BaseException:
            if not future.done():  # interrupted (Ctrl-C): cancel the batch so no request outlives this call
                future.cancel()  # a batch not started by now never starts
                if started.is_set():
                    done.wait(self.timeout_s)
            raise
        finally:
            with self._lock:
                self._batches.discard(future)

    def close(self) -> None:
        """Wait for batches in flight, close the HTTP client and stop the loop thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._batches)
        concurrent.futures.wait(pending)
        asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    # ---- the batch and one request --------------------------------------------------------------------

    async def _generate_async(self, prompts: list[str], params: SamplingParams, role: str,
                              on_result: OnResult | None) -> list[Completion]:
        if self._semaphore is None:  # on the loop thread: no race
            self._semaphore = asyncio.Semaphore(self.concurrency)
        semaphore = self._semaphore
        results: list[Completion | None] = [None] * len(prompts)
        bar = tqdm(total=len(prompts), desc=f"{role} queries", leave=False, dynamic_ncols=True,
                   disable=True if len(prompts) < self.progress_min_batch else None)

        async def one(i: int) -> None:
            results[i] = await self._request_with_retries(prompts[i], params, role, semaphore)
            if on_result is not None:
                on_result(i, results[i])
            bar.update(1)

        tasks = [asyncio.ensure_future(one(i)) for i in range(len(prompts))]
        try:
            await asyncio.gather(*tasks)  # the first failure propagates; the rest are cancelled below
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            bar.close()
        return results  # type: ignore[return-value]

    async def _request_with_retries(self, prompt: str, params: SamplingParams, role: str,
                                    semaphore: asyncio.Semaphore) -> Completion:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            if attempt:
                self.accounting.record(role, retries=1)
            async with semaphore:
                outcome = await self._attempt(prompt, params)
            if isinstance(outcome, Completion):
                self.accounting.record(role, queries=1, prompt_tokens=outcome.prompt_tokens or 0,
                                       completion_tokens=outcome.completion_tokens or 0)
                return outcome
            self.accounting.record(role, errors=1)
            if isinstance(outcome, BackendRequestError):
                raise outcome
            if attempt + 1 < attempts:
                delay = self._backoff(attempt, outcome.retry_after)
                log.debug("%s: attempt %d/%d failed (%s); retrying in %.3f s",
                          self.base_url, attempt + 1, attempts, outcome.cause, delay)
                await asyncio.sleep(delay)
        raise BackendUnavailableError(
            f"{self.base_url} unavailable after {attempts} attempt(s) (model {self.model!r}); "
            f"last error: {outcome.cause}")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^attempt)], but never shorter than Retry-After."""
        delay = self._rng.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * 2.0 ** attempt))
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        return delay

    async def _attempt(self, prompt: str, params: SamplingParams) -> Completion | _Retryable | BackendRequestError:
        """One HTTP request. Failures are returned, not raised, so no SDK exception (which holds the
        request and its headers) is chained onto what we raise."""
        try:
            reply = await asyncio.wait_for(self._client.chat.completions.create(**self._request_kwargs(prompt, params)),
                                           self.timeout_s)
            return _to_completion(reply)
        except openai.APIStatusError as e:
            message = self._one_line(f"HTTP {e.status_code}: {_server_message(e)}")
            if e.status_code in RETRYABLE_STATUS or e.status_code >= 500:
                return _Retryable(message, parse_retry_after(e.response.headers))
            return BackendRequestError(f"{self.base_url} refused the request (model {self.model!r}) with {message}; "
                                       "not retried")
        except (openai.APITimeoutError, asyncio.TimeoutError):
            return _Retryable(f"no reply within {self.timeout_s:g} s")
        except openai.APIConnectionError as e:
            return _Retryable(self._one_line(f"connection failed: {e.__cause__ or e}"))
        except (json.JSONDecodeError, openai.APIResponseValidationError, _MalformedReply) as e:
            return _Retryable(self._one_line(f"malformed reply: {e}"))

    def _request_kwargs(self, prompt: str, params: SamplingParams) -> dict[str, Any]:
        messages = ([{"role": "system", "content": params.system}] if params.system is not None else [])
        messages.append({"role": "user", "content": prompt})
        extra_body: dict[str, Any] = {}
        if params.prefix is not None:  # the reply continues this assistant message (vLLM, SGLang, llama.cpp)
            messages.append({"role": "assistant", "content": params.prefix})
            extra_body.update(continue_final_message=True, add_generation_prompt=False)
        kwargs: dict[str, Any] = dict(model=self.model, messages=messages, temperature=params.temperature,
                                      top_p=params.top_p, max_tokens=params.max_tokens)
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if params.top_k is not None:  # not in the OpenAI schema; vLLM, SGLang, llama.cpp and Ollama read it
            if urlsplit(self.base_url).hostname == "api.openai.com":  # which refuses it (400): sample without it
                if not self._warned_top_k:
                    log.warning("api.openai.com does not take top_k: sampling without top_k=%d", params.top_k)
                    self._warned_top_k = True
            else:
                extra_body["top_k"] = params.top_k
        if extra_body:
            kwargs["extra_body"] = extra_body
        if params.logprobs is not None:
            kwargs.update(logprobs=True, top_logprobs=params.logprobs)
        return kwargs

    def _one_line(self, text: str, limit: int = 300) -> str:
        text = " ".join(self._scrub(str(text)).split())
        return text if len(text) <= limit else text[: limit - 3] + "..."


class _MalformedReply(ValueError):
    """A 200 reply that is not a usable chat completion."""


def _to_completion(reply: Any) -> Completion:
    choices = getattr(reply, "choices", None)
    if not choices:
        raise _MalformedReply("no choices in the reply")
    message = getattr(choices[0], "message", None)
    text = getattr(message, "content", None)
    if text is not None and not isinstance(text, str):
        raise _MalformedReply(f"message content is {type(text).__name__}, not text")
    usage = getattr(reply, "usage", None)
    return Completion(text=text or "", prompt_tokens=getattr(usage, "prompt_tokens", None),
                      completion_tokens=getattr(usage, "completion_tokens", None),
                      finish_reason=getattr(choices[0], "finish_reason", None),
                      logprobs=_to_logprobs(getattr(choices[0], "logprobs", None)))


def _to_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    """``choice.logprobs.content[*].{token, logprob, top_logprobs}`` as TokenLogprobs; None when the server
    sent none (not asked, or not supported) or sent them in another shape: the reviewer's score then comes
    from the text, and the run's metrics show it (a quirk of the logprobs is no reason to fail the request)."""
    content = getattr(logprobs, "content", None)
    if content is None:
        return None
    try:
        return [TokenLogprob(str(item.token), float(item.logprob),
                             tuple((str(a.token), float(a.logprob)) for a in item.top_logprobs or ()))
                for item in content]
    except (AttributeError, TypeError, ValueError) as e:
        log.warning("ignoring unreadable logprobs from the server (the score is read from the text): %s", e)
        return None


def _server_message(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(e.message)
