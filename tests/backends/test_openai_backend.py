"""OpenAIBackend against a local fault-injecting server (see conftest.py): retries, Retry-After, ordering,
accounting, failures, secrets, and the cache in front of it (rerun, kill -9 mid-batch)."""

import asyncio
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import traceback

import pytest

from teamsrl_jax.llm import BackendConfig, make_backend
from teamsrl_jax.backends.base import BackendRequestError, BackendUnavailableError, SamplingParams, TokenLogprob
from teamsrl_jax.backends.cache import CachedBackend, CompletionCache, cache_key
from teamsrl_jax.backends.openai_backend import OpenAIBackend, parse_retry_after

FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5.0)
GREEDY = SamplingParams(temperature=0.0, max_tokens=16)


def make(server, **kw):
    return OpenAIBackend("test-model", server.url, **{**FAST, **kw})


def test_faults_are_retried_and_every_prompt_completes_once_in_order(fake_server):
    faults = {"p-429": ["429"], "p-429ms": ["429ms"], "p-500": ["500", "503"], "p-slow": ["slow"],
              "p-trunc": ["truncated"], "p-trunc-cl": ["truncated_cl"], "p-drop": ["drop", "drop"],
              "p-junk": ["nochoices"]}
    prompts = [f"prompt {i}" for i in range(24)] + list(faults)
    prompts = prompts[::2] + prompts[1::2]  # faulty prompts spread through the batch
    server = fake_server(faults, slow_s=5.0)
    # the timeout must cut "slow" short yet never a normal reply on a loaded CI machine
    with make(server, concurrency=6, timeout_s=2.0, max_retries=3) as backend:
        out = backend.generate(prompts, SamplingParams(top_k=40, seed=3, stop=("###",)), "instructor")
    assert [c.text for c in out] == [server.reply_text(p) for p in prompts]
    assert all(server.successes[p] == 1 for p in prompts) and sum(server.successes.values()) == len(prompts)
    n_faults = sum(len(v) for v in faults.values())
    assert backend.accounting.get("instructor") == dict(
        queries=len(prompts), cache_hits=0, errors=n_faults, retries=n_faults,
        prompt_tokens=sum(len(p) for p in prompts),
        completion_tokens=sum(len(server.reply_text(p)) for p in prompts))
    assert 1 < server.max_in_flight <= 6
    body = server.by_prompt["prompt 0"][0].body
    assert (body["top_k"], body["seed"], body["stop"], body["max_tokens"]) == (40, 3, ["###"], 1024)
    assert out[0].finish_reason == "stop" and out[0].cached is False


def test_retry_after_is_honoured(fake_server):
    server = fake_server({"a": ["429"], "b": ["429ms"]}, retry_after="0.25")
    with make(server, backoff_base_s=0.001) as backend:  # jitter alone would wait < 2 ms
        backend.generate(["a", "b"], GREEDY, "reviewer")
    for prompt, wait in (("a", 0.25), ("b", 0.05)):
        first, second = server.by_prompt[prompt]
        assert second.t_start - first.t_end >= wait


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


def test_unreachable_endpoint_fails_after_retries_with_one_line(closed_port):
    url = f"http://127.0.0.1:{closed_port}/v1"
    with OpenAIBackend("m", url, max_retries=2, **FAST) as backend:
        with pytest.raises(BackendUnavailableError) as info:
            backend.generate(["hello"], GREEDY, "responder")
    message = str(info.value)
    assert "\n" not in message and url in message and "3 attempt" in message and "connection failed" in message
    assert backend.accounting.get("responder") == dict(queries=0, cache_hits=0, prompt_tokens=0,
                                                           completion_tokens=0, errors=3, retries=2)


def test_server_errors_exhaust_retries(fake_server):
    server = fake_server({"x": ["503"] * 10})
    with make(server, max_retries=2) as backend, pytest.raises(BackendUnavailableError, match="HTTP 503"):
        backend.generate(["x"], GREEDY, "responder")
    assert server.attempts["x"] == 3


@pytest.mark.parametrize("status", ["400", "401", "404"])
def test_client_errors_fail_at_once(fake_server, status):
    server = fake_server({"x": [status] * 5})
    with make(server, max_retries=5) as backend:
        start = time.monotonic()
        with pytest.raises(BackendRequestError) as info:
            backend.generate(["x", "y"], GREEDY, "reviewer")
    assert time.monotonic() - start < 2.0
    assert server.attempts["x"] == 1 and f"HTTP {status}" in str(info.value) and "\n" not in str(info.value)
    assert backend.accounting.get("reviewer")["retries"] == 0


def test_api_key_appears_nowhere(fake_server, api_key, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server = fake_server({"a": ["500"], "b": ["401"], "c": ["503"] * 5})
    cache_path = tmp_path / "cache.sqlite"
    config = BackendConfig(kind="openai", base_url=server.url, model="m", api_key_env="TEAMSRL_TEST_KEY",
                           cache_path=str(cache_path), max_retries=1, **FAST)
    backend = config.build()
    assert isinstance(backend, CachedBackend)
    texts = [repr(config), str(config), repr(backend), str(backend), repr(backend.inner), repr(vars(backend.inner))]
    out = backend.generate(["a", "ok"], GREEDY, "instructor")
    errors = []
    for prompt, kind in (("b", BackendRequestError), ("c", BackendUnavailableError)):
        with pytest.raises(kind) as info:
            backend.generate([prompt], GREEDY, "instructor")
        errors.append(info.value)
        texts += [str(info.value), "".join(traceback.format_exception(info.value))]
    backend.accounting.write_json(tmp_path / "accounting.json")
    backend.close()
    assert server.by_prompt["a"][0].authorization == f"Bearer {api_key}"  # the key did reach the server
    assert all(e.__context__ is None and e.__cause__ is None for e in errors)
    assert [c.text for c in out] == [server.reply_text("a"), server.reply_text("ok")]
    texts += [r.getMessage() for r in caplog.records]
    # the retry was logged with the server's message, which echoed the key: scrubbed
    assert any("HTTP 500" in t and "credential sent: Bearer ***" in t for t in texts)
    for text in texts:
        assert api_key not in text
    assert cache_path.exists() and (tmp_path / "accounting.json").exists()
    for path in tmp_path.iterdir():
        assert api_key.encode() not in path.read_bytes(), path


def test_local_server_without_key_uses_placeholder(fake_server, monkeypatch):
    monkeypatch.delenv("TEAMSRL_NO_SUCH_KEY", raising=False)
    server = fake_server()
    with make(server, api_key_env="TEAMSRL_NO_SUCH_KEY") as backend:
        backend.generate(["hi"], GREEDY, "responder")
    assert server.log[0].authorization == "Bearer EMPTY"
    with pytest.raises(ValueError, match="TEAMSRL_NO_SUCH_KEY"):
        OpenAIBackend("m", "https://api.example.com/v1", api_key_env="TEAMSRL_NO_SUCH_KEY")


def test_generate_inside_a_running_event_loop(fake_server):
    server = fake_server()
    with make(server) as backend:
        async def main():
            return backend.generate(["in a loop"], GREEDY, "responder")
        assert asyncio.run(main())[0].text == server.reply_text("in a loop")
        assert backend.generate(["outside"], GREEDY, "responder")[0].text == server.reply_text("outside")


def test_cache_makes_a_rerun_query_nothing(fake_server, tmp_path):
    server = fake_server({"p3": ["500"]})
    prompts = [f"p{i}" for i in range(10)] + ["p1"]
    params = SamplingParams(temperature=1.0, max_tokens=8)
    kwargs = dict(model="test-model", base_url=server.url, cache_path=tmp_path / "c.sqlite", **FAST)
    with make_backend("openai", **kwargs) as first:
        texts = [c.text for c in first.generate(prompts, params, "responder")]
    assert server.total_requests == 12  # 11 samples (p1 twice: indices 0 and 1) + one retry
    with make_backend("openai", **kwargs) as second:
        out = second.generate(prompts, params, "responder")
    assert server.total_requests == 12
    assert [c.text for c in out] == texts and all(c.cached for c in out)
    assert second.accounting.get("responder")["cache_hits"] == 11 and second.accounting.total()["queries"] == 0


def expected_logprobs(server, prompt, top):
    return [TokenLogprob(d["token"], d["logprob"], tuple((a["token"], a["logprob"]) for a in d["top_logprobs"]))
            for d in server.logprobs_of(server.reply_text(prompt), top)]


def test_logprobs_are_asked_for_and_read(fake_server):
    server = fake_server()
    with make(server) as backend:
        plain = backend.generate(["plain"], GREEDY, "reviewer")[0]
        scored = backend.generate(["scored", "none"], SamplingParams(temperature=0.0, logprobs=3), "reviewer")
        zero = backend.generate(["zero"], SamplingParams(temperature=0.0, logprobs=0), "reviewer")[0]
    assert "logprobs" not in server.by_prompt["plain"][0].body and plain.logprobs is None
    body = server.by_prompt["scored"][0].body
    assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    assert scored[0].logprobs == expected_logprobs(server, "scored", 3)
    assert "".join(t.token for t in scored[0].logprobs) == scored[0].text == server.reply_text("scored")
    assert scored[1].logprobs == expected_logprobs(server, "none", 3)
    assert zero.logprobs == expected_logprobs(server, "zero", 0) and zero.logprobs[0].top == ()


def test_a_prefix_is_sent_as_the_assistant_message_to_continue(fake_server):
    server = fake_server()
    with make(server) as backend:
        backend.generate(["judge"], SamplingParams(temperature=0.0, prefix="Score:", top_k=5), "reviewer")
        backend.generate(["free"], GREEDY, "reviewer")
    body = server.by_prompt["judge"][0].body
    assert body["messages"][-1] == {"role": "assistant", "content": "Score:"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False and body["top_k"] == 5
    free = server.by_prompt["free"][0].body
    assert free["messages"][-1]["role"] == "user" and "continue_final_message" not in free
    assert SamplingParams(prefix="Score:").cache_key() != SamplingParams().cache_key()
    assert "prefix" not in SamplingParams().cache_key()  # keys of caches written before the field stay valid


def test_logprobs_survive_retries_and_come_back_from_the_cache(fake_server, tmp_path):
    """Faults on the way, then a rerun that queries nothing and reads the same probabilities."""
    prompts = ["judge a", "judge b", "judge c"]
    server = fake_server({"judge a": ["500", "truncated"], "judge b": ["429ms"]})
    params = SamplingParams(temperature=1.0, logprobs=5)
    kwargs = dict(model="test-model", base_url=server.url, cache_path=tmp_path / "c.sqlite", **FAST)
    with make_backend("openai", **kwargs) as first:
        fresh = first.generate(prompts, params, "reviewer")
    assert [c.logprobs for c in fresh] == [expected_logprobs(server, p, 5) for p in prompts]
    with make_backend("openai", **kwargs) as second:
        again = second.generate(prompts, params, "reviewer")
        without = second.generate(prompts, dataclasses.replace(params, logprobs=None), "reviewer")
    assert all(c.cached for c in again) and [c.logprobs for c in again] == [c.logprobs for c in fresh]
    assert server.total_requests == (3 + 3) + 0 + 3  # 3 prompts and 3 retries, no rerun query, 3 other keys
    assert all(c.logprobs is None and not c.cached for c in without)  # without logprobs: other cache keys


KILL_PARAMS = SamplingParams(temperature=0)
KILL_SCRIPT = textwrap.dedent("""
    import sys
    from teamsrl_jax.backends import SamplingParams
    from teamsrl_jax.llm import make_backend
    backend = make_backend("openai", model="test-model", base_url=sys.argv[1], cache_path=sys.argv[2],
                           concurrency=4, backoff_base_s=0.01, timeout_s=10)
    backend.generate([f"prompt {i}" for i in range(int(sys.argv[3]))], SamplingParams(temperature=0), "responder")
    """)


def test_kill_mid_batch_loses_at_most_the_requests_in_flight(fake_server, tmp_path):
    n, concurrency = 80, 4
    prompts = [f"prompt {i}" for i in range(n)]
    path = tmp_path / "c.sqlite"
    server = fake_server(delay_s=0.05)
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, server.url, str(path), str(n)])
    try:
        deadline = time.monotonic() + 30
        while sum(server.successes.values()) < 20 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.poll() is None, "the batch finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    answered = sum(server.successes.values())
    assert answered < n
    with CompletionCache(path) as cache:
        assert cache._execute("PRAGMA integrity_check") == [("ok",)]
        keys = {p: cache_key("openai", "test-model", KILL_PARAMS, p) for p in prompts}
        stored = cache.get_many(keys.values())
    saved = {p for p in prompts if keys[p] in stored}
    assert answered - concurrency <= len(saved) <= answered
    rerun = fake_server()
    with make_backend("openai", model="test-model", base_url=rerun.url, cache_path=path, **FAST) as backend:
        out = backend.generate(prompts, KILL_PARAMS, "responder")
    assert [c.text for c in out] == [rerun.reply_text(p) for p in prompts]
    assert set(rerun.by_prompt) == set(prompts) - saved and rerun.total_requests == n - len(saved)


def test_threads_share_one_concurrency_limit(fake_server):
    """Batches from two threads run at the same time on the backend's loop, within one shared limit."""
    import threading

    server = fake_server(delay_s=0.3)
    with make(server, concurrency=8) as backend:
        def run(tag, n, out):
            out[tag] = [c.text for c in backend.generate([f"{tag} {i}" for i in range(n)], GREEDY, "instructor")]

        out: dict[str, list[str]] = {}
        start = time.monotonic()
        threads = [threading.Thread(target=run, args=(tag, 4, out)) for tag in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        together = time.monotonic() - start  # 4 + 4 requests fit in 8 slots: one round, not two
        threads = [threading.Thread(target=run, args=(tag, 8, out)) for tag in "cd"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert together < 0.55 and server.max_in_flight == 8  # 16 requests at once never exceeded the 8 slots
    assert out["a"] == [server.reply_text(f"a {i}") for i in range(4)]
    assert out["d"] == [server.reply_text(f"d {i}") for i in range(8)]
    assert backend.accounting.get("instructor")["queries"] == 24


def test_top_k_goes_to_compatible_servers_but_not_to_api_openai_com(monkeypatch):
    from teamsrl_jax.backends.openai_backend import OpenAIBackend

    monkeypatch.setenv("TEAMSRL_TEST_KEY", "sk-test")
    params = SamplingParams(temperature=1.0, top_k=40)
    local = OpenAIBackend("m", "http://127.0.0.1:8000/v1", api_key_env="TEAMSRL_TEST_KEY")
    official = OpenAIBackend("gpt-4o", "https://api.openai.com/v1", api_key_env="TEAMSRL_TEST_KEY")
    try:
        assert local._request_kwargs("p", params)["extra_body"] == {"top_k": 40}
        assert "extra_body" not in official._request_kwargs("p", params)  # it answers 400 to top_k
    finally:
        local.close()
        official.close()
