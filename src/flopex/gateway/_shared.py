"""Backend health shared by every gateway process on one Redis: the workers of `flopex serve --workers N` and
gateways on other machines.

A process that ejects a backend, or restores one, says so on a Redis channel; every other process applies it
at once, so a backend that fails is ejected everywhere after `eject_after_failures` failures seen anywhere,
not after that many in each process. The ejections in force are also kept in a Redis hash, which a process
reads when it (re)subscribes. Times travel as seconds left, so clocks need not agree.

Redis is an aid, not a dependency: while it does not answer, each process keeps its own health (it logs that
once per outage, and `/admin/backends` says `health_shared: false`), and it subscribes again every second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from flopex.gateway._backends import BackendState
from flopex.gateway._transport import Clock
from flopex.ledger import safe_url

__all__ = ["SharedHealth"]

log = logging.getLogger("flopex.gateway")

CHANNEL = "flopex:gateway:health"
EJECTED = "flopex:gateway:ejected"  # backend id -> {"until": Unix time, "backoff": s}


class SharedHealth:
    def __init__(self, url: str, states: Mapping[str, BackendState], clock: Clock) -> None:
        self.url = url
        self.redis: Any = aioredis.from_url(url, socket_connect_timeout=1.0, socket_timeout=None)
        self.states = states
        self.clock = clock
        self.me = uuid.uuid4().hex
        self.connected = False
        self.told = False  # the outage going on was logged
        self.task: asyncio.Task[None] | None = None
        self.posts: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        for post in list(self.posts):
            post.cancel()
        await self.redis.aclose()

    def ejected(self, state: BackendState) -> None:
        """This process ejected `state`'s backend: every other one should too."""
        self._post(state.spec.id, max(0.0, state.ejected_until - self.clock.now()), state.backoff)

    def restored(self, state: BackendState) -> None:
        """A probe of this process restored `state`'s backend."""
        self._post(state.spec.id, 0.0, 0.0)

    def _post(self, backend: str, left_s: float, backoff_s: float) -> None:
        task = asyncio.create_task(self._send(backend, left_s, backoff_s))
        self.posts.add(task)
        task.add_done_callback(self.posts.discard)

    async def _send(self, backend: str, left_s: float, backoff_s: float) -> None:
        news = json.dumps({"from": self.me, "backend": backend, "left_s": left_s, "backoff_s": backoff_s})
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if left_s > 0:
                    pipe.hset(EJECTED, backend, json.dumps({"until": time.time() + left_s, "backoff_s": backoff_s}))
                else:
                    pipe.hdel(EJECTED, backend)
                pipe.publish(CHANNEL, news)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._lost(exc)

    async def _listen(self) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    await self._catch_up()
                    if self.told:
                        log.warning("Redis at %s answers again: backend health is shared", safe_url(self.url))
                    self.connected, self.told = True, False
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._apply(json.loads(message["data"]))
            except (RedisError, OSError, ValueError) as exc:
                self._lost(exc)
            await asyncio.sleep(1.0)

    async def _catch_up(self) -> None:
        """The ejections in force when this process (re)subscribes."""
        now = time.time()
        for backend, raw in (await self.redis.hgetall(EJECTED)).items():
            held = json.loads(raw)
            if held["until"] > now:
                self._apply({"from": "", "backend": backend.decode(), "left_s": held["until"] - now,
                             "backoff_s": held["backoff_s"]})  # fmt: skip

    def _apply(self, news: dict[str, Any]) -> None:
        state = self.states.get(news.get("backend", ""))
        if state is None or news.get("from") == self.me:
            return
        left, backoff = float(news["left_s"]), float(news["backoff_s"])
        if left > 0:
            state.ejected_until = max(state.ejected_until, self.clock.now() + left)
            state.backoff = max(state.backoff, backoff)
            state.failures = 0
        elif state.ejected_until > 0:
            state.restore()

    def _lost(self, exc: BaseException) -> None:
        """Redis did not answer: said once per outage."""
        if not self.told:
            log.warning("Redis at %s does not answer (%s): backend health is kept per process until it does",
                        safe_url(self.url), exc)  # fmt: skip
            self.told = True
        self.connected = False
