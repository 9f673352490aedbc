"""The OpenAI-compatible gateway: a Starlette app that routes each request to a backend of its model,
retries before the first byte, streams with a label in the final usage chunk, and exports metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from flopex.economics import Label, load_energy_table
from flopex.errors import did_you_mean
from flopex.gateway import _json
from flopex.gateway._admin import operator_routes
from flopex.gateway._backends import BackendState, Pool
from flopex.gateway._config import BackendSpec, GatewayConfig
from flopex.gateway._errors import JSONResponse, error_response
from flopex.gateway._inflight import Call, Retry, Upstream, error_event, unless_left
from flopex.gateway._labels import MeterCollector, Metering, label_headers
from flopex.gateway._limits import body_limit
from flopex.gateway._metrics import Metrics
from flopex.gateway._openapi import openapi
from flopex.gateway._prompt import prompt_tokens
from flopex.gateway._shared import SharedHealth
from flopex.gateway._tenancy import Admission, Tenancy
from flopex.gateway._transport import Clock, HttpTransport, SystemClock, Transport, UpstreamError, UpstreamReply
from flopex.gateway._validate import request_problem

__all__ = ["create_app", "error_response"]

log = logging.getLogger("flopex.gateway")


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        backends: Mapping[str, Sequence[BackendSpec]],
        seed: int | None = None,
        tenancy: Tenancy | None = None,
        transport: Transport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.transport = transport or HttpTransport()
        self.clock = clock or SystemClock()
        self.tenancy = tenancy
        self.pools = {m: Pool.of(m, specs, config.models[m]) for m, specs in backends.items()}
        self.in_flight = 0
        self.rng = random.Random(seed)
        self.metrics = Metrics()
        self.metering = Metering((s for specs in backends.values() for s in specs), load_energy_table())
        self.metrics.registry.register(MeterCollector(self.metering))
        self.health_task: asyncio.Task[None] | None = None
        self.shared: SharedHealth | None = None  # ejections shared with other gateway processes through Redis

    def state(self, backend_id: str) -> BackendState | None:
        for pool in self.pools.values():
            for s in pool.states:
                if s.spec.id == backend_id:
                    return s
        return None

    # --- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.transport.start()
        if self.config.health.redis_url:
            states = {s.spec.id: s for pool in self.pools.values() for s in pool.states}
            self.shared = SharedHealth(self.config.health.redis_url, states, self.clock)
            await self.shared.start()
        self.health_task = asyncio.create_task(self._health_loop())
        if self.tenancy is not None:
            await self.tenancy.start()

    async def stop(self) -> None:
        if self.health_task is not None:
            self.health_task.cancel()
        if self.tenancy is not None:
            await self.tenancy.stop()
        if self.shared is not None:
            await self.shared.stop()
        await self.transport.stop()

    async def _health_loop(self) -> None:
        """Active checks every `interval_s`, each backend's on its own (a slow answer delays no other check)."""
        probes: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                await self.clock.sleep(self.config.health.interval_s)
                for pool in self.pools.values():
                    for s in pool.states:
                        running = probes.get(s.spec.id)
                        if not s.spec.hosted and (running is None or running.done()):
                            probes[s.spec.id] = asyncio.create_task(self._probe(s))
        finally:
            for task in probes.values():
                task.cancel()

    async def _probe(self, state: BackendState) -> None:
        """One active check. A backend in service must answer GET /models within 2 s (a failure counts like a
        failed request). An ejected one whose backoff has passed gets the half-open probe, a one-token answer
        within the first-byte deadline (its /models may answer while its engine hangs), which restores it or
        ejects it again. One still in its backoff, or with a probe out, is left alone."""
        spec = state.spec
        if state.probing or self.clock.now() < state.ejected_until:
            return
        half_open = state.ejected_until > 0
        headers = {"content-type": "application/json", **self._auth(spec)}
        reply: UpstreamReply | None = None
        try:
            if half_open:
                state.probing = True
                ping = {"model": spec.upstream_model, "messages": [{"role": "user", "content": "ping"}],
                        "max_tokens": 1}  # fmt: skip
                within = self._first_byte_s(state, 1, 1, stream=False)
                reply = await self.transport.post(f"{spec.base_url}/chat/completions", json.dumps(ping).encode(),
                                                  headers, within)  # fmt: skip
            else:
                reply = await self.transport.get(f"{spec.base_url}/models", headers, 2.0)
            await reply.read()
            reply.release()
            ok = reply.status < 500  # a 4xx (a model that does not chat, say) is an answer
        except (UpstreamError, TimeoutError):
            if reply is not None:
                reply.close()
            ok = False
        if not ok:
            self._failed(state)
        elif half_open:
            self._succeeded(state)

    @staticmethod
    def _auth(spec: BackendSpec) -> dict[str, str]:
        return {"authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}

    # --- requests -------------------------------------------------------------------------------------------
    async def proxy(self, request: Request, path: str) -> Response:
        caller_rid = _caller_request_id(request)
        own_rid = None if caller_rid else os.urandom(16).hex()  # the ledger keys on ids the gateway made, not callers'
        rid = caller_rid or own_rid or ""
        limits = self.config.limits
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_body_bytes:
            return error_response(413, f"request body over {limits.max_body_bytes:,} bytes", "request_too_large", rid)
        body = await request.body()
        if len(body) > limits.max_body_bytes:
            return error_response(413, f"request body over {limits.max_body_bytes:,} bytes", "request_too_large", rid)
        try:
            payload = _json.parse_request(body)
        except ValueError as exc:
            return error_response(400, f"the request body is not valid JSON: {exc}", "invalid_json", rid)
        if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
            return error_response(400, "the request needs a `model` (a string)", "missing_model", rid)
        if "stream" in payload and not isinstance(payload["stream"], bool):
            why = f"`stream` must be true or false, not {payload['stream']!r}"
            return error_response(400, why, "invalid_stream", rid)
        model = payload["model"]
        pool = self.pools.get(model)
        if pool is None:
            hint = did_you_mean(model, self.pools)
            return error_response(404, f"The model `{model}` does not exist.{hint}", "model_not_found", rid)
        if self.in_flight >= limits.max_in_flight:
            return error_response(503, "the gateway is at its in-flight limit; retry shortly", "overloaded", rid, 1)
        adm: Admission | None = None
        if self.tenancy is not None:
            admitted = await self.tenancy.admit(
                request, model, payload, pool.states, own_rid or os.urandom(16).hex(), len(body), self.in_flight,
                int(limits.max_in_flight * limits.batch_share),
            )  # fmt: skip
            if isinstance(admitted, Response):
                self.metrics.refused.labels(model, str(admitted.status_code)).inc()
                return admitted
            adm = admitted
            if adm.reservation.alerts:
                self.metrics.budget_alerts.labels(model).inc()
        try:
            return await self._route(request, path, payload, pool, body, rid, adm)
        except BaseException:
            await self._finish(adm, None, None, 500)  # releases the reservation; a no-op when already settled
            raise

    async def _route(
        self, request: Request, path: str, payload: dict[str, Any], pool: Pool, body: bytes, rid: str,
        adm: Admission | None,
    ) -> Response:  # fmt: skip
        """Check the request, then try the pool's backends until one answers, for as long as the client stays."""
        problem = request_problem(path, payload)
        if problem is not None:  # the client's mistake: no backend sees it
            await self._finish(adm, None, None, 400)
            return self._tag(problem.response(rid), adm)
        call = self._call(request, path, payload, body, pool, rid, adm)
        try:
            outcome = await unless_left(request, self._begin(call))
        except BaseException:
            if call.current is not None:
                call.settle(call.current)
            raise
        if outcome is None:
            await self._abandon(call)
            return self._tag(error_response(499, "the client closed the request", "client_closed_request", rid), adm)
        if isinstance(outcome, Upstream):
            headers = {**_relayed(outcome), "x-request-id": rid, "x-flopex-backend": outcome.state.spec.id,
                       "cache-control": "no-cache"}  # fmt: skip
            outcome = StreamingResponse(self._relay(call, outcome), media_type="text/event-stream", headers=headers,
                                        background=BackgroundTask(self._abandon, call))  # fmt: skip
        return self._tag(outcome, adm)

    def _call(
        self, request: Request, path: str, payload: dict[str, Any], body: bytes, pool: Pool, rid: str,
        adm: Admission | None,
    ) -> Call:  # fmt: skip
        stream = bool(payload.get("stream"))
        want_usage = stream and bool((payload.get("stream_options") or {}).get("include_usage"))
        jurisdiction = request.headers.get("x-flopex-jurisdiction")
        prompt = prompt_tokens(payload)
        route = pool.request(prompt, self._prefix_key(pool, payload), jurisdiction)
        tried: set[str] = set(adm.excluded) if adm is not None else set()
        # the client's bytes go upstream as they came unless something in them must change
        raw = body if (adm is None or not adm.rewrote) and (not stream or want_usage) else None
        return Call(pool, route, path, payload, rid, adm, stream, want_usage, tried, prompt, raw, _forwarded(request))

    async def _begin(self, call: Call) -> Response | Upstream:
        """The first answer: a response, or a stream whose first line came within `keepalive_after_s` or has not
        come yet (the client is then answered, and kept alive while it waits). Until then it fails over."""
        result = await self._open(call)
        while isinstance(result, Upstream):
            first = await result.first_line(self.config.timeouts.keepalive_after_s, call.rid)
            if not isinstance(first, Retry):
                return result
            self._fail(call, result, first)
            result = await self._open(call)
        return result

    async def _open(self, call: Call) -> Response | Upstream:
        """Try backends not yet tried (`max_retries` more at most) until one answers: its response, or its stream
        once the upstream has taken it. An answer counts the failures the request met before against their
        backends; with no backend left, the last error."""
        while call.attempts <= self.config.max_retries:
            state = call.pool.choose(call.route, call.tried, self.rng, self.clock.now())
            if state is None:
                break
            call.tried.add(state.spec.id)
            if call.attempts:
                self.metrics.retries.labels(call.pool.model).inc()
            call.attempts += 1
            result = await self._attempt(state, call)
            if isinstance(result, Retry):
                continue
            if isinstance(result, Upstream) or result.status_code < 300:
                for suspect in call.suspects:
                    self._failed(suspect)
                call.suspects.clear()
            return result
        return await self._give_up(call)

    async def _give_up(self, call: Call) -> Response:
        """No backend answered: the last error, or why no backend could be tried."""
        error = call.last_error
        model, states = call.pool.model, call.pool.states
        place = call.route.jurisdiction
        if error is None and place is not None and not any(place.upper() in s.spec.jurisdictions for s in states):
            served = sorted({j for s in states for j in s.spec.jurisdictions}) or ["none"]
            error = error_response(
                400,
                f"no backend of {model} serves jurisdiction {place!r} (x-flopex-jurisdiction);"
                f" its backends serve {', '.join(served)}",
                "jurisdiction_unavailable",
                call.rid,
            )
        if error is None and any(s.in_flight >= s.spec.max_concurrency for s in states):
            error = error_response(429, f"every backend of {model} is at its concurrency limit", "backends_busy",
                                   call.rid, 1)  # fmt: skip
        elif error is None:
            now = self.clock.now()
            back = min((s.ejected_until - now for s in states if s.ejected_until > now), default=None)
            error = error_response(503, f"no healthy backend for {model}", "no_backend", call.rid,
                                   back or self.config.health.backoff_s)  # fmt: skip
        await self._book(call.adm, None, None, error.status_code)
        return error

    @staticmethod
    def _tag(response: Response, adm: Admission | None) -> Response:
        if adm is not None:
            response.headers["x-flopex-request-id"] = adm.request_id
            if adm.reservation.alerts:
                response.headers["x-flopex-budget-alert"] = "; ".join(adm.reservation.alerts)
        return response

    async def _finish(self, adm: Admission | None, spec: BackendSpec | None, label: Label | None,
                      status: int, ttft: float | None = None) -> None:  # fmt: skip
        if adm is not None and self.tenancy is not None:
            await self.tenancy.finish(adm, spec, label, status, ttft)

    def _prefix_key(self, pool: Pool, payload: dict[str, Any]) -> int:
        if not pool.config.prefix:
            return 0
        messages = payload.get("messages")
        text = (
            json.dumps(messages)[: pool.config.prefix_chars]
            if messages
            else str(payload.get("prompt", ""))[: pool.config.prefix_chars]
        )
        return zlib.crc32(text.encode())

    async def _attempt(self, state: BackendState, call: Call) -> Response | Upstream | Retry:
        """One upstream attempt, bounded by its first-byte deadline: a response to return, a stream the upstream
        has taken, or `Retry` (the attempt settled, and blamed as its failure says)."""
        spec, t = state.spec, self.config.timeouts
        up = self._send(state, call, call.prompt)
        within = asyncio.timeout(self._first_byte_s(state, up.prompt, _answer_bound(call), call.stream))
        headers = {**call.forward, "content-type": "application/json", "x-request-id": call.rid, **self._auth(spec)}
        data = (
            call.raw if call.raw is not None and spec.upstream_model == call.pool.model else _upstream_body(call, spec)
        )
        try:
            async with within:
                up.resp = await self.transport.post(f"{spec.base_url}/{call.path}", data, headers, t.total_s,
                                                    t.connect_s)  # fmt: skip
                if call.stream and up.resp.status < 400:
                    up.first = asyncio.ensure_future(up.resp.readline())
                    up.deadline = within.when() or 0.0
                    return up
                text = await up.resp.read()
        except (UpstreamError, TimeoutError) as exc:
            if within.expired():  # no answer in time: the backend may hang, or no backend can answer this in time
                late = error_response(504, f"backend {spec.id} sent no first byte in time", "upstream_timeout",
                                      call.rid, 1)  # fmt: skip
                return self._fail(call, up, Retry(late, "unsure"))
            code, why = (504, "TimeoutError") if isinstance(exc, TimeoutError) else (502, str(exc))
            why = f"backend {spec.id} failed: {why}"
            lost = error_response(code, why, "upstream_error", call.rid, 1)
            return self._fail(call, up, Retry(lost, "backend"))
        if up.resp.status >= 400:
            return await self._refused(call, up, text)
        return await self._answered(call, up, text)

    def _send(self, state: BackendState, call: Call, prompt: int) -> Upstream:
        """An attempt goes to `state`'s backend: in flight there, and started on its meter."""
        gauge = self.metrics.of(state.spec).in_flight
        meter = self.metering.begin(state, prompt, call.stream, None if call.adm is None else call.adm.cap_usd)

        def leave() -> None:
            state.in_flight -= 1
            self.in_flight -= 1
            gauge.dec()

        state.in_flight += 1
        self.in_flight += 1
        gauge.inc()
        call.current = Upstream(state, meter, prompt, leave)
        return call.current

    def _first_byte_s(self, state: BackendState, prompt: int, max_tokens: int | None, stream: bool) -> float:
        """How long an attempt waits for its first byte: `first_byte_s` past the time the backend is expected to
        take to it, its TTFT (longer for a long prompt) and, for an answer that is not streamed (whose first byte
        comes with its last), its tokens at twice the TPOT; `total_s` for an answer of no known length."""
        t, spec = self.config.timeouts, state.spec
        expected = max(state.ttft, spec.ttft_s) * max(1.0, prompt / 1000)
        if not stream and max_tokens is None:
            return t.total_s
        if not stream and max_tokens:
            expected += 2 * max_tokens * max(state.tpot, spec.tpot_s)
        return min(t.total_s, t.first_byte_s + expected)

    async def _refused(self, call: Call, up: Upstream, text: bytes) -> Response | Retry:
        """An upstream error status. A 429 (backpressure) and a 5xx (the backend's fault or the request's) go on
        to another backend; another 4xx is the client's mistake: passed through, not retried, not counted."""
        assert up.resp is not None
        status, spec = up.resp.status, up.state.spec
        headers = {"x-request-id": call.rid}
        if status == 429 or status >= 500:
            self.metrics.requests.labels(spec.model, spec.id, str(status)).inc()
            headers["retry-after"] = up.resp.headers.get("retry-after", "1")
            answer = Response(text, status_code=status, media_type="application/json", headers=headers)
            return self._fail(call, up, Retry(answer, "unsure" if status >= 500 else "none"))
        call.settle(up, complete=True)
        up.state.released()
        await self._book(call.adm, spec, None, status)
        return Response(text, status_code=status, media_type="application/json", headers=headers)

    async def _answered(self, call: Call, up: Upstream, text: bytes) -> Response | Retry:
        """A whole answer: labelled with what it took of its backend, which is credited; the request settled."""
        spec = up.state.spec
        try:
            data = _json.loads(text)
        except ValueError:
            error = error_response(502, f"backend {spec.id} sent an unreadable answer", "upstream_error", call.rid, 1)
            return self._fail(call, up, Retry(error, "backend"))
        usage = data.get("usage") if isinstance(data, dict) else None
        label = up.meter.label(*_tokens(usage, data))
        call.settle(up, complete=True)
        self._succeeded(up.state)
        if isinstance(data, dict):
            data.setdefault("usage", {})
            if isinstance(data["usage"], dict):
                data["usage"]["cost"] = label.cost_usd
            data["flopex"] = label.model_dump(mode="json")
        self._served(spec, label, time.perf_counter() - call.start)
        await self._book(call.adm, spec, label, 200)
        return JSONResponse(data, headers={**_relayed(up), "x-request-id": call.rid, **label_headers(label)})

    def _fail(self, call: Call, up: Upstream, retry: Retry) -> Retry:
        """An attempt failed before its client saw a token. The backend's fault counts now; one that may be the
        request's counts once another backend answers the request (see `_inflight`)."""
        call.settle(up)
        call.last_error = retry.response
        if retry.blame == "backend":
            self._failed(up.state)
        else:
            up.state.released()
            if retry.blame == "unsure":
                call.suspects.append(up.state)
        return retry

    async def _relay(self, call: Call, up: Upstream) -> AsyncIterator[bytes]:
        """The client's event stream: keep-alive comments until the first line, failing over to another backend
        until then (the client has seen no token); then the upstream's lines. A client that leaves stops the
        upstream and is billed for what it used."""
        try:
            while (first := await up.first_line(self.config.timeouts.keepalive_after_s, call.rid)) is not True:
                if not isinstance(first, Retry):
                    yield b": keep-alive\n\n"
                    continue
                self._fail(call, up, first)
                opened = await self._open(call)
                if isinstance(opened, Response):
                    yield error_event(opened)
                    return
                up = opened
            async with contextlib.aclosing(self._lines(call, up)) as lines:
                async for part in lines:
                    yield part
        except (asyncio.CancelledError, GeneratorExit):
            with contextlib.suppress(asyncio.CancelledError):
                await self._abandon(call)
            raise

    async def _lines(self, call: Call, up: Upstream) -> AsyncGenerator[bytes, None]:
        """The upstream's lines from the first, each within `between_chunks_s` of the one before; the answer is
        settled at its end, or ends with an error event where the backend fails mid-stream (its fault)."""
        assert up.first is not None and up.resp is not None
        line = up.first.result()
        try:
            while line:
                out = await self._line(call, up, line)
                if out is not None:
                    yield out
                line = await asyncio.wait_for(up.resp.readline(), self.config.timeouts.between_chunks_s)
        except (UpstreamError, TimeoutError, ValueError) as exc:
            spec = up.state.spec
            self.metrics.stream_errors.labels(spec.id).inc()
            await self._ended(call, up, ok=False)
            broke = f"backend {spec.id} failed mid-stream: {str(exc) or type(exc).__name__}"
            yield error_event(error_response(502, broke, "upstream_stream_error"))
            return
        await self._ended(call, up, ok=True)

    async def _line(self, call: Call, up: Upstream, line: bytes) -> bytes | None:
        """One upstream line on its way to the client: tokens counted, the final usage chunk labelled (and kept
        from a client that did not ask for usage); at [DONE] the request is on the ledger before the client ends."""
        if line.startswith(b"data: [DONE]"):
            if up.label is None:
                up.label = up.meter.label(*up.counts("the upstream sent no usage"))
            if call.adm is not None:
                await self._book(call.adm, up.state.spec, up.label, 200, up.ttft(call.start))
            return line
        if not line.startswith(b"data: "):
            return line
        up.token()
        if b'"usage"' not in line:
            return line
        event = _json.loads(line[6:])
        if not (isinstance(event, dict) and isinstance(event.get("usage"), dict)):
            return line
        up.usage = event["usage"]
        if event.get("choices"):
            return line
        label = up.label = up.meter.label(*up.counts("upstream usage"))  # the final usage chunk: the answer is whole
        if not call.want_usage:
            return None
        event["usage"]["cost"] = label.cost_usd
        event["flopex"] = label.model_dump(mode="json")
        return b"data: " + _json.dumps(event) + b"\n"

    async def _ended(self, call: Call, up: Upstream, ok: bool) -> None:
        """A stream's end: labelled with what it took (the gateway's count where no usage came); its backend
        credited or, when the stream broke, blamed."""
        spec = up.state.spec
        if up.label is None and up.chunks:
            up.label = up.meter.label(*up.counts("the stream broke before the upstream's usage"))
        call.settle(up, complete=ok)
        if ok:
            self._succeeded(up.state)
            up.state.observe(*up.speeds())
            if up.label is not None:
                self._served(spec, up.label, time.perf_counter() - call.start)
        else:
            self._failed(up.state)
        await self._book(call.adm, spec, up.label, 200 if ok else 502, up.ttft(call.start))

    async def _abandon(self, call: Call) -> None:
        """The client left (a no-op once the request is settled): the attempt in flight stops, its upstream
        connection closed, and is billed to the client for its prompt (the gateway's estimate where no usage
        came) and the tokens streamed so far; the request is recorded as 499. Its backend is not blamed."""
        up = call.current
        if up is None:
            await self._book(call.adm, None, None, 499)
            return
        spec = up.state.spec
        label = up.label or up.meter.label(*up.counts("the client left before the upstream's usage"))
        call.settle(up)
        up.state.released()
        self.metrics.requests.labels(spec.model, spec.id, "499").inc()
        self.metrics.cost.labels(spec.model, spec.id).inc(label.cost_usd)
        if label.energy_wh_facility is not None:
            self.metrics.energy.labels(spec.model, spec.id).inc(label.energy_wh_facility)
        await self._book(call.adm, spec, label, 499, up.ttft(call.start))

    async def _book(self, adm: Admission | None, spec: BackendSpec | None, label: Label | None, status: int,
                    ttft: float | None = None) -> None:  # fmt: skip
        """`_finish`, run to its end even when the client leaves meanwhile (which cancels what serves it)."""
        if adm is not None:
            await asyncio.shield(self._finish(adm, spec, label, status, ttft))

    def _failed(self, state: BackendState) -> None:
        h = self.config.health
        if state.failed(self.clock.now(), h.eject_after_failures, h.backoff_s, h.max_backoff_s):
            self.metrics.ejections.labels(state.spec.id).inc()
            if self.shared is not None:
                self.shared.ejected(state)

    def _succeeded(self, state: BackendState) -> None:
        restored = state.ejected_until > 0
        state.succeeded()
        if restored and self.shared is not None:
            self.shared.restored(state)

    def _served(self, spec: BackendSpec, label: Label, elapsed: float) -> None:
        series = self.metrics.of(spec)
        series.answered.inc()
        series.latency.observe(elapsed)
        series.cost.inc(label.cost_usd)
        if label.energy_wh_facility is not None:  # unknown energy is no series, not a zero
            self.metrics.energy.labels(spec.model, spec.id).inc(label.energy_wh_facility)


_MAX_REQUEST_ID = 128
# the client's headers that never go upstream: the connection's own, the gateway's credentials and its own headers
_NOT_FORWARDED = frozenset({"host", "content-length", "content-type", "authorization", "cookie", "connection",
                            "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
                            "accept-encoding", "x-request-id", "expect"})  # fmt: skip
# the upstream's headers a client of an OpenAI-compatible API reads
_RELAYED_PREFIXES = ("x-ratelimit-", "openai-", "retry-after")


def _forwarded(request: Request) -> dict[str, str]:
    """The client's headers for the upstream (OpenAI-Organization, OpenAI-Project, its own x- headers...), less the
    connection's, its credentials and flopex's own."""
    return {k: v for k, v in request.headers.items() if k not in _NOT_FORWARDED and not k.startswith("x-flopex-")}


def _relayed(up: Upstream) -> dict[str, str]:
    """The upstream's rate-limit and OpenAI headers, for the client."""
    if up.resp is None:
        return {}
    return {k.lower(): v for k, v in up.resp.headers.items() if k.lower().startswith(_RELAYED_PREFIXES)}


def _caller_request_id(request: Request) -> str | None:
    """The caller's `x-request-id`, where it is a printable ASCII id of at most 128 characters (else the
    gateway makes its own: a header is echoed back and logged, so it must not be a vehicle for anything)."""
    rid = request.headers.get("x-request-id")
    if rid is None or not 0 < len(rid) <= _MAX_REQUEST_ID or not (rid.isascii() and rid.isprintable()):
        return None
    return rid


def _upstream_body(call: Call, spec: BackendSpec) -> bytes:
    """The request for `spec`'s backend: its own model name and, for a stream, the usage chunk asked for; UTF-8
    as the client sent it (text is not inflated into escapes)."""
    body = dict(call.payload, model=spec.upstream_model)
    if call.stream:
        body["stream_options"] = dict(call.payload.get("stream_options") or {}, include_usage=True)
    return _json.dumps(body)


def _tokens(usage: Any, data: Any, chunks: int = 0) -> tuple[int, int, str]:
    """(prompt, completion, how counted): the upstream's usage, else the gateway's own count."""
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        return int(usage.get("prompt_tokens") or 0), int(usage["completion_tokens"]), "upstream usage"
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):  # embeddings: a prompt, no answer
        return int(usage["prompt_tokens"]), 0, "upstream usage"
    if chunks:
        return 0, chunks, "gateway count of streamed chunks (the upstream sent no usage)"
    return 0, 0, "unknown (the upstream sent no usage)"


def _answer_bound(call: Call) -> int | None:
    """The most tokens the answer can have: what the request asks for (none for embeddings), else unknown."""
    if call.path == "embeddings":
        return 0
    asked = call.payload.get("max_completion_tokens", call.payload.get("max_tokens"))
    return asked if isinstance(asked, int) else None


async def _ledger_down(request: Request, exc: Exception) -> Response:
    log.error("the ledger database did not answer %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "the ledger database is not answering; retry shortly", "ledger_unavailable",
                          None, 1)  # fmt: skip


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, in OpenAI's error shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}", "method_not_allowed")
    return error_response(exc.status_code, f"no endpoint {request.url.path}; flopex serves /v1/chat/completions, "
                          "/v1/completions, /v1/embeddings and /v1/models", "not_found")  # fmt: skip


async def _crashed(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error in the gateway (logged); retry, or report it", "internal_error")


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "flopex"}


def create_app(config: GatewayConfig, backends: Mapping[str, Sequence[BackendSpec]], *, admin_token: str | None = None,
               seed: int | None = None, tenancy: Tenancy | None = None, transport: Transport | None = None,
               clock: Clock | None = None) -> Starlette:  # fmt: skip
    """The gateway as an ASGI app (uvicorn runs it; tests run it in a thread). With `tenancy`, every request
    needs an API key and is metered against budgets and rate limits into the ledger. `transport` and `clock`
    replace HTTP to the upstreams and the system's clock (see `flopex.gateway.testing`)."""
    gw = Gateway(config, backends, seed, tenancy, transport, clock)

    async def chat(request: Request) -> Response:
        return await gw.proxy(request, "chat/completions")

    async def completions(request: Request) -> Response:
        return await gw.proxy(request, "completions")

    async def embeddings(request: Request) -> Response:
        return await gw.proxy(request, "embeddings")

    async def models(request: Request) -> Response:
        if tenancy is not None and await tenancy.key_for(request) is None:
            return error_response(401, "a valid API key is needed (Authorization: Bearer KEY)", "invalid_api_key")
        return JSONResponse({"object": "list", "data": [_model(m) for m in gw.pools]})

    async def model(request: Request) -> Response:
        if tenancy is not None and await tenancy.key_for(request) is None:
            return error_response(401, "a valid API key is needed (Authorization: Bearer KEY)", "invalid_api_key")
        name = request.path_params["model"]
        if name not in gw.pools:
            return error_response(404, f"The model `{name}` does not exist.{did_you_mean(name, gw.pools)}",
                                  "model_not_found")  # fmt: skip
        return JSONResponse(_model(name))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        now = gw.clock.now()
        ready = all(any(s.available(now) and not s.draining for s in pool.states) for pool in gw.pools.values())
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = Starlette(
        middleware=[body_limit(config.limits)],  # a body's size is bounded before any handler reads it
        exception_handlers={SQLAlchemyError: _ledger_down, HTTPException: _http_error, Exception: _crashed},
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model:path}", model, methods=["GET"]),
            Route("/openapi.json", lambda request: JSONResponse(openapi(sorted(gw.pools))), methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *operator_routes(gw, admin_token),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return app
