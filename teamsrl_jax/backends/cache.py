"""A persistent completion cache (SQLite, WAL) and ``CachedBackend``, which puts it in front of any backend.

A rerun or a resumed run makes no repeated queries: each completion is committed the moment it arrives
(autocommit, one row per completion), so a kill -9 loses at most the requests in flight. WAL with
``synchronous=NORMAL`` keeps every committed row across a process crash (not across a power cut, which
would need FULL). Several processes may share one file: readers never block, a writer waits up to
``timeout_s`` for the lock.

Key: sha256 of the canonical JSON of (backend name, model, ``params.cache_key()``, prompt, and the sample
index when temperature > 0). Nothing else (role, endpoint URL, concurrency, API key) enters the key.

A completion's token log-probabilities (``Completion.logprobs``) are stored with it, as JSON, so a resumed run
reads the same probabilities and computes the same rewards. A file written before that column existed
gains it on open (its rows have none: they were asked without ``logprobs``, which is in the key).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from teamsrl_jax.backends.base import (Backend, Completion, IncrementalBackend, OnResult, Role, SamplingParams,
                                       TokenLogprob, check_role, resolve_sample_indices)

COLUMNS = ("key", "text", "prompt_tokens", "completion_tokens", "finish_reason", "created", "logprobs")
SCHEMA = """CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,           -- sha256 hex of the canonical request, see cache_key()
    text TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    finish_reason TEXT,
    created REAL NOT NULL,          -- unix time of the insert
    logprobs TEXT                   -- JSON [[token, logprob, [[alternative, logprob], ...]], ...]; NULL: none
) WITHOUT ROWID"""
_OLD_COLUMNS = COLUMNS[:-1]  # before token log-probabilities were stored
_CHUNK = 500  # keys per SELECT ... IN (...), under SQLite's bound-parameter limit


class CacheError(RuntimeError):
    """The cache file cannot be used (not SQLite, wrong schema, locked too long, disk error)."""


def cache_key(backend: str, model: str, params: SamplingParams, prompt: str, sample_index: int = 0) -> str:
    """The cache key of one request. The sample index counts only when sampling is random (temperature > 0)."""
    request = {"backend": backend, "model": model, "params": params.cache_key(), "prompt": prompt,
               "sample": int(sample_index) if params.temperature > 0 else None}
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    path: str
    entries: int
    """Rows in the file (all processes)."""
    hits: int
    """Lookups answered from the file by this process."""
    misses: int
    """Lookups this process had to send to the model."""
    writes: int
    """Completions this process stored."""


class CompletionCache:
    """Key -> completion on disk. Thread-safe; one connection per instance."""

    def __init__(self, path: str | os.PathLike, *, timeout_s: float = 60.0):
        self.path = Path(path)
        self.hits = self.misses = self.writes = 0
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = None
        try:
            # isolation_level=None: autocommit, so each put() is its own committed transaction.
            self._conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.DatabaseError(f"could not switch to WAL journaling (got {mode})")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(SCHEMA)
            found = self._columns()
            if found == _OLD_COLUMNS:
                try:
                    self._conn.execute("ALTER TABLE completions ADD COLUMN logprobs TEXT")
                except sqlite3.OperationalError:  # another process added it first
                    pass
                found = self._columns()
            if found != COLUMNS:
                raise sqlite3.DatabaseError(f"table 'completions' has columns {found}, expected {COLUMNS}")
        except sqlite3.Error as e:
            self.close()
            raise CacheError(f"completion cache {self.path} is not a usable SQLite cache: {_one_line(e)}") from None

    def _columns(self) -> tuple[str, ...]:
        return tuple(row[1] for row in self._conn.execute("PRAGMA table_info(completions)"))

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        """The cached completions among ``keys`` (marked ``cached=True``); absent keys are left out."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Completion] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            rows = self._execute(f"SELECT key, text, prompt_tokens, completion_tokens, finish_reason, logprobs "
                                 f"FROM completions WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for key, text, pt, ct, fr, lp in rows:
                found[key] = Completion(text, pt, ct, fr, cached=True, logprobs=decode_logprobs(lp))
        with self._lock:
            self.hits += len(found)
            self.misses += len(keys) - len(found)
        return found

    def get(self, key: str) -> Completion | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, completion: Completion) -> None:
        """Store and commit one completion. The first stored value of a key wins (also across processes)."""
        self._execute(f"INSERT OR IGNORE INTO completions ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (key, completion.text, completion.prompt_tokens, completion.completion_tokens,
                       completion.finish_reason, time.time(), encode_logprobs(completion.logprobs)))
        with self._lock:
            self.writes += 1

    def __len__(self) -> int:
        return self._execute("SELECT COUNT(*) FROM completions")[0][0]

    def stats(self) -> CacheStats:
        return CacheStats(str(self.path), len(self), self.hits, self.misses, self.writes)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> CompletionCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CompletionCache({str(self.path)!r})"

    def _execute(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        if self._conn is None:
            raise CacheError(f"completion cache {self.path} is closed")
        try:
            with self._lock:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise CacheError(f"completion cache {self.path}: {_one_line(e)}") from None


class CachedBackend(IncrementalBackend):
    """``inner`` behind ``cache``: hits are served from disk, only misses are queried (one request per
    distinct key, so identical greedy prompts in a batch cost one query), and each result is stored the
    moment ``inner`` reports it. Shares ``inner.accounting``, where it counts the hits. ``close()``
    closes both ``inner`` and ``cache``.

    Thread-safe, and calls from several threads never query one key twice: a key another call is
    already querying is waited for and shared (counted as a cache hit), as if the calls had run one
    after the other. So a rerun or resume, which reads every key from the cache, sees what the run saw."""

    def __init__(self, inner: Backend, cache: CompletionCache):
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.model = inner.model
        self.accounting = inner.accounting
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future] = {}  # key -> the completion another call is fetching

    def __repr__(self) -> str:
        return f"CachedBackend({self.inner!r}, {self.cache!r})"

    def generate_incremental(self, prompts: Sequence[str], params: SamplingParams, role: Role,
                             sample_indices: Sequence[int] | None = None, *,
                             on_result: OnResult | None = None) -> list[Completion]:
        check_role(role)
        indices = resolve_sample_indices(prompts, sample_indices)
        keys = [cache_key(self.name, self.model, params, p, k) for p, k in zip(prompts, indices)]
        results: list[Completion | None] = [None] * len(prompts)
        pending: dict[str, list[int]] = {}  # missing key -> batch positions waiting for it

        def deliver(key: str, completion: Completion, fresh: bool) -> None:
            for n, i in enumerate(pending.pop(key)):  # repeats of a greedy prompt were not queried
                results[i] = completion if fresh and n == 0 else dataclasses.replace(completion, cached=True)
                if on_result is not None:
                    on_result(i, results[i])

        with self._lock:  # look up and claim atomically: a key is stored before its claim is released
            found = self.cache.get_many(keys)
            for i, key in enumerate(keys):
                if key not in found:
                    pending.setdefault(key, []).append(i)
            mine: dict[str, Future] = {}
            theirs: dict[str, Future] = {}  # keys another call is querying
            for key in pending:
                if key in self._in_flight:
                    theirs[key] = self._in_flight[key]
                else:
                    mine[key] = self._in_flight[key] = Future()
        for i, key in enumerate(keys):
            if key in found:
                results[i] = found[key]
                if on_result is not None:
                    on_result(i, results[i])
        self.accounting.record(role, cache_hits=len(prompts) - len(mine))
        try:
            if mine:
                miss_keys = list(mine)

                def store(j: int, completion: Completion) -> None:
                    self.cache.put(miss_keys[j], completion)
                    self._release(miss_keys[j], completion)
                    deliver(miss_keys[j], completion, fresh=True)

                first = [pending[k][0] for k in miss_keys]
                fresh = self.inner.generate_incremental([prompts[i] for i in first], params, role,
                                                        [indices[i] for i in first], on_result=store)
                for j, key in enumerate(miss_keys):  # in case an inner backend reported less than it returned
                    if key in pending:
                        store(j, fresh[j])
        except BaseException as e:
            for key in mine:
                self._release(key, error=e)
            raise
        for key, future in theirs.items():
            deliver(key, future.result(), fresh=False)
        return results  # type: ignore[return-value]

    def _release(self, key: str, completion: Completion | None = None, error: BaseException | None = None) -> None:
        """Hand a claimed key's outcome to the calls waiting for it (a completion only once it is stored)."""
        with self._lock:
            future = self._in_flight.pop(key, None)
        if future is not None and not future.done():
            if error is None:
                future.set_result(completion)
            else:
                future.set_exception(error)

    def close(self) -> None:
        self.inner.close()
        self.cache.close()


def encode_logprobs(logprobs: list[TokenLogprob] | None) -> str | None:
    """Compact JSON of per-token log-probabilities (ASCII escapes, so a token holding half a UTF-8 character
    is stored too); None stays None."""
    if logprobs is None:
        return None
    return json.dumps([[t.token, t.logprob, [list(a) for a in t.top]] for t in logprobs], separators=(",", ":"))


def decode_logprobs(raw: str | None) -> list[TokenLogprob] | None:
    """The inverse of ``encode_logprobs``."""
    if raw is None:
        return None
    return [TokenLogprob(token, logprob, tuple((a, lp) for a, lp in top)) for token, logprob, top in json.loads(raw)]


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
