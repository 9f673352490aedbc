"""What a client may cost the gateway before it is authenticated: bytes and time for a request's head (request
line and headers) and body, and open connections.

The head is bounded where its bytes arrive, in the HTTP protocol: the gateway's app is called only once the
headers are complete, so no middleware can see a head that never ends. `LimitedHttpToolsProtocol` is uvicorn's
httptools protocol (the fast parser `flopex serve` runs on) that counts a request's head bytes as they arrive and
times its head and body. uvicorn's h11 protocol bounds the head with `h11_max_incomplete_event_size`, but it parses
in Python (slower on every request) and has no deadlines either; httptools has neither bound. The body's size is
bounded in the app (`BodyLimit`, ASGI middleware) so that the answer is the gateway's own 413.

    head over limits.max_header_bytes              431, connection closed
    head not complete within header_timeout_s      408, connection closed (closed quietly if no byte came)
    body not complete within body_timeout_s        408, connection closed
    Content-Length over limits.max_body_bytes      413 at once, without reading the body
    chunked body passing max_body_bytes            413 as soon as it does
    connections at limits.max_connections          503 with Retry-After, connection closed

Errors are in OpenAI's shape. After an early answer (413, 503) the rest of the body is read and dropped (so the
client sees the answer), within the same body deadline."""

from __future__ import annotations

import asyncio
import http
import json
import logging
import uuid
from functools import partial
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from flopex.gateway._config import Limits
from flopex.gateway._errors import error_response

__all__ = ["BodyLimit", "LimitedHttpToolsProtocol", "body_limit", "connection_limit", "server_settings"]

log = logging.getLogger("flopex.gateway")


def connection_limit(limits: Limits) -> int:
    """Open connections per process: `max_connections`, else twice `max_in_flight`. Every request in flight holds
    a connection, and idle keep-alive and uploading ones hold more; the gateway's own in-flight limit (503 with
    its reason) is reached first."""
    return limits.max_connections or 2 * limits.max_in_flight


def server_settings(limits: Limits) -> dict[str, Any]:
    """uvicorn keyword arguments that enforce `limits` on connections (the body's size: `body_limit`)."""
    protocol = partial(
        LimitedHttpToolsProtocol,
        max_header_bytes=limits.max_header_bytes,
        header_timeout_s=limits.header_timeout_s,
        body_timeout_s=limits.body_timeout_s,
    )
    return {"http": protocol, "limit_concurrency": connection_limit(limits), "timeout_keep_alive": 5}


def _error_body(status: int, message: str, code: str) -> bytes:
    kind = "api_error" if status >= 500 else "invalid_request_error"
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


async def _overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer to a request that arrives with the process at its connection limit."""
    message = "the gateway is at its connection limit; retry shortly"
    response = error_response(503, message, "too_many_connections", _request_id(Headers(scope=scope)), 1)
    response.headers["connection"] = "close"
    await response(scope, receive, send)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on a request's head bytes, deadlines for its head and body, and
    OpenAI-shaped 503s at uvicorn's `limit_concurrency`."""

    def __init__(
        self, config: Config, server_state: ServerState, app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None, *, max_header_bytes: int = 65_536,
        header_timeout_s: float = 10.0, body_timeout_s: float = 30.0,
    ) -> None:  # fmt: skip
        super().__init__(config, server_state, app_state, _loop)
        self.max_header_bytes = max_header_bytes
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_connections = self.limit_concurrency
        self.limit_concurrency = None  # checked here instead, to answer in OpenAI's shape
        self.in_head = True  # the next bytes belong to a request's head
        self.in_body = False
        self.head_bytes = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None

    # --- the head: bytes and time --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_timer = self.loop.call_later(self.header_timeout_s, self._head_expired)

    def data_received(self, data: bytes) -> None:
        if not self.in_head:  # a body; bytes of a pipelined request's head that follow it go uncounted
            super().data_received(data)
            return
        if self.head_timer is None:  # the first byte of a keep-alive connection's next request
            self.head_timer = self.loop.call_later(self.header_timeout_s, self._head_expired)
        room = self.max_header_bytes - self.head_bytes
        if len(data) <= room:
            self.head_bytes += len(data)
            super().data_received(data)
            return
        # the parser sees no more than the limit of a head: either it ends in there, or the request is refused
        if room:
            self.head_bytes += room
            super().data_received(data[:room])
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        if self.in_head:
            limit = f"{self.max_header_bytes:,}"
            self._refuse(431, f"the request line and headers are over {limit} bytes", "headers_too_large")
            return
        self.data_received(data[room:])

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self.in_head, self.in_body, self.head_bytes = False, True, 0
        over = self.max_connections is not None and (
            len(self.connections) >= self.max_connections or len(self.tasks) >= self.max_connections
        )
        app, cycle = self.app, self.cycle
        if over:
            log.warning("a request was refused: %d connections open (limit %s)", len(self.connections),
                        self.max_connections)  # fmt: skip
            self.app = _overloaded
        try:
            super().on_headers_complete()
        finally:
            self.app = app
        if self.cycle is not cycle:  # a request began (not a protocol upgrade)
            self.body_timer = self.loop.call_later(self.body_timeout_s, self._body_expired, self.cycle)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        self.in_head, self.in_body, self.head_bytes = True, False, 0
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    # --- deadlines -----------------------------------------------------------------------------------------
    def _head_expired(self) -> None:
        self.head_timer = None
        if not self.in_head or self.transport.is_closing():
            return
        if not self.head_bytes:  # nothing came: close quietly, as for an idle keep-alive connection
            self.transport.close()
            return
        self._refuse(408, f"the request's headers took over {self.header_timeout_s:g} s", "request_timeout")

    def _body_expired(self, cycle: RequestResponseCycle) -> None:
        self.body_timer = None
        if not self.in_body or cycle is not self.cycle or self.transport.is_closing():
            return
        if any(queued is cycle for queued, _ in self.pipeline):  # a pipelined request waits its turn unread
            self.body_timer = self.loop.call_later(self.body_timeout_s, self._body_expired, cycle)
            return
        if cycle.response_complete:  # answered early (413, 503): the rest of the body is too slow to wait for
            self.transport.close()
            return
        self._refuse(408, f"the request's body took over {self.body_timeout_s:g} s", "request_timeout")

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer `status` and close the connection; just close it in the middle of another answer."""
        log.info("%s:%s refused with %d: %s", *(self.client or ("?", "?")), status, message)
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()
            return
        body = _error_body(status, message, code)
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                 b"x-request-id: " + uuid.uuid4().hex.encode() + b"\r\n", b"connection: close\r\n"]  # fmt: skip
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()
        if cycle is not None and not cycle.response_complete:  # a body being read: the app hears the client left
            cycle.disconnected = True
            cycle.message_event.set()

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _cancel_body_timer(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None


class BodyLimit:
    """ASGI middleware: reads each request's body before the app runs, answering 413 at once for a Content-Length
    over `max_body_bytes` and, for a chunked body, as soon as what came passes it. The app gets the whole body
    in one message; a client that leaves before its body is complete never reaches the app."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal whole
            if whole is None:
                return await receive()
            message, whole = whole, None
            return message

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        message = f"request body over {self.max_body_bytes:,} bytes"
        response = error_response(413, message, "request_too_large", _request_id(headers))
        if headers.get("expect", "").lower() == "100-continue":  # the client may never send the body: start afresh
            response.headers["connection"] = "close"
        await response(scope, receive, send)


def _request_id(headers: Headers) -> str:
    """The caller's `x-request-id` where it is printable ASCII of at most 128 characters (as the app echoes
    it), else a new one."""
    rid = headers.get("x-request-id", "")
    return rid if 0 < len(rid) <= 128 and rid.isascii() and rid.isprintable() else uuid.uuid4().hex


def body_limit(limits: Limits) -> Middleware:
    """`BodyLimit` for `limits`, for the app's middleware list."""
    return Middleware(BodyLimit, max_body_bytes=limits.max_body_bytes)
