"""A client request on its way through a model's backends, and each attempt it makes on one.

`Call` is the request: the backends it tried, the failures that wait for a verdict, and its attempt in flight.
`Upstream` is one attempt: its place in the in-flight counts and on its backend's meter, the upstream response and
what of the answer has come back. Closing it stops the upstream's work (the connection is closed unless the answer
was read whole).

Whose fault is a failure? A refused connection, a stream that breaks, a stall between tokens or an unreadable
answer are the backend's, and count against it at once. An upstream 5xx answer or a missing first byte may be the
request's own (an input that crashes every engine, a prompt no backend prefills in time), so such a failure counts
against its backend only once another backend has answered the same request; a request that fails on every
backend it tries counts against none of them. A client that leaves, and a 4xx, say nothing about the backend."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from flopex.economics import Label
from flopex.gateway._backends import BackendState, Pool
from flopex.gateway._errors import error_response
from flopex.gateway._labels import Attempt
from flopex.gateway._tenancy import Admission
from flopex.gateway._transport import UpstreamReply
from flopex.routing import RouteRequest

__all__ = ["Blame", "Call", "Retry", "Upstream", "error_event", "unless_left"]

T = TypeVar("T")
Blame = Literal["backend", "unsure", "none"]  # the backend's fault, perhaps the request's, nobody's


@dataclass(frozen=True)
class Retry:
    """An attempt that failed where another backend may not: `response` is what to answer if none is left."""

    response: Response
    blame: Blame


class Upstream:
    """One attempt on one backend, from its sending to its end."""

    __slots__ = ("state", "meter", "prompt", "on_close", "started", "resp", "first", "deadline", "chunks",
                 "usage", "first_token", "label", "closed")  # fmt: skip

    def __init__(self, state: BackendState, meter: Attempt, prompt: int, on_close: Callable[[], None]) -> None:
        self.state = state
        self.meter = meter
        self.prompt = prompt  # the gateway's estimate: four characters of the request a token
        self.on_close = on_close
        self.started = time.perf_counter()
        self.resp: UpstreamReply | None = None
        self.first: asyncio.Future[bytes] | None = None  # a stream's first line, being read
        self.deadline = 0.0  # the event loop's time by which the first byte must come
        self.chunks = 0
        self.usage: dict[str, Any] | None = None
        self.first_token: float | None = None
        self.label: Label | None = None
        self.closed = False

    async def first_line(self, within: float, rid: str) -> bool | Retry:
        """Wait up to `within` for a stream's first line: True once it has come, False while it still may, or why
        it will not (no first byte by the deadline: perhaps the request's fault; a stream that broke or closed
        before it: the backend's)."""
        assert self.first is not None
        loop = asyncio.get_running_loop()
        await asyncio.wait({self.first}, timeout=max(0.0, min(within, self.deadline - loop.time())))
        spec = self.state.spec
        if not self.first.done():
            if loop.time() < self.deadline:
                return False
            late = error_response(504, f"backend {spec.id} sent no first byte in time", "upstream_timeout", rid, 1)
            return Retry(late, "unsure")
        if self.first.exception() is None and self.first.result():
            return True
        closed = error_response(502, f"backend {spec.id} closed the stream before the first token",
                                "upstream_error", rid, 1)  # fmt: skip
        return Retry(closed, "backend")

    def token(self) -> None:
        """A data line came; the first is the first token (on the meter too)."""
        if self.first_token is None:
            self.first_token = time.perf_counter()
            self.meter.first_token()
        self.chunks += 1

    def ttft(self, since: float) -> float | None:
        return None if self.first_token is None else self.first_token - since

    def speeds(self) -> tuple[float | None, float | None]:
        """This attempt's TTFT and TPOT, for its backend's moving averages."""
        if self.first_token is None:
            return None, None
        tpot = (time.perf_counter() - self.first_token) / max(self.chunks - 1, 1)
        return self.first_token - self.started, tpot

    def counts(self, why: str) -> tuple[int, int, str]:
        """(prompt, completion, how counted): the upstream's usage, else the gateway's estimate of the prompt
        and its count of the chunks streamed, saying `why` there was no usage."""
        usage = self.usage
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            return int(usage.get("prompt_tokens") or 0), int(usage["completion_tokens"]), "upstream usage"
        how = "the prompt at four characters a token, the answer in streamed chunks"
        return self.prompt, self.chunks, f"gateway estimate ({why}): {how}"

    def close(self, complete: bool = False) -> None:
        """Leave the backend, once. An answer read whole gives its connection back to the pool; any other is
        closed, which stops the upstream's work on it. Time not labelled is booked as the backend's unbilled."""
        if self.closed:
            return
        self.closed = True
        if self.first is not None:
            if not self.first.done():
                self.first.cancel()
            elif not self.first.cancelled():
                self.first.exception()  # retrieved: a broken first line was already judged
        if self.resp is not None:
            if complete:
                self.resp.release()
            else:
                self.resp.close()
        self.meter.end(billed=False)  # a no-op once labelled
        self.on_close()


@dataclass(eq=False)
class Call:
    """One client request: where it may go, what it tried, and what to answer if every backend fails."""

    pool: Pool
    route: RouteRequest
    path: str
    payload: dict[str, Any]
    rid: str
    adm: Admission | None
    stream: bool
    want_usage: bool  # the client asked for the stream's usage chunk
    tried: set[str]
    prompt: int  # the gateway's estimate of the prompt's tokens
    raw: bytes | None  # the client's body, where it can go upstream as it came
    forward: dict[str, str] = field(default_factory=dict)  # the client's headers that go upstream as they are
    start: float = field(default_factory=time.perf_counter)
    attempts: int = 0
    suspects: list[BackendState] = field(default_factory=list)  # failures that count once another backend answers
    last_error: Response | None = None
    current: Upstream | None = None  # the attempt in flight, until it is settled

    def settle(self, upstream: Upstream, complete: bool = False) -> None:
        upstream.close(complete)
        if self.current is upstream:
            self.current = None


async def _client_left(request: Request) -> None:
    """Returns when the client has gone: with its body read, the next message it sends is its disconnect. A server
    that cannot tell leaves it waiting for ever."""
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:
        await asyncio.Event().wait()


async def unless_left(request: Request, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None when the client leaves first (`work` is then cancelled where it waits). `work` runs
    in the calling task; a watcher task cancels that task if the client goes."""
    task = asyncio.current_task()
    assert task is not None
    watching = True
    gone = False

    def cancel(watcher: asyncio.Future[None]) -> None:
        nonlocal gone
        if watching and not watcher.cancelled():  # scheduled before `work` ended, run after: too late to matter
            gone = True
            task.cancel()

    watcher = asyncio.ensure_future(_client_left(request))
    watcher.add_done_callback(cancel)
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:  # cancelled for the client's leaving alone: not the caller's to see
            return None
        raise
    finally:
        watching = False
        watcher.cancel()


def error_event(response: Response) -> bytes:
    """An error as a stream's last event, in OpenAI's shape (a blank line first ends any event left half-sent)."""
    try:
        error = json.loads(bytes(response.body)).get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        error = {"message": f"the upstream answered {response.status_code}", "type": "api_error", "param": None,
                 "code": "upstream_error"}  # fmt: skip
    return b"\ndata: " + json.dumps({"error": error}).encode() + b"\n\n"
