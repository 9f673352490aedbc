"""Fakes of the gateway's seams, for tests of its own logic: `FakeUpstream` answers as each backend is told to
(an answer, a status, a refused connection, a hang, a stream cut short, an unreadable body) and records what
the gateway sent; `FakeClock` stands still until the test moves it.

They isolate the gateway's decisions (failover, blame, ejection, backoff, routing) from any real backend. That
a real backend is reached, streamed from and failed over is shown with real emulated backends over HTTP.

    upstream = FakeUpstream()
    upstream.script("a", Behaviour(status=500), Behaviour(refuse=True))  # backend a's next two requests
    app = create_app(config, backends, transport=upstream, clock=FakeClock())

Backends are named by the host of their `base_url` (`http://a/v1` is `a`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flopex.gateway._transport import UpstreamError, UpstreamReply

__all__ = ["Behaviour", "FakeClock", "FakeUpstream", "Sent"]


@dataclass(frozen=True)
class Behaviour:
    """What a fake backend does with one request. The default answers it as an OpenAI-compatible server would,
    with `usage` (for a stream: a chunk a token, the usage chunk when asked for, `[DONE]`)."""

    status: int = 200
    body: bytes | None = None  # the answer as sent, instead of one made for the request
    headers: Mapping[str, str] = field(default_factory=dict)
    refuse: bool = False  # the connection fails: no answer at all
    hang: bool = False  # no answer, ever (until the gateway gives up on it)
    wait_s: float = 0.0  # before the status and headers
    first_line_s: float = 0.0  # a stream's first line comes this long after its headers
    cut_after: int | None = None  # a stream's connection drops after this many lines
    tokens: int = 3  # an answer's tokens when the request gives no max_tokens


@dataclass
class Sent:
    """One request the gateway sent: to which backend, what, and whether it closed the connection before the
    answer's end (which stops an upstream's work)."""

    backend: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    raw: bytes = b""  # the body as sent
    closed_early: bool = False


class FakeUpstream:
    """A `Transport` whose backends do as scripted: each backend's scripted behaviours in order, then its
    standing behaviour (`always`), else the default answer. Thread-safe: a test may script it while a gateway
    serves from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Behaviour]] = {}
        self._standing: dict[str, Behaviour] = {}
        self._health: dict[str, Behaviour] = {}
        self.sent: list[Sent] = []

    def script(self, backend: str, *behaviours: Behaviour) -> None:
        """The backend's next requests, one behaviour each."""
        with self._lock:
            self._scripts.setdefault(backend, deque()).extend(behaviours)

    def always(self, backend: str, behaviour: Behaviour | None) -> None:
        """What the backend does once its script has run out (None: answer normally)."""
        with self._lock:
            if behaviour is None:
                self._standing.pop(backend, None)
            else:
                self._standing[backend] = behaviour

    def health(self, backend: str, behaviour: Behaviour | None) -> None:
        """How the backend answers the health check (GET /models); None: it answers."""
        with self._lock:
            if behaviour is None:
                self._health.pop(backend, None)
            else:
                self._health[backend] = behaviour

    def to(self, backend: str) -> list[Sent]:
        """The requests sent to `backend`, health checks apart."""
        with self._lock:
            return [s for s in self.sent if s.backend == backend and s.path != "models"]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float, connect_s: float | None = None
    ) -> UpstreamReply:
        backend, path = _where(url)
        sent = Sent(backend, path, json.loads(body), dict(headers), body)
        with self._lock:
            self.sent.append(sent)
            queue = self._scripts.get(backend)
            behaviour = queue.popleft() if queue else self._standing.get(backend, Behaviour())
        return await _reply(behaviour, sent, timeout_s)

    async def get(self, url: str, headers: Mapping[str, str], timeout_s: float) -> UpstreamReply:
        backend, path = _where(url)
        sent = Sent(backend, path, {}, dict(headers))
        with self._lock:
            self.sent.append(sent)
            behaviour = self._health.get(backend, Behaviour(body=b'{"object": "list", "data": []}'))
        return await _reply(behaviour, sent, timeout_s)


class FakeClock:
    """A `Clock` that moves only when `advance` is called (from any thread); `sleep` waits for it."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        until = self._now + seconds
        while self._now < until:
            await asyncio.sleep(0.002)


def _where(url: str) -> tuple[str, str]:
    """(backend, path) of an upstream URL: `http://a/v1/chat/completions` is ("a", "chat/completions")."""
    parts = urlsplit(url)
    return parts.netloc, parts.path.removeprefix("/v1/").strip("/")


async def _reply(behaviour: Behaviour, sent: Sent, timeout_s: float) -> _FakeReply:
    async with asyncio.timeout(timeout_s):
        if behaviour.refuse:
            raise UpstreamError("ClientConnectorError (refused)")
        if behaviour.hang:
            await asyncio.Event().wait()
        await asyncio.sleep(behaviour.wait_s)
    return _FakeReply(behaviour, sent)


class _FakeReply:
    def __init__(self, behaviour: Behaviour, sent: Sent) -> None:
        self._behaviour = behaviour
        self._sent = sent
        self.status = behaviour.status
        self.headers: Mapping[str, str] = behaviour.headers
        body = behaviour.body if behaviour.body is not None else _answer(sent, behaviour.tokens)
        self._lines = deque(body.splitlines(keepends=True))
        self._read = 0
        self._done = False

    async def read(self) -> bytes:
        whole = b"".join(self._lines)
        self._lines.clear()
        self._done = True
        return whole

    async def readline(self) -> bytes:
        b = self._behaviour
        if self._read == 0 and b.first_line_s:
            await asyncio.sleep(b.first_line_s)
        if b.cut_after is not None and self._read >= b.cut_after:
            raise UpstreamError("ServerDisconnectedError (the fake backend cut the stream)")
        self._read += 1
        if not self._lines:
            self._done = True
            return b""
        return self._lines.popleft()

    def release(self) -> None:
        self._done = True

    def close(self) -> None:
        if not self._done:
            self._sent.closed_early = True
        self._done = True


def _answer(sent: Sent, tokens: int) -> bytes:
    """An OpenAI-compatible answer to the request sent, with its usage (a prompt of four characters a token)."""
    req = sent.body
    prompt = max(1, len(json.dumps(req.get("messages") or req.get("prompt") or req.get("input") or "")) // 4)
    if sent.path == "embeddings":
        return json.dumps({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.0] * 4}],
                           "model": req.get("model"), "usage": {"prompt_tokens": prompt, "total_tokens": prompt}
                           }).encode()  # fmt: skip
    n = req.get("max_completion_tokens") or req.get("max_tokens") or tokens
    usage = {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
    base = {"id": "fake-1", "created": 0, "model": req.get("model")}
    if not req.get("stream"):
        message = {"role": "assistant", "content": " ".join(["ok"] * n)}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return json.dumps({**base, "object": "chat.completion", "usage": usage, "choices": [choice]}).encode()
    events = [
        {**base, "object": "chat.completion.chunk",
         "choices": [{"index": 0, "delta": {"content": "ok "}, "finish_reason": None if i < n - 1 else "stop"}]}
        for i in range(n)
    ]  # fmt: skip
    if (req.get("stream_options") or {}).get("include_usage"):
        events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
