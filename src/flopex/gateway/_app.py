"""The OpenAI-compatible gateway: a Starlette app that routes each request to a backend of its model,
retries before the first byte, streams with a label in the final usage chunk, and exports metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from flopex.economics import Label, load_energy_table
from flopex.errors import did_you_mean
from flopex.gateway._backends import BackendState, Pool
from flopex.gateway._config import BackendSpec, GatewayConfig
from flopex.gateway._errors import JSONResponse, error_response
from flopex.gateway._labels import Attempt, MeterCollector, Metering, label_headers
from flopex.gateway._limits import body_limit
from flopex.gateway._prompt import prompt_tokens
from flopex.gateway._tenancy import Admission, Tenancy
from flopex.gateway._tenant_api import tenant_routes
from flopex.gateway._validate import request_problem

__all__ = ["create_app", "error_response"]

log = logging.getLogger("flopex.gateway")


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "flopex_requests", "Requests answered", ["model", "backend", "status"], registry=self.registry
        )
        self.latency = Histogram("flopex_request_seconds", "Time to the full answer (the stream's end when streaming)",
                                 ["model"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))  # fmt: skip
        self.retries = Counter(
            "flopex_retries", "Upstream attempts retried on another backend", ["model"], registry=self.registry
        )
        self.ejections = Counter(
            "flopex_ejections", "Backends ejected after failures", ["backend"], registry=self.registry
        )
        self.stream_errors = Counter("flopex_stream_errors", "Streams ended with an error after the first byte",
                                     ["backend"], registry=self.registry)  # fmt: skip
        self.in_flight = Gauge("flopex_in_flight", "Requests in flight", ["backend"], registry=self.registry)
        self.cost = Counter(
            "flopex_cost_usd", "Cost of the answers served", ["model", "backend"], registry=self.registry
        )
        self.energy = Counter(
            "flopex_energy_wh", "Energy of the answers served", ["model", "backend"], registry=self.registry
        )
        self.refused = Counter("flopex_tenant_refusals", "Requests refused before routing: keys, scopes, rate limits, "
                               "budgets", ["model", "status"], registry=self.registry)  # fmt: skip
        self.budget_alerts = Counter(
            "flopex_budget_alerts", "Requests admitted past a soft budget", ["model"], registry=self.registry
        )


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        backends: Mapping[str, Sequence[BackendSpec]],
        seed: int | None = None,
        tenancy: Tenancy | None = None,
    ) -> None:
        self.config = config
        self.tenancy = tenancy
        self.pools = {m: Pool.of(m, specs, config.models[m]) for m, specs in backends.items()}
        self.in_flight = 0
        self.rng = random.Random(seed)
        self.metrics = _Metrics()
        self.metering = Metering((s for specs in backends.values() for s in specs), load_energy_table())
        self.metrics.registry.register(MeterCollector(self.metering))
        self.session: aiohttp.ClientSession | None = None
        self.health_task: asyncio.Task[None] | None = None

    def state(self, backend_id: str) -> BackendState | None:
        for pool in self.pools.values():
            for s in pool.states:
                if s.spec.id == backend_id:
                    return s
        return None

    # --- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, json_serialize=json.dumps)
        self.health_task = asyncio.create_task(self._health_loop())
        if self.tenancy is not None:
            await self.tenancy.start()

    async def stop(self) -> None:
        if self.health_task is not None:
            self.health_task.cancel()
        if self.tenancy is not None:
            await self.tenancy.stop()
        if self.session is not None:
            await self.session.close()

    async def _health_loop(self) -> None:
        """Active checks: GET {base_url}/models; a failure counts like a failed request."""
        h = self.config.health
        while True:
            await asyncio.sleep(h.interval_s)
            for pool in self.pools.values():
                for s in pool.states:
                    if s.spec.hosted:
                        continue
                    ok = await self._probe(s.spec)
                    if ok and s.ejected_until > 0 and time.monotonic() >= s.ejected_until:
                        s.succeeded()
                    elif not ok and s.failed(time.monotonic(), h.eject_after_failures, h.backoff_s, h.max_backoff_s):
                        self.metrics.ejections.labels(s.spec.id).inc()

    async def _probe(self, spec: BackendSpec) -> bool:
        assert self.session is not None
        try:
            timeout = aiohttp.ClientTimeout(total=2.0)
            async with self.session.get(f"{spec.base_url}/models", headers=self._auth(spec), timeout=timeout) as r:
                return r.status < 500
        except (aiohttp.ClientError, TimeoutError):
            return False

    @staticmethod
    def _auth(spec: BackendSpec) -> dict[str, str]:
        return {"authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}

    # --- requests -------------------------------------------------------------------------------------------
    async def proxy(self, request: Request, path: str) -> Response:
        caller_rid = _caller_request_id(request)
        own_rid = None if caller_rid else uuid.uuid4().hex  # the ledger keys on ids the gateway made, not callers'
        rid = caller_rid or own_rid or ""
        limits = self.config.limits
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_body_bytes:
            return error_response(413, f"request body over {limits.max_body_bytes:,} bytes", "request_too_large", rid)
        body = await request.body()
        if len(body) > limits.max_body_bytes:
            return error_response(413, f"request body over {limits.max_body_bytes:,} bytes", "request_too_large", rid)
        payload = _parse(body)
        if isinstance(payload, str):
            return error_response(400, f"the request body is not valid JSON: {payload}", "invalid_json", rid)
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
                request, model, payload, pool.states, own_rid or uuid.uuid4().hex, len(body), self.in_flight,
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
        problem = request_problem(path, payload)
        if problem is not None:  # the client's mistake: no backend sees it
            await self._finish(adm, None, None, 400)
            return self._tag(problem.response(rid), adm)
        model = pool.model
        jurisdiction = request.headers.get("x-flopex-jurisdiction")
        stream = bool(payload.get("stream"))
        options = payload.get("stream_options") or {}
        want_usage = stream and bool(isinstance(options, dict) and options.get("include_usage"))
        route = pool.request(prompt_tokens(payload), self._prefix_key(pool, payload), jurisdiction)
        tried: set[str] = set(adm.excluded) if adm is not None else set()
        last_error: Response | None = None
        start = time.perf_counter()
        for attempt in range(self.config.max_retries + 1):
            state = pool.choose(route, tried, self.rng)
            if state is None:
                break
            tried.add(state.spec.id)
            if attempt:
                self.metrics.retries.labels(model).inc()
            upstream = dict(payload, model=state.spec.upstream_model)
            if stream:
                upstream["stream_options"] = dict(options if isinstance(options, dict) else {}, include_usage=True)
            result = await self._attempt(state, path, upstream, stream, want_usage, rid, start, adm)
            if isinstance(result, _Retry):
                last_error = result.response
                continue
            return self._tag(result, adm)
        if last_error is None:
            busy = any(s.in_flight >= s.spec.max_concurrency for s in pool.states)
            if busy:
                message = f"every backend of {model} is at its concurrency limit"
                last_error = error_response(429, message, "backends_busy", rid, 1)
            else:
                last_error = error_response(503, f"no healthy backend for {model}", "no_backend", rid,
                                            self.config.health.backoff_s)  # fmt: skip
        await self._finish(adm, None, None, last_error.status_code)
        return self._tag(last_error, adm)

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

    async def _attempt(
        self,
        state: BackendState,
        path: str,
        upstream: dict[str, Any],
        stream: bool,
        want_usage: bool,
        rid: str,
        start: float,
        adm: Admission | None,
    ) -> Response | _Retry:
        """One upstream attempt: a response to return, or `_Retry` (with the error to return if none is left)."""
        assert self.session is not None
        spec, t = state.spec, self.config.timeouts
        state.in_flight += 1
        self.in_flight += 1
        gauge = self.metrics.in_flight.labels(spec.id)
        gauge.inc()
        attempt = self.metering.begin(state, prompt_tokens(upstream), stream, None if adm is None else adm.cap_usd)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                attempt.end(billed=False)  # a no-op once labelled; else the backend's time it took goes unbilled
                state.in_flight -= 1
                self.in_flight -= 1
                gauge.dec()

        headers = {"content-type": "application/json", "x-request-id": rid, **self._auth(spec)}
        timeout = aiohttp.ClientTimeout(
            total=t.total_s, connect=t.connect_s, sock_read=max(t.first_byte_s, t.between_chunks_s)
        )
        try:
            resp = await self.session.post(
                f"{spec.base_url}/{path}", data=json.dumps(upstream), headers=headers, timeout=timeout
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            release()
            self._failed(state)
            code = 504 if isinstance(exc, TimeoutError) else 502
            return _Retry(
                error_response(code, f"backend {spec.id} failed: {type(exc).__name__}", "upstream_error", rid, 1)
            )
        if resp.status >= 500 or resp.status == 429:
            text = await resp.read()
            resp.release()
            release()
            if resp.status >= 500:
                self._failed(state)
            self.metrics.requests.labels(spec.model, spec.id, str(resp.status)).inc()
            after = resp.headers.get("retry-after", "1")
            headers = {"x-request-id": rid, "retry-after": after}
            retry = Response(text, status_code=resp.status, media_type="application/json", headers=headers)
            return _Retry(retry)
        if resp.status >= 400:  # the client's mistake: pass it through unchanged
            text = await resp.read()
            resp.release()
            release()
            state.succeeded()
            await self._finish(adm, spec, None, resp.status)
            return Response(text, status_code=resp.status, media_type="application/json", headers={"x-request-id": rid})
        if not stream:
            try:
                data = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                resp.release()
                release()
                self._failed(state)
                return _Retry(
                    error_response(502, f"backend {spec.id} sent an unreadable answer", "upstream_error", rid, 1)
                )
            usage = data.get("usage") if isinstance(data, dict) else None
            prompt, completion, counted = _tokens(usage, data)
            label = attempt.label(prompt, completion, counted)
            resp.release()
            release()
            elapsed = time.perf_counter() - start
            state.succeeded()
            if isinstance(data, dict):
                data.setdefault("usage", {})
                if isinstance(data["usage"], dict):
                    data["usage"]["cost"] = label.cost_usd
                data["flopex"] = label.model_dump(mode="json")
            self._served(spec, label, elapsed)
            await self._finish(adm, spec, label, 200)
            return JSONResponse(data, headers={"x-request-id": rid, **label_headers(label)})
        return await self._stream(state, attempt, resp, release, want_usage, rid, start, adm)

    async def _stream(
        self, state: BackendState, attempt: Attempt, resp: aiohttp.ClientResponse, release: Any, want_usage: bool,
        rid: str, start: float, adm: Admission | None,
    ) -> Response | _Retry:  # fmt: skip
        spec, t = state.spec, self.config.timeouts
        first = asyncio.ensure_future(resp.content.readline())
        done, _ = await asyncio.wait({first}, timeout=t.keepalive_after_s)
        if done:
            try:
                line = first.result()
            except (aiohttp.ClientError, TimeoutError):
                line = b""
            if not line:  # nothing came back: fail over while the client has seen nothing
                resp.release()
                release()
                self._failed(state)
                return _Retry(
                    error_response(
                        502, f"backend {spec.id} closed the stream before the first token", "upstream_error", rid, 1
                    )
                )

        async def body() -> AsyncIterator[bytes]:
            usage: dict[str, Any] | None = None
            chunks = 0
            first_token: float | None = None
            label: Label | None = None
            ok = False
            try:
                pending = first
                while not pending.done():  # keep the connection alive until the first token
                    yield b": keep-alive\n\n"
                    await asyncio.wait({pending}, timeout=t.keepalive_after_s)
                    if time.perf_counter() - start > t.first_byte_s:
                        raise TimeoutError("no first byte")
                line = pending.result()
                while line:
                    if line.startswith(b"data: [DONE]"):
                        if label is None:  # no usage chunk came: the gateway's count of the chunks
                            label = attempt.label(*_tokens(usage, None, chunks))
                        if adm is not None:  # on the ledger before the client ends
                            ttft = None if first_token is None else first_token - start
                            await self._finish(adm, spec, label, 200, ttft)
                    elif line.startswith(b"data: "):
                        if first_token is None:
                            first_token = time.perf_counter()
                            attempt.first_token()
                        chunks += 1
                        if b'"usage"' in line:
                            event = json.loads(line[6:])
                            if isinstance(event, dict) and event.get("usage"):
                                usage = event["usage"]
                                if not event.get("choices"):  # the final usage chunk: the answer is complete
                                    label = attempt.label(*_tokens(usage, None))
                                    if not want_usage:
                                        line = await asyncio.wait_for(resp.content.readline(), t.between_chunks_s)
                                        continue
                                    usage["cost"] = label.cost_usd
                                    event["flopex"] = label.model_dump(mode="json")
                                    line = b"data: " + json.dumps(event).encode() + b"\n"
                    yield line
                    line = await asyncio.wait_for(resp.content.readline(), t.between_chunks_s)
                ok = True
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self.metrics.stream_errors.labels(spec.id).inc()
                error = {"error": {"message": f"backend {spec.id} failed mid-stream: {type(exc).__name__}",
                                   "type": "api_error", "param": None, "code": "upstream_stream_error"}}  # fmt: skip
                # a blank line first closes any event the upstream left half-sent
                yield b"\ndata: " + json.dumps(error).encode() + b"\n\n"
            finally:
                if label is None and chunks:  # the stream broke after some of the answer: charged for what it took
                    label = attempt.label(*_tokens(usage, None, chunks))
                resp.release()
                release()
                if ok:
                    state.succeeded()
                    if first_token is not None:
                        tpot = (time.perf_counter() - first_token) / max(chunks - 1, 1)
                        state.observe(first_token - start, tpot)
                    if label is not None:
                        self._served(spec, label, time.perf_counter() - start)
                else:
                    self._failed(state)
                ttft = None if first_token is None else first_token - start
                await self._finish(adm, spec, label, 200 if ok else 502, ttft)

        headers = {"x-request-id": rid, "x-flopex-backend": spec.id, "cache-control": "no-cache"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    def _failed(self, state: BackendState) -> None:
        h = self.config.health
        if state.failed(time.monotonic(), h.eject_after_failures, h.backoff_s, h.max_backoff_s):
            self.metrics.ejections.labels(state.spec.id).inc()

    def _served(self, spec: BackendSpec, label: Label, elapsed: float) -> None:
        m = self.metrics
        m.requests.labels(spec.model, spec.id, "200").inc()
        m.latency.labels(spec.model).observe(elapsed)
        m.cost.labels(spec.model, spec.id).inc(label.cost_usd)
        if label.energy_wh_facility is not None:
            m.energy.labels(spec.model, spec.id).inc(label.energy_wh_facility)


_MAX_REQUEST_ID = 128


def _caller_request_id(request: Request) -> str | None:
    """The caller's `x-request-id`, where it is a printable ASCII id of at most 128 characters (else the
    gateway makes its own: a header is echoed back and logged, so it must not be a vehicle for anything)."""
    rid = request.headers.get("x-request-id")
    if rid is None or not 0 < len(rid) <= _MAX_REQUEST_ID or not (rid.isascii() and rid.isprintable()):
        return None
    return rid


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse(body: bytes) -> Any:
    """The request body as JSON, or why it is not: strict JSON (no NaN or Infinity), nested at most as deep as
    Python's parser goes, and text without lone surrogates (which no backend could be sent)."""
    try:
        payload = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        return "nested too deeply"
    except ValueError as exc:
        return str(exc)
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff without its pair)"
    except RecursionError:
        return "nested too deeply"
    return payload


class _Retry:
    """An attempt that failed in a way another backend may not: `response` is what to return if none is left."""

    __slots__ = ("response",)

    def __init__(self, response: Response) -> None:
        self.response = response


def _tokens(usage: Any, data: Any, chunks: int = 0) -> tuple[int, int, str]:
    """(prompt, completion, how counted): the upstream's usage, else the gateway's own count."""
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        return int(usage.get("prompt_tokens") or 0), int(usage["completion_tokens"]), "upstream usage"
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):  # embeddings: a prompt, no answer
        return int(usage["prompt_tokens"]), 0, "upstream usage"
    if chunks:
        return 0, chunks, "gateway count of streamed chunks (the upstream sent no usage)"
    return 0, 0, "unknown (the upstream sent no usage)"


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "flopex"}


def create_app(config: GatewayConfig, backends: Mapping[str, Sequence[BackendSpec]], *, admin_token: str | None = None,
               seed: int | None = None, tenancy: Tenancy | None = None) -> Starlette:  # fmt: skip
    """The gateway as an ASGI app (uvicorn runs it; tests run it in a thread). With `tenancy`, every request
    needs an API key and is metered against budgets and rate limits into the ledger."""
    gw = Gateway(config, backends, seed, tenancy)

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
        now = time.monotonic()
        ready = all(any(s.available(now) and not s.draining for s in pool.states) for pool in gw.pools.values())
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        if tenancy is not None and not config.metrics_public and not await authorised(request):
            return error_response(401, "with tenants on, /metrics needs the admin token or an admin key (or "
                                  "`metrics_public: true`)", "unauthorised")  # fmt: skip
        return Response(generate_latest(gw.metrics.registry), media_type="text/plain; version=0.0.4")

    async def authorised(request: Request) -> bool:
        """The admin token, or an admin key; with tenancy on there is no open admin API."""
        header = request.headers.get("authorization", "")
        if admin_token is not None and hmac.compare_digest(header.encode(), f"Bearer {admin_token}".encode()):
            return True
        if tenancy is not None:
            key = await tenancy.key_for(request)
            return key is not None and key.admin
        return admin_token is None

    async def backends_view(request: Request) -> Response:
        if not await authorised(request):
            return error_response(401, "admin endpoints need the admin token", "unauthorised")
        now = time.monotonic()
        data = [
            {"id": s.spec.id, "model": s.spec.model, "in_flight": s.in_flight, "available": s.available(now),
             "draining": s.draining, "ttft_s": s.ttft, "tpot_s": s.tpot, "served": s.served, "errors": s.errors,
             "usd_per_token_now": s.usd_per_token(), "books": gw.metering.view(s.spec.id)}
            for pool in gw.pools.values() for s in pool.states
        ]  # fmt: skip
        return JSONResponse({"backends": data})

    async def drain(request: Request) -> Response:
        if not await authorised(request):
            return error_response(401, "admin endpoints need the admin token", "unauthorised")
        state = gw.state(request.path_params["backend"])
        if state is None:
            return error_response(404, f"no backend {request.path_params['backend']!r}", "backend_not_found")
        state.draining = request.url.path.endswith("/drain")
        return JSONResponse({"id": state.spec.id, "draining": state.draining, "in_flight": state.in_flight})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    async def ledger_down(request: Request, exc: Exception) -> Response:
        log.error("the ledger database did not answer %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "the ledger database is not answering; retry shortly", "ledger_unavailable",
                              None, 1)  # fmt: skip

    async def http_error(request: Request, exc: Exception) -> Response:
        """Unknown paths and methods, in OpenAI's error shape."""
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return error_response(405, f"{request.method} is not allowed on {request.url.path}", "method_not_allowed")
        return error_response(exc.status_code, f"no endpoint {request.url.path}; flopex serves /v1/chat/completions, "
                              "/v1/completions, /v1/embeddings and /v1/models", "not_found")  # fmt: skip

    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error in the gateway (logged); retry, or report it", "internal_error")

    app = Starlette(
        middleware=[body_limit(config.limits)],  # a body's size is bounded before any handler reads it
        exception_handlers={SQLAlchemyError: ledger_down, HTTPException: http_error, Exception: crashed},
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model:path}", model, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/admin/backends", backends_view, methods=["GET"]),
            *tenant_routes(tenancy, set(gw.pools), authorised),
            Route("/admin/backends/{backend}/drain", drain, methods=["POST"]),
            Route("/admin/backends/{backend}/undrain", drain, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return app
