"""A local OpenAI-compatible chat-completions server with scheduled faults, for the backend tests.

The server binds 127.0.0.1 on a free port, replies ``"echo:" + prompt[::-1]`` (so a test can check that
each result belongs to its prompt), reports usage as character counts, returns ``logprobs_of(text, n)`` when
asked for ``logprobs`` (``top_logprobs`` = n), and injects faults by a
deterministic per-prompt schedule: the n-th request for a prompt gets ``schedule[prompt][n]``, and "ok"
once the schedule runs out. It counts successful replies per prompt and logs every request.

Faults: "429" (Retry-After: ``retry_after``), "429ms" (retry-after-ms: 50), "400"/"401"/"404"/"500"/"503",
"slow" (no reply for ``slow_s``), "truncated" (a complete reply whose JSON is cut in half),
"truncated_cl" (half the promised body, then hang up), "drop" (hang up without a reply), "nochoices"
(valid JSON that is not a chat completion). Error bodies echo the Authorization header, as some servers do.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SECRET = "sk-test-SECRET-0123456789abcdef"
"""A recognisable API key; tests assert it appears nowhere but in the request headers."""



class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops SYNs when a batch connects at once: spurious timeouts

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (timeout, kill -9) breaks the pipe; that is the point of those tests


@dataclass
class RequestLog:
    prompt: str
    fault: str
    t_start: float
    t_end: float = 0.0
    body: dict = field(default_factory=dict)
    authorization: str | None = None


class FakeOpenAIServer:
    """Use as a context manager; ``url`` is the base URL (ending in /v1)."""

    def __init__(self, schedule: dict[str, list[str]] | None = None, *, retry_after: str = "0.05",
                 slow_s: float = 0.5, delay_s: float = 0.0):
        self.schedule = {k: list(v) for k, v in (schedule or {}).items()}
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.delay_s = delay_s  # every reply waits this long (for the kill test)
        self.lock = threading.Lock()
        self.attempts: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        self.in_flight = self.max_in_flight = 0
        self.log: list[RequestLog] = []
        self.by_prompt: dict[str, list[RequestLog]] = defaultdict(list)
        self._stop = threading.Event()
        self.httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    @staticmethod
    def reply_text(prompt: str) -> str:
        """What the server answers to ``prompt``."""
        return "echo:" + prompt[::-1]

    @staticmethod
    def logprobs_of(text: str, top: int) -> list[dict]:
        """The OpenAI ``choice.logprobs.content`` the server sends for ``text``: tokens of 3 characters, the
        k-th of ``top`` alternatives at position i ``(token if k == 0 else f"alt{k}", -(i + 1) / 8 - k)``."""
        tokens = [text[i:i + 3] for i in range(0, len(text), 3)]
        return [{"token": t, "logprob": -(i + 1) / 8, "bytes": list(t.encode()),
                 "top_logprobs": [{"token": t if k == 0 else f"alt{k}", "logprob": -(i + 1) / 8 - k, "bytes": None}
                                  for k in range(top)]}
                for i, t in enumerate(tokens)]

    @property
    def total_requests(self) -> int:
        with self.lock:
            return len(self.log)

    def next_fault(self, prompt: str) -> str:
        with self.lock:
            n = self.attempts[prompt]
            self.attempts[prompt] += 1
            plan = self.schedule.get(prompt, [])
            return plan[n] if n < len(plan) else "ok"

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None,
                      content_length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload) if content_length is None else content_length))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()

            def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
                # Like some real servers, echo the credential back: the client must scrub it.
                message += f" (credential sent: {self.headers.get('Authorization')})"
                body = {"error": {"message": message, "type": "test_error", "code": str(status)}}
                self._send(status, json.dumps(body).encode(), headers)

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path != "/v1/chat/completions":
                    return self._error(404, f"no route {self.path}")
                prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
                fault = server.next_fault(prompt)
                entry = RequestLog(prompt, fault, time.monotonic(), body=body,
                                   authorization=self.headers.get("Authorization"))
                with server.lock:
                    server.log.append(entry)
                    server.by_prompt[prompt].append(entry)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._serve(prompt, fault, body)
                finally:
                    entry.t_end = time.monotonic()
                    with server.lock:
                        server.in_flight -= 1

            def _serve(self, prompt: str, fault: str, body: dict) -> None:
                if server.delay_s:
                    server._stop.wait(server.delay_s)
                if fault == "429":
                    return self._error(429, "rate limited", {"Retry-After": server.retry_after})
                if fault == "429ms":
                    return self._error(429, "rate limited", {"retry-after-ms": "50"})
                if fault in ("400", "401", "404", "500", "503"):
                    return self._error(int(fault), f"scheduled {fault}")
                if fault == "slow":
                    server._stop.wait(server.slow_s)
                    self.close_connection = True
                    try:
                        self._error(503, "too late")
                    except OSError:  # the client has given up by now
                        pass
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                text = server.reply_text(prompt)
                payload = {
                    "id": "cmpl-test", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop", "logprobs": None}],
                    "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(text),
                              "total_tokens": len(prompt) + len(text)},
                }
                if body.get("logprobs"):
                    payload["choices"][0]["logprobs"] = {
                        "content": server.logprobs_of(text, body.get("top_logprobs") or 0), "refusal": None}
                if fault == "nochoices":  # valid JSON that is not a chat completion
                    return self._send(200, json.dumps({"choices": [], "usage": payload["usage"]}).encode())
                data = json.dumps(payload).encode()
                if fault == "truncated":  # a complete HTTP reply whose JSON body is cut short
                    return self._send(200, data[: len(data) // 2])
                if fault == "truncated_cl":  # promises the whole body, sends half, hangs up
                    self.close_connection = True
                    return self._send(200, data[: len(data) // 2], content_length=len(data))
                assert fault == "ok", fault
                self._send(200, data)
                with server.lock:
                    server.successes[prompt] += 1

        return Handler


@pytest.fixture
def fake_server():
    """Factory: ``fake_server(schedule, **kw)`` starts a server that is shut down after the test."""
    servers: list[FakeOpenAIServer] = []

    def start(schedule: dict[str, list[str]] | None = None, **kw: object) -> FakeOpenAIServer:
        s = FakeOpenAIServer(schedule, **kw).__enter__()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.__exit__(None, None, None)


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """Sets TEAMSRL_TEST_KEY to the recognisable secret."""
    monkeypatch.setenv("TEAMSRL_TEST_KEY", SECRET)
    return SECRET


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
