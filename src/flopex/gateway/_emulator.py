"""An emulated OpenAI-compatible backend whose timing follows flopex's performance model.

Requests join a continuous batch: a prompt waits for a slot (the batch is limited by the engine and by the KV
cache, as the model computes them), is prefilled in one step next to the running batch, then produces one
token per decode step whose time depends on how many sequences are decoding at that moment. Full queues
answer 429. Fault flags make it fail on purpose. `time_scale` shrinks every delay (tests run at 0.01)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from flopex.perf import Batch, Replica

__all__ = ["EmulatorFaults", "create_emulator"]


@dataclass(frozen=True)
class EmulatorFaults:
    error_rate: float = 0.0  # share of requests answered with a 500
    hang: bool = False  # accept requests and never answer
    slow: float = 1.0  # multiply every delay
    die_after: int = 0  # exit the process after this many requests (0: never)
    drop_rate: float = 0.0  # share of streams whose connection drops mid-answer


class _Engine:
    def __init__(self, replica: Replica, time_scale: float, max_queue: int) -> None:
        self.replica = replica
        self.time_scale = time_scale
        self.running = 0
        self.waiting = 0
        self.max_queue = max_queue
        per_seq = 1200  # a typical request's KV footprint (1,000 in, 200 out)
        self.slots = max(1, min(replica.batch_limit, replica.memory.kv_capacity_tokens // per_seq))
        self.free = asyncio.Semaphore(self.slots)

    def step_s(self, prompt: int = 0) -> float:
        b = max(self.running, 1)
        t = self.replica.step(Batch(b, 1000.0, float(prompt), prompt * prompt / 2, b)).total_s
        return t * self.time_scale


def create_emulator(model: str, replica: Replica, *, time_scale: float = 1.0, max_queue: int = 256,
                    faults: EmulatorFaults = EmulatorFaults(), seed: int = 0) -> Starlette:  # fmt: skip
    engine = _Engine(replica, time_scale, max_queue)
    rng = random.Random(seed)
    served = 0

    def error(status: int, message: str, code: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "api_error", "param": None, "code": code}}, status)

    async def handle(request: Request, chat: bool) -> Response:
        nonlocal served
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return error(400, "the request body is not valid JSON", "invalid_json")
        served += 1
        if faults.die_after and served > faults.die_after:
            os._exit(1)
        if faults.hang:
            await asyncio.sleep(3600)
        if rng.random() < faults.error_rate:
            return error(500, "emulated failure", "emulated_error")
        if engine.waiting >= engine.max_queue:
            return JSONResponse({"error": {"message": "queue full", "type": "rate_limit_error", "param": None,
                                           "code": "queue_full"}}, 429, headers={"retry-after": "1"})  # fmt: skip
        text = json.dumps(payload.get("messages")) if chat else str(payload.get("prompt", ""))
        prompt_tokens = max(1, len(text) // 4)
        completion_tokens = int(payload.get("max_tokens") or payload.get("max_completion_tokens") or 16)
        stream = bool(payload.get("stream"))
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        rid = f"cmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        slow = faults.slow
        drop = stream and rng.random() < faults.drop_rate

        def chunk(delta: dict[str, Any] | None, finish: str | None, usage: dict[str, int] | None = None) -> bytes:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}] if chat else \
                [{"index": 0, "text": delta.get("content", ""), "finish_reason": finish}]  # fmt: skip
            event: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                                     "created": created, "model": payload.get("model"), "choices": choices}  # fmt: skip
            if usage is not None:
                event["usage"] = usage
            return b"data: " + json.dumps(event).encode() + b"\n\n"

        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip

        async def run() -> AsyncIterator[bytes]:
            engine.waiting += 1
            await engine.free.acquire()
            engine.waiting -= 1
            engine.running += 1
            try:
                await asyncio.sleep(
                    engine.step_s(prompt_tokens) * slow + replica.engine.request_overhead_s * time_scale
                )
                for i in range(completion_tokens):
                    if drop and i == completion_tokens // 2:
                        raise ConnectionResetError("emulated connection drop")
                    yield chunk({"content": f" tok{i}"} if i else {"role": "assistant", "content": "tok0"},
                                "length" if i == completion_tokens - 1 else None)  # fmt: skip
                    if i < completion_tokens - 1:
                        await asyncio.sleep(engine.step_s() * slow)
            finally:
                engine.running -= 1
                engine.free.release()

        if stream:

            async def sse() -> AsyncIterator[bytes]:
                async for part in run():
                    yield part
                if include_usage:
                    yield chunk(None, None, usage)
                yield b"data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream")
        async for _ in run():
            pass
        text_out = " ".join(f"tok{i}" for i in range(completion_tokens))
        message = {"role": "assistant", "content": text_out}
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        choice.update({"message": message} if chat else {"text": text_out})
        body = {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": payload.get("model"), "choices": [choice], "usage": usage}  # fmt: skip
        return JSONResponse(body)

    async def chat(request: Request) -> Response:
        return await handle(request, True)

    async def completions(request: Request) -> Response:
        return await handle(request, False)

    async def embeddings(request: Request) -> Response:
        payload = json.loads(await request.body())
        items = payload.get("input") or [""]
        items = items if isinstance(items, list) else [items]
        data = [{"object": "embedding", "index": i, "embedding": [0.0] * 8} for i, _ in enumerate(items)]
        tokens = sum(max(1, len(str(x)) // 4) for x in items)
        return JSONResponse({"object": "list", "data": data, "model": payload.get("model"),
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})  # fmt: skip

    async def models(request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "emulator"}]}
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"running": engine.running, "waiting": engine.waiting, "slots": engine.slots})

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ])  # fmt: skip
