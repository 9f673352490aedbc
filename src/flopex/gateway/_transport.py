"""The gateway's two seams: how it reaches an upstream (`Transport`) and what time it is (`Clock`).

The gateway talks to backends only through a `Transport`, and decides by time (ejection backoff, half-open
probes, the health schedule) only through a `Clock`. `HttpTransport` (aiohttp) and `SystemClock` are what
`flopex serve` runs; `flopex.gateway.testing` holds fakes of both, so that every failover branch can be driven
on purpose. Durations the gateway measures (TTFT, TPOT, latency) are wall time either way.

A transport raises `UpstreamError` when the connection fails (refused, reset, closed early, unreadable framing)
and `TimeoutError` when its own time limit passes; nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Protocol

import aiohttp

__all__ = ["Clock", "HttpTransport", "SystemClock", "Transport", "UpstreamError", "UpstreamReply"]


class UpstreamError(Exception):
    """The connection to an upstream failed: no answer, or an answer cut off."""


class UpstreamReply(Protocol):
    """An upstream's answer, its status and headers read, its body still to come."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes:
        """The whole body."""
        ...

    async def readline(self) -> bytes:
        """The body's next line (b"" at its end)."""
        ...

    def release(self) -> None:
        """The body was read whole: the connection may serve another request."""
        ...

    def close(self) -> None:
        """Drop the connection, which stops the upstream's work on the request."""
        ...


class Transport(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float, connect_s: float | None = None
    ) -> UpstreamReply: ...

    async def get(self, url: str, headers: Mapping[str, str], timeout_s: float) -> UpstreamReply: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _HttpReply:
    __slots__ = ("_resp", "status", "headers")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except aiohttp.ClientError as exc:
            raise UpstreamError(type(exc).__name__) from exc

    async def readline(self) -> bytes:
        try:
            return await self._resp.content.readline()
        except aiohttp.ClientError as exc:
            raise UpstreamError(type(exc).__name__) from exc

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        self._resp.close()


class HttpTransport:
    """HTTP/1.1 to upstreams through one aiohttp connection pool, with keep-alive and no connection limit (the
    gateway bounds what is in flight itself)."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector)

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float, connect_s: float | None = None
    ) -> UpstreamReply:
        assert self.session is not None, "start() the transport first"
        limit = aiohttp.ClientTimeout(total=timeout_s, connect=connect_s)
        try:
            return _HttpReply(await self.session.post(url, data=body, headers=headers, timeout=limit))
        except aiohttp.ClientError as exc:
            raise UpstreamError(type(exc).__name__) from exc

    async def get(self, url: str, headers: Mapping[str, str], timeout_s: float) -> UpstreamReply:
        assert self.session is not None, "start() the transport first"
        try:
            resp = await self.session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s))
        except aiohttp.ClientError as exc:
            raise UpstreamError(type(exc).__name__) from exc
        return _HttpReply(resp)
