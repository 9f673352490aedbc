"""Tenants at the gateway: authenticate the key, check its scopes and rate limits, reserve the largest cost
the request can have against its budgets, and on completion settle the real cost and record the usage."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from flopex.economics import Label
from flopex.gateway._backends import BackendState
from flopex.gateway._config import BackendSpec
from flopex.gateway._errors import error_response
from flopex.gateway._labels import reservation_usd
from flopex.ledger import KeyInfo, LedgerParts, Refusal, Reservation, UsageRecord

__all__ = ["Admission", "Tenancy"]

log = logging.getLogger("flopex.gateway")


@dataclass
class Admission:
    key: KeyInfo
    reservation: Reservation
    request_id: str
    model: str
    started: float
    excluded: frozenset[str] = frozenset()  # backends outside the key's jurisdictions
    cap_usd: float | None = None  # what was reserved: the most the request is charged
    rewrote: bool = False  # the request was given a max_tokens: its body must be written anew
    done: bool = False


class Tenancy:
    def __init__(self, parts: LedgerParts, default_max_tokens: int = 4096) -> None:
        self.parts = parts
        self.store = parts.store
        self.meter = parts.meter
        self.writer = parts.writer
        self.default_max_tokens = default_max_tokens  # given to requests that name no max_tokens
        self.keys: dict[str, tuple[float, KeyInfo | None]] = {}  # sha256(token) -> (expiry, key); never the token

    async def start(self) -> None:
        """Write what a killed gateway left in its journal, before taking traffic; then the batch writer."""
        await asyncio.to_thread(self.writer.replay)
        self.writer.start()

    async def stop(self) -> None:
        await self.meter.close()
        await self.writer.stop()
        if self.parts.redis is not None:
            await self.parts.redis.aclose()
        await asyncio.to_thread(self.store.engine.dispose)

    async def key_for(self, request: Request) -> KeyInfo | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        hit = self.keys.get(digest)
        if hit is None or hit[0] < time.monotonic():
            hit = (time.monotonic() + 10.0, await asyncio.to_thread(self.store.authenticate, token))
            if len(self.keys) > 50_000:
                self.keys.clear()
            self.keys[digest] = hit
        return hit[1]

    async def admit(
        self, request: Request, model: str, payload: dict[str, Any], states: Sequence[BackendState], rid: str,
        body_bytes: int, in_flight: int = 0, batch_ceiling: int = 1 << 62,
    ) -> Admission | Response:  # fmt: skip
        """Authenticate, check scopes (models, jurisdictions, tier) and rate limits, then reserve the request's
        largest possible cost on the key's and tenant's budgets: an Admission, or the error to answer with."""
        all_states = states
        try:
            key = await self.key_for(request)
        except Exception as exc:  # the database is down: keys cannot be checked
            log.error("request %s refused: keys cannot be checked: %s", rid, exc)
            return error_response(503, "API keys cannot be checked just now; retry shortly", "keys_unavailable",
                                  rid, 1)  # fmt: skip
        if key is None:
            log.warning("401 for request %s: %s", rid, _describe(request))
            return error_response(401, "Incorrect or missing API key; pass `Authorization: Bearer fpx_...`.",
                                  "invalid_api_key", rid)  # fmt: skip
        if not key.allows_model(model):
            return error_response(403, f"this key may not use `{model}`; it may use {', '.join(key.scopes['models'])}.",
                                  "model_not_allowed", rid)  # fmt: skip
        allowed = [j.upper() for j in key.scopes.get("jurisdictions") or ()]
        asked = request.headers.get("x-flopex-jurisdiction")
        if asked and allowed and asked.upper() not in allowed:
            return error_response(403, f"this key's data may go to {', '.join(allowed)} only, not {asked.upper()}",
                                  "jurisdiction_not_allowed", rid)  # fmt: skip
        if allowed:
            states = [s for s in states if s.spec.jurisdictions & set(allowed)]
            if not states:
                return error_response(403, f"no backend of `{model}` is in this key's jurisdictions "
                                      f"({', '.join(allowed)})", "jurisdiction_not_allowed", rid)  # fmt: skip
        if key.scopes.get("tier") == "batch" and in_flight >= batch_ceiling:
            return error_response(429, "the gateway is busy; batch-tier keys wait while interactive traffic is high",
                                  "batch_shed", rid, 1)  # fmt: skip
        field = "max_completion_tokens" if "max_completion_tokens" in payload else "max_tokens"
        max_tokens = asked = payload.get(field)
        if request.url.path.endswith("/embeddings"):
            max_tokens = 0  # an embedding has no answer to bound, and its backend would refuse the field
        elif max_tokens is None:  # bound the answer, so that the reservation bounds its cost
            max_tokens = payload["max_tokens"] = self.default_max_tokens
        elif not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return error_response(400, f"`{field}` must be a whole number of at least 1, not {max_tokens!r}",
                                  "invalid_max_tokens", rid)  # fmt: skip
        # every token is at least one byte of the body, so its length bounds the prompt's tokens
        worst = max((reservation_usd(s, body_bytes, max_tokens) for s in states), default=0.0)
        try:
            reservation = await self.meter.admit(key, worst)
        except Exception as exc:  # budgets cannot be checked: refuse rather than let spending run unchecked
            log.error("request %s refused: budgets and rate limits are unavailable: %s", rid, exc)
            return error_response(503, "budgets and rate limits cannot be checked just now; retry shortly",
                                  "budgets_unavailable", rid, 1)  # fmt: skip
        if isinstance(reservation, Refusal) and reservation.status == 429:
            return error_response(429, "rate limit reached for this key (requests or tokens per minute)",
                                  "rate_limit_exceeded", rid, reservation.retry_after_s)  # fmt: skip
        if isinstance(reservation, Refusal):
            message = (
                f"this request could cost up to ${worst:.6g} (its prompt and max_tokens at the dearest backend "
                "it may use, at that backend's speed), more than is left of a hard budget; a smaller max_tokens "
                "reserves less"
            )
            return error_response(402, message, "insufficient_quota", rid)
        excluded = frozenset(s.spec.id for s in all_states) - {s.spec.id for s in states}
        for alert in reservation.alerts:
            log.warning("soft budget: %s", alert)
        return Admission(
            key, reservation, rid, model, time.perf_counter(), excluded, worst, payload.get(field) is not asked
        )

    async def finish(self, adm: Admission, spec: BackendSpec | None, label: Label | None, status: int,
                     ttft: float | None = None) -> None:  # fmt: skip
        """Settle the reservation at the label's cost (0 without one) and record the request, with its label."""
        if adm.done:
            return
        adm.done = True
        cost = label.cost_usd if label else 0.0
        completion = int(label.completion_tokens or 0) if label else 0
        prompt = int(label.prompt_tokens or 0) if label else 0
        await self.meter.finish(adm.key, adm.reservation, cost, prompt + completion)
        self.writer.record(UsageRecord(
            request_id=adm.request_id, tenant_id=adm.key.tenant_id, key_id=adm.key.key_id, model=adm.model,
            backend=spec.id if spec else None, offer=spec.hardware if spec else None, prompt_tokens=prompt,
            completion_tokens=completion, cost_usd=cost, energy_wh=label.energy_wh_facility if label else None,
            co2e_g=label.co2e_g_operational if label else None,
            label=label.model_dump(mode="json") if label else None,
            ttft_s=ttft, latency_s=time.perf_counter() - adm.started, status=status, created=time.time(),
        ))  # fmt: skip


def _describe(request: Request) -> str:
    """What was wrong with the caller's key, naming the key id at most (never the secret)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return "no bearer key"
    parts = header[7:].strip().split("_", 2)
    if len(parts) != 3 or parts[0] != "fpx":
        return "a key not in flopex's fpx_<id>_<secret> form"
    return f"key id {parts[1][:32]!r} unknown, revoked or with a wrong secret"
