"""The SQLite completion cache and CachedBackend (over an in-process backend that counts its calls)."""

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from teamsrl_jax.backends.accounting import QueryAccounting
from teamsrl_jax.backends.base import Backend, Completion, SamplingParams, TokenLogprob
from teamsrl_jax.backends.cache import COLUMNS, CachedBackend, CacheError, CompletionCache, cache_key


class CountingBackend(Backend):
    """Replies "<prompt>#<sample index>" and records every batch it is asked for."""

    def __init__(self, name="counting", model="m", fail_after=None):
        self.name, self.model, self.accounting = name, model, QueryAccounting()
        self.calls: list[tuple[list[str], list[int]]] = []
        self.fail_after = fail_after

    def generate(self, prompts, params, role, sample_indices=None):
        return self.generate_incremental(prompts, params, role, sample_indices)

    def generate_incremental(self, prompts, params, role, sample_indices=None, *, on_result=None):
        indices = list(sample_indices) if sample_indices is not None else [0] * len(prompts)
        self.calls.append((list(prompts), indices))
        out = []
        for i, (p, k) in enumerate(zip(prompts, indices)):
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("inner backend died")
            out.append(Completion(f"{p}#{k}", prompt_tokens=len(p), completion_tokens=2, finish_reason="stop"))
            self.accounting.record(role, queries=1)
            if on_result is not None:
                on_result(i, out[-1])
        return out


GREEDY = SamplingParams(temperature=0.0)
HOT = SamplingParams(temperature=1.0)


def test_cache_key_depends_on_what_changes_the_completion():
    key = cache_key("openai", "m", HOT, "p", 0)
    assert key == cache_key("openai", "m", SamplingParams(temperature=1.0), "p", 0)
    others = [cache_key("simulated", "m", HOT, "p", 0), cache_key("openai", "m2", HOT, "p", 0),
              cache_key("openai", "m", SamplingParams(temperature=1.0, seed=3), "p", 0),
              cache_key("openai", "m", HOT, "p ", 0), cache_key("openai", "m", HOT, "p", 1)]
    assert len({key, *others}) == 6
    # greedy decoding: every sample of a prompt is the same request
    assert cache_key("openai", "m", GREEDY, "p", 0) == cache_key("openai", "m", GREEDY, "p", 7)


def test_round_trip_persists_across_reopen(tmp_path):
    path = tmp_path / "c.sqlite"
    with CompletionCache(path) as cache:
        cache.put("k1", Completion("hello", 3, 1, "stop"))
        cache.put("k1", Completion("second write loses", 0, 0, "stop"))
        assert cache.get("k2") is None
    with CompletionCache(path) as cache:
        assert cache.get("k1") == Completion("hello", 3, 1, "stop", cached=True)
        stats = cache.stats()
        assert (stats.entries, stats.hits, stats.misses, stats.writes) == (1, 1, 0, 0)
        assert cache._execute("PRAGMA journal_mode")[0][0] == "wal"


LOGPROBS = [TokenLogprob("Score", -0.01, (("Score", -0.01), ("Rating", -4.6))),
            TokenLogprob(" 7", -0.36, ((" 7", -0.36), (" 8", -1.2), (" 6", -float("inf")))),
            TokenLogprob("\udce2\u00e9", -2.5e-7, ())]  # half a UTF-8 character, as byte-level tokens give


def test_logprobs_round_trip_exactly(tmp_path):
    path = tmp_path / "c.sqlite"
    with CompletionCache(path) as cache:
        cache.put("with", Completion("Score 7", 3, 2, "stop", logprobs=LOGPROBS))
        cache.put("without", Completion("Score 7", 3, 2, "stop"))
    with CompletionCache(path) as cache:
        assert cache.get("with") == Completion("Score 7", 3, 2, "stop", cached=True, logprobs=LOGPROBS)
        assert cache.get("without").logprobs is None


def test_a_cache_written_before_logprobs_gains_the_column(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE completions (key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens INTEGER, "
                     "completion_tokens INTEGER, finish_reason TEXT, created REAL NOT NULL) WITHOUT ROWID")
        conn.execute("INSERT INTO completions VALUES ('k', 'old reply', 1, 2, 'stop', 0.0)")
    with CompletionCache(path) as cache, CompletionCache(path) as second:  # the second open finds it migrated
        assert cache.get("k") == Completion("old reply", 1, 2, "stop", cached=True)
        cache.put("new", Completion("x", logprobs=LOGPROBS[:1]))
        assert second.get("new").logprobs == LOGPROBS[:1]
        assert tuple(r[1] for r in cache._execute("PRAGMA table_info(completions)")) == COLUMNS


def test_cached_backend_serves_logprobs_on_hits(tmp_path):
    class Scoring(CountingBackend):
        def generate_incremental(self, prompts, params, role, sample_indices=None, *, on_result=None):
            out = super().generate_incremental(prompts, params, role, sample_indices)
            for i, c in enumerate(out):
                c.logprobs = LOGPROBS if params.logprobs else None
                if on_result is not None:
                    on_result(i, c)
            return out

    params = SamplingParams(temperature=0.0, logprobs=20)
    first = CachedBackend(Scoring(), CompletionCache(tmp_path / "c.sqlite"))
    assert first.generate(["a"], params, "reviewer")[0].logprobs == LOGPROBS
    first.close()
    again = CachedBackend(Scoring(), CompletionCache(tmp_path / "c.sqlite"))
    hit = again.generate(["a"], params, "reviewer")[0]
    assert hit.cached and hit.logprobs == LOGPROBS and again.inner.calls == []
    assert again.generate(["a"], GREEDY, "reviewer")[0].logprobs is None  # another key: queried
    assert again.inner.calls == [(["a"], [0])]
    again.close()


def test_not_a_database_gives_one_line_error_naming_the_path(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"definitely not sqlite " * 200)
    with pytest.raises(CacheError) as info:
        CompletionCache(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_foreign_schema_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE completions (a, b)")
    with pytest.raises(CacheError, match="columns"):
        CompletionCache(path)


def test_two_processes_write_one_file(tmp_path):
    path = tmp_path / "shared.sqlite"
    script = textwrap.dedent(f"""
        from teamsrl_jax.backends.base import Completion
        from teamsrl_jax.backends.cache import CompletionCache
        cache = CompletionCache({str(path)!r}, timeout_s=30)
        print("ready", flush=True)
        for i in range(2000):
            cache.put(f"child{{i}}", Completion(str(i)))
        """)
    with CompletionCache(path, timeout_s=30) as cache:
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline() == "ready\n"  # both writers now race for the same file
        for i in range(2000):
            cache.put(f"parent{i}", Completion(str(i)))
        assert child.wait(timeout=60) == 0
        assert len(cache) == 4000
        assert cache.get("child1999").text == "1999"


def test_cached_backend_queries_only_misses_and_dedupes_greedy_repeats(tmp_path):
    inner = CountingBackend()
    backend = CachedBackend(inner, CompletionCache(tmp_path / "c.sqlite"))
    assert backend.accounting is inner.accounting
    out = backend.generate(["a", "b", "a"], GREEDY, "reviewer")
    assert [c.text for c in out] == ["a#0", "b#0", "a#0"]
    assert [c.cached for c in out] == [False, False, True]
    assert inner.calls == [(["a", "b"], [0, 0])]
    out = backend.generate(["c", "b", "a"], GREEDY, "instructor")  # role is not part of the key
    assert [c.text for c in out] == ["c#0", "b#0", "a#0"] and [c.cached for c in out] == [False, True, True]
    assert inner.calls[-1] == (["c"], [0])
    assert inner.accounting.get("reviewer")["cache_hits"] == 1
    assert inner.accounting.get("instructor")["cache_hits"] == 2
    assert inner.accounting.total()["queries"] == 3
    backend.close()


def test_cached_backend_keeps_random_samples_apart(tmp_path):
    inner = CountingBackend()
    backend = CachedBackend(inner, CompletionCache(tmp_path / "c.sqlite"))
    assert [c.text for c in backend.generate(["a", "a", "b"], HOT, "responder")] == ["a#0", "a#1", "b#0"]
    assert inner.calls == [(["a", "a", "b"], [0, 1, 0])]
    out = backend.generate(["a", "a"], HOT, "responder", sample_indices=[1, 2])
    assert [c.text for c in out] == ["a#1", "a#2"] and [c.cached for c in out] == [True, False]
    assert inner.calls[-1] == (["a"], [2])
    # the same samples through a backend with another model are misses
    other = CachedBackend(CountingBackend(model="m2"), backend.cache)
    other.generate(["a"], HOT, "responder")
    assert other.inner.calls == [(["a"], [0])]
    backend.close()


def test_results_stored_before_an_inner_failure_survive(tmp_path):
    path = tmp_path / "c.sqlite"
    backend = CachedBackend(CountingBackend(fail_after=2), CompletionCache(path))
    prompts = [f"p{i}" for i in range(5)]
    with pytest.raises(RuntimeError, match="died"):
        backend.generate(prompts, GREEDY, "responder")
    backend.close()
    inner = CountingBackend()
    backend = CachedBackend(inner, CompletionCache(path))
    assert [c.text for c in backend.generate(prompts, GREEDY, "responder")] == [f"p{i}#0" for i in range(5)]
    assert inner.calls == [(["p2", "p3", "p4"], [0, 0, 0])]
    backend.close()


def test_concurrent_calls_query_each_key_once_and_share_it(tmp_path):
    """Two threads asking for overlapping keys: every key is queried once; both see the stored completion."""
    import threading
    import time

    class Slow(CountingBackend):
        def generate_incremental(self, prompts, params, role, sample_indices=None, *, on_result=None):
            time.sleep(0.05)
            return super().generate_incremental(prompts, params, role, sample_indices, on_result=on_result)

    inner = Slow()
    backend = CachedBackend(inner, CompletionCache(tmp_path / "c.sqlite"))
    barrier, out = threading.Barrier(4), {}

    def call(name, prompts):
        barrier.wait()
        out[name] = [c.text for c in backend.generate(prompts, HOT, "responder")]

    batches = {"a": ["p1", "p2", "p3"], "b": ["p2", "p3", "p4"], "c": ["p3", "p1"], "d": ["p5"]}
    threads = [threading.Thread(target=call, args=item) for item in batches.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queried = [p for prompts, _ in inner.calls for p in prompts]
    assert sorted(queried) == ["p1", "p2", "p3", "p4", "p5"]
    assert out == {name: [f"{p}#0" for p in prompts] for name, prompts in batches.items()}
    assert inner.accounting.get("responder")["cache_hits"] == 9 - 5 and backend._in_flight == {}
    backend.close()


def test_a_failed_query_fails_the_calls_waiting_for_it(tmp_path):
    import threading

    started = threading.Event()

    class Failing(CountingBackend):
        def generate_incremental(self, prompts, params, role, sample_indices=None, *, on_result=None):
            started.set()
            threading.Event().wait(0.1)
            raise RuntimeError("inner backend died")

    backend = CachedBackend(Failing(), CompletionCache(tmp_path / "c.sqlite"))
    errors = []

    def call():
        try:
            backend.generate(["x"], GREEDY, "responder")
        except RuntimeError as e:
            errors.append(str(e))

    first = threading.Thread(target=call)
    first.start()
    started.wait()
    call()  # waits for the first call's query of "x", which fails
    first.join()
    assert errors == ["inner backend died"] * 2 and backend._in_flight == {}
    backend.close()
