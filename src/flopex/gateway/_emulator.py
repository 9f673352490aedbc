"""An emulated OpenAI-compatible backend: the simulator's engine on a real clock.

Each model replica of the deployment runs `flopex.perf.EngineState`, the scheduler `flopex simulate` runs
on a virtual clock: prompts of their real length wait FIFO for the batch limit and the KV cache, are
prefilled in chunks beside the decoding sequences (so a long prompt slows everyone's next token), and every
step's time is the performance model's for that step's batch at the sequences' real contexts. Steps are
kept on an absolute schedule, so a busy event loop delays tokens without stretching the emulated engine.
A client that goes away frees its sequence, as vLLM aborts it. Full queues answer 429. Fault flags make it
fail on purpose. `time_scale` multiplies every delay (tests run at 0.01)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from flopex.gateway._prompt import prompt_tokens
from flopex.perf import Batch, EngineState, Replica, Seq

__all__ = ["EmulatorFaults", "create_emulator"]


@dataclass(frozen=True)
class EmulatorFaults:
    error_rate: float = 0.0  # share of requests answered with a 500
    hang: bool = False  # accept requests and never answer
    slow: float = 1.0  # multiply every delay
    die_after: int = 0  # exit the process after this many requests (0: never)
    drop_rate: float = 0.0  # share of streams whose connection drops mid-answer
    stall: bool = False  # a stuck engine: streams send their headers and then nothing; plain answers never come
    bad_request_status: int = 400  # the answer to a request it cannot read (some servers answer 500)
    poison: str = ""  # a request whose body holds this text is answered with a 500, as by an engine crashing on it


class _Stream(Seq):
    """A sequence with the queue its answer's tokens are delivered through (a count per step, None at the
    end)."""

    __slots__ = ("tokens",)

    def __init__(self, key: int, input_tokens: int, output_tokens: int) -> None:
        super().__init__(key, input_tokens, output_tokens)
        self.tokens: asyncio.Queue[int | None] = asyncio.Queue()


class _Engine:
    """One model replica stepping on the event loop's clock."""

    def __init__(self, replica: Replica, delay: float) -> None:
        self.replica = replica
        self.state = EngineState(replica)
        self.delay = delay  # seconds of real time per emulated second
        self.wake = asyncio.Event()
        self.aborted: set[_Stream] = set()
        self.task: asyncio.Task[None] | None = None

    @property
    def load(self) -> int:
        return len(self.state.waiting) + len(self.state.running)

    def submit(self, seq: _Stream) -> None:
        self.state.add(seq)
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def abort(self, seq: _Stream) -> None:
        self.aborted.add(seq)  # applied between steps, never inside one
        self.wake.set()

    async def _run(self) -> None:
        try:
            await self._steps()
        except Exception:  # an emulator bug must end its streams, not leave them waiting for ever
            for seq in [*self.state.waiting, *self.state.running.values()]:
                assert isinstance(seq, _Stream)
                seq.tokens.put_nowait(None)
            raise

    async def _steps(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        state = self.state
        while True:
            for seq in self.aborted:
                state.abort(seq)
            self.aborted.clear()
            step = state.next_step()
            if step is None:
                self.wake.clear()
                await self.wake.wait()
                deadline = loop.time()
                continue
            batch = step.batch
            if step.decode_only:  # one decode step, timed at its mid-point context as the simulator times runs
                batch = Batch(batch.decode, batch.context + 0.5, 0.0, 0.0, batch.decode)
            deadline = max(deadline, loop.time() - 0.05) + self.replica.step(batch).total_s * self.delay
            await asyncio.sleep(max(deadline - loop.time(), 0.0))
            for done, _ in state.advance(1):
                self._deliver(done, last=True)
            for running in state.running.values():
                self._deliver(running, last=False)
            complete = state.start_decoding(step.finishing)
            for first in step.finishing:
                self._deliver(first, last=first in complete)

    @staticmethod
    def _deliver(seq: Seq, *, last: bool) -> None:
        assert isinstance(seq, _Stream)
        seq.tokens.put_nowait(1)
        if last:
            seq.tokens.put_nowait(None)


class _Deployment:
    """The model replicas of one deployment; a request goes to the least loaded."""

    def __init__(self, replica: Replica, delay: float, max_queue: int) -> None:
        self.engines = [_Engine(replica, delay) for _ in range(max(replica.layout.replicas, 1))]
        self.max_queue = max_queue
        self.keys = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(len(e.state.waiting) for e in self.engines)

    @property
    def running(self) -> int:
        return sum(len(e.state.running) for e in self.engines)

    def fits(self, input_tokens: int, output_tokens: int) -> bool:
        return self.engines[0].state.fits(Seq(0, input_tokens, output_tokens))

    def submit(self, input_tokens: int, output_tokens: int) -> tuple[_Engine, _Stream]:
        engine = min(self.engines, key=lambda e: e.load)
        seq = _Stream(next(self.keys), input_tokens, output_tokens)
        engine.submit(seq)
        return engine, seq


def _error(status: int, message: str, code: str, kind: str = "api_error") -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status, headers={"retry-after": "1"} if status == 429 else None)


def _lengths(payload: dict[str, Any], chat: bool) -> tuple[int, int] | str:
    """(prompt tokens, answer tokens) of a request, or what is wrong with it. A prompt counts four characters
    of its JSON a token; the answer is `max_tokens` long (16 when not given)."""
    asked = payload.get("max_tokens", payload.get("max_completion_tokens"))
    try:
        answer = 16 if asked is None else int(asked)
    except (TypeError, ValueError):
        return "max_tokens must be a positive integer"
    if answer < 1:
        return "max_tokens must be a positive integer"
    prompt = {"messages": payload.get("messages")} if chat else {"prompt": payload.get("prompt", "")}
    return prompt_tokens(prompt), answer


@dataclass(frozen=True)
class _Answer:
    """One answer's identity and lengths, and its OpenAI wire shapes (chat or text completion)."""

    chat: bool
    model: Any
    prompt_tokens: int
    completion_tokens: int
    id: str = field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex[:12]}")
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}  # fmt: skip

    def chunk(self, index: int | None) -> bytes:
        """The server-sent event of token `index` (None: the closing event with the usage)."""
        event: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                                 "created": self.created, "model": self.model, "choices": []}  # fmt: skip
        if index is None:
            event["usage"] = self.usage
        else:
            finish = "length" if index == self.completion_tokens - 1 else None
            if self.chat:
                delta = {"content": f" tok{index}"} if index else {"role": "assistant", "content": "tok0"}
                event["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
            else:
                event["choices"] = [{"index": 0, "text": f" tok{index}" if index else "tok0", "finish_reason": finish}]
        return b"data: " + json.dumps(event).encode() + b"\n\n"

    def body(self) -> dict[str, Any]:
        """The whole answer, for a request that did not ask to stream."""
        text = " ".join(f"tok{i}" for i in range(self.completion_tokens))
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        choice.update({"message": {"role": "assistant", "content": text}} if self.chat else {"text": text})
        return {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.model, "choices": [choice], "usage": self.usage}  # fmt: skip


async def _tokens(deployment: _Deployment, answer: _Answer, overhead_s: float, drop: bool) -> AsyncIterator[bytes]:
    """The answer's token events as its engine produces them; a client that leaves early frees its sequence."""
    engine, seq = deployment.submit(answer.prompt_tokens, answer.completion_tokens)
    sent = 0
    try:
        while (count := await seq.tokens.get()) is not None:
            if sent == 0:  # the engine's per-request cost delays the first token, not the engine
                await asyncio.sleep(overhead_s)
            for _ in range(count):
                if drop and sent == answer.completion_tokens // 2:
                    raise ConnectionResetError("emulated connection drop")
                yield answer.chunk(sent)
                sent += 1
    finally:
        if sent < answer.completion_tokens:
            engine.abort(seq)


_EMBEDDING_FIELDS = {"input", "model", "encoding_format", "dimensions", "user"}


async def _stalled(stream: bool) -> Response:
    """A stuck engine's answer: a stream's headers and then nothing, or nothing at all."""

    async def nothing() -> AsyncIterator[bytes]:
        await asyncio.sleep(3600)
        yield b""

    if not stream:
        await asyncio.sleep(3600)
    return StreamingResponse(nothing(), media_type="text/event-stream")


async def _embeddings(request: Request) -> Response:
    """Zero vectors of eight dimensions, one per input, with token usage."""
    try:
        payload = json.loads(await request.body())
    except ValueError:
        return _error(400, "the request body is not valid JSON", "invalid_json")
    if not isinstance(payload, dict):
        return _error(400, "the request body must be a JSON object", "invalid_json")
    unknown = sorted(set(payload) - _EMBEDDING_FIELDS)
    if unknown:  # as OpenAI's API does: an embedding takes no answer-length or sampling fields
        return _error(400, f"Unrecognized request argument supplied: {', '.join(unknown)}", "invalid_request")
    items = payload.get("input") or [""]
    items = items if isinstance(items, list) else [items]
    data = [{"object": "embedding", "index": i, "embedding": [0.0] * 8} for i, _ in enumerate(items)]
    tokens = sum(max(1, len(str(x)) // 4) for x in items)
    return JSONResponse({"object": "list", "data": data, "model": payload.get("model"),
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})  # fmt: skip


def create_emulator(model: str, replica: Replica, *, time_scale: float = 1.0, max_queue: int = 256,
                    faults: EmulatorFaults = EmulatorFaults(), seed: int = 0) -> Starlette:  # fmt: skip
    deployment = _Deployment(replica, time_scale * faults.slow, max_queue)
    rng = random.Random(seed)
    overhead_s = replica.engine.request_overhead_s * time_scale * faults.slow
    served = 0

    async def faulty() -> Response | None:
        """The failures asked for on the command line, in the order a request meets them."""
        nonlocal served
        served += 1
        if faults.die_after and served > faults.die_after:
            os._exit(1)
        if faults.hang:
            await asyncio.sleep(3600)
        if rng.random() < faults.error_rate:
            return _error(500, "emulated failure", "emulated_error")
        return None

    async def handle(request: Request, chat: bool) -> Response:
        body = await request.body()
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "the request body is not valid JSON", "invalid_json")
        if not isinstance(payload, dict):
            return _error(400, "the request body must be a JSON object", "invalid_json")
        if faults.poison and faults.poison.encode() in body:
            return _error(500, "emulated crash on this input", "emulated_error")
        if (failed := await faulty()) is not None:
            return failed
        if faults.stall:
            return await _stalled(bool(payload.get("stream")))
        if deployment.waiting >= deployment.max_queue:
            return _error(429, "queue full", "queue_full", "rate_limit_error")
        lengths = _lengths(payload, chat)
        if isinstance(lengths, str):
            return _error(faults.bad_request_status, lengths, "invalid_value")
        if sum(lengths) > replica.model.max_context:  # as vLLM answers a request longer than the model's window
            return _error(400, f"This model's maximum context length is {replica.model.max_context:,} tokens; "
                          f"this request asks for {sum(lengths):,}", "context_length_exceeded")  # fmt: skip
        if not deployment.fits(*lengths):
            return _error(400, f"{sum(lengths)} tokens exceed the KV cache of a replica", "context_length_exceeded")
        answer = _Answer(chat, payload.get("model"), *lengths)
        if not payload.get("stream"):
            async for _ in _tokens(deployment, answer, overhead_s, False):
                pass
            return JSONResponse(answer.body())
        usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        events = _tokens(deployment, answer, overhead_s, rng.random() < faults.drop_rate)

        async def sse() -> AsyncIterator[bytes]:
            async for part in events:
                yield part
            if usage:
                yield answer.chunk(None)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    async def chat(request: Request) -> Response:
        return await handle(request, True)

    async def completions(request: Request) -> Response:
        return await handle(request, False)

    async def models(request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "emulator"}]}
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"running": deployment.running, "waiting": deployment.waiting,
                             "replicas": len(deployment.engines)})  # fmt: skip

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", _embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ])  # fmt: skip
