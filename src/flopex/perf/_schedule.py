"""How an engine schedules one replica, step by step: the one description the simulator runs on a virtual
clock and the emulator runs on a real one.

Like vLLM's scheduler: prompts wait in FIFO order and are admitted while the batch has room (the engine's
`max_batch`) and the KV cache has blocks; in every step each decoding sequence produces one token and the
prompts at the head of the queue are prefilled in chunks within the token budget left beside them (chunked
prefill), so a prompt shares its step with the decoders and slows their token. A sequence whose prefill
finishes produces its first token at the end of that step and then decodes one token a step. When the cache
cannot give every decoder one more token, the newest decoder is preempted and recomputed later. An engine
that reserves KV for the whole answer on admission (`kv_reservation: full`, TensorRT-LLM's no-evict
scheduler) never preempts.

Between steps that change the batch, decode steps are identical but for context growth, so `decode_run`
says how many can run together and `advance` applies them at once: this is what lets the simulator replay
an hour of traffic in seconds, and the emulator run the same steps one at a time.

Pure and deterministic: no clock, no randomness; the caller times each `Step` with `Replica.step`.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from flopex.perf._serving import Replica
from flopex.perf._step import Batch

__all__ = ["BLOCK_TOKENS", "EngineState", "Seq", "Step"]

BLOCK_TOKENS = 16  # tokens per KV block (vLLM's default)


class Seq:
    """One request inside an engine: its lengths and how far it has come."""

    __slots__ = (
        "key", "input_tokens", "output_tokens", "prefilled", "generated_before", "start", "finish", "target",
        "preemptions",
    )  # fmt: skip

    def __init__(self, key: int, input_tokens: int, output_tokens: int) -> None:
        self.key = key
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.prefilled = 0
        self.generated_before = 0  # tokens generated before a preemption (recomputed as prompt)
        self.start = 0  # step count when it began decoding
        self.finish = 0  # step count at which its last token is produced
        self.target = input_tokens  # tokens to prefill: the prompt and anything generated before a preemption
        self.preemptions = 0

    def reset(self) -> None:
        """Back to a fresh request (its replica failed: everything must be recomputed elsewhere)."""
        self.prefilled = 0
        self.generated_before = 0
        self.target = self.input_tokens
        self.preemptions += 1


@dataclass(frozen=True)
class Step:
    """What the next step does: its batch (to time), the prompts whose prefill it finishes."""

    batch: Batch
    finishing: tuple[Seq, ...]
    decode_only: bool


class EngineState:
    """The queue, the running batch and the KV cache of one replica."""

    __slots__ = ("replica", "waiting", "running", "heap", "steps", "base_ctx", "kv_cap", "budget", "limit",
                 "full_reservation", "reserved", "admitted", "preemptions")  # fmt: skip

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.waiting: deque[Seq] = deque()
        self.running: dict[int, Seq] = {}
        self.heap: list[tuple[int, int]] = []  # (finish step, key)
        self.steps = 0
        self.base_ctx = 0  # sum over running of (context - steps): context sum = base_ctx + len(running) * steps
        self.kv_cap = replica.memory.kv_capacity_tokens
        self.budget = replica.token_budget
        self.limit = replica.batch_limit
        self.full_reservation = replica.engine.kv_reservation == "full"
        self.reserved = 0  # tokens of KV held for whole answers (full reservation only)
        self.admitted = 0  # prompt tokens reserved by waiting sequences whose prefill has begun
        self.preemptions = 0

    # -- what the router and the reports see ---------------------------------------------------------------

    def context_sum(self) -> int:
        return self.base_ctx + len(self.running) * self.steps

    def kv_tokens(self) -> int:
        """Tokens of KV in use: running contexts (with half a block of slack each) plus the whole prompts of
        sequences whose prefill has begun (their blocks are reserved on admission); with full reservation,
        the whole answers of admitted sequences."""
        if self.full_reservation:
            return self.reserved
        blocks = self.context_sum() + BLOCK_TOKENS // 2 * len(self.running)
        return blocks + self.admitted

    def fits(self, seq: Seq) -> bool:
        """Whether the request can run here: its prompt and whole answer fit in the cache (an engine rejects
        a request longer than that, as vLLM does one beyond its maximum length)."""
        return seq.input_tokens + seq.output_tokens + BLOCK_TOKENS <= self.kv_cap

    def _footprint(self, seq: Seq) -> int:
        if self.full_reservation:
            return seq.target + seq.output_tokens - seq.generated_before
        return seq.target

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    # -- scheduling ----------------------------------------------------------------------------------------

    def add(self, seq: Seq) -> None:
        self.waiting.append(seq)

    def next_step(self) -> Step | None:
        """Admit and prefill FIFO within the token budget, the batch limit and the KV cache; preempt the
        newest decoders while the cache cannot hold one more token each. None when there is nothing to do."""
        step = self._compose()
        if step is None and self.waiting and not self.running:  # preemption emptied the batch: admit again
            step = self._compose()
        return step

    def _compose(self) -> Step | None:
        b = len(self.running)
        budget = self.budget - b
        chunk_tokens = 0
        pairs = 0.0
        finishing: list[Seq] = []
        kv_free = self.kv_cap - self.kv_tokens() - (0 if self.full_reservation else b)
        for seq in self.waiting:
            if budget <= 0 or b + len(finishing) >= self.limit:
                break
            if not seq.prefilled:  # admission reserves the whole prompt's blocks (or the whole answer's)
                need = self._footprint(seq)
                if need + BLOCK_TOKENS > kv_free:
                    break
                kv_free -= need
                if self.full_reservation:
                    self.reserved += need
                else:
                    self.admitted += seq.target
            chunk = min(seq.target - seq.prefilled, budget)
            pairs += chunk * (seq.prefilled + chunk / 2)
            seq.prefilled += chunk
            chunk_tokens += chunk
            budget -= chunk
            if seq.prefilled >= seq.target:
                finishing.append(seq)
        while self.running and not chunk_tokens and not self.full_reservation and self._kv_short():
            self._preempt(max(self.running.values(), key=lambda s: s.start))
            b = len(self.running)
        if b == 0 and chunk_tokens == 0:
            return None
        context = self.context_sum() / b if b else 0.0
        batch = Batch(b, context, chunk_tokens, pairs, b + len(finishing))
        return Step(batch, tuple(finishing), chunk_tokens == 0)

    def _kv_short(self) -> bool:
        return self.kv_tokens() + len(self.running) > self.kv_cap

    def decode_run(self) -> int:
        """Decode-only steps that can run before the batch changes: until the next sequence finishes or the
        cache fills (at least 1). Their mean context is `context_sum() / len(running) + k / 2`."""
        b = len(self.running)
        k_finish = self.heap[0][0] - self.steps if self.heap else 1
        k_kv = (self.kv_cap - self.kv_tokens()) // b if b and not self.full_reservation else k_finish
        return max(1, min(k_finish, k_kv))

    def advance(self, k: int) -> list[tuple[Seq, int]]:
        """Apply `k` decode steps: every running sequence gains k tokens. Returns the sequences that finished,
        each with the step (1..k) that produced its last token."""
        before = self.steps
        self.steps += k
        done: list[tuple[Seq, int]] = []
        while self.heap and self.heap[0][0] <= self.steps:
            _, key = heapq.heappop(self.heap)
            seq = self.running.pop(key)
            self.base_ctx -= seq.target + 1 - seq.start
            if self.full_reservation:
                self.reserved -= seq.target + seq.output_tokens - seq.generated_before
            done.append((seq, seq.finish - before))
        return done

    def start_decoding(self, finishing: tuple[Seq, ...]) -> list[Seq]:
        """After a step that finished these prompts: each has produced its first token and joins the batch.
        Returns those that are already complete (an answer of one token)."""
        complete = []
        for seq in finishing:  # admission is FIFO, so the prompts a step finishes lead the queue
            head = self.waiting.popleft()
            assert head is seq, "finished prompts must lead the queue"
            if not self.full_reservation:
                self.admitted -= seq.target
            remaining = seq.output_tokens - seq.generated_before - 1
            if remaining <= 0:
                if self.full_reservation:
                    self.reserved -= self._footprint(seq)
                complete.append(seq)
                continue
            seq.start = self.steps
            seq.finish = self.steps + remaining
            self.running[seq.key] = seq
            self.base_ctx += seq.target + 1 - seq.start
            heapq.heappush(self.heap, (seq.finish, seq.key))
        return complete

    def _preempt(self, seq: Seq) -> None:
        self.running.pop(seq.key)
        self.heap = [(f, k) for f, k in self.heap if k != seq.key]
        heapq.heapify(self.heap)
        generated = self.steps - seq.start + 1
        self.base_ctx -= seq.target + 1 - seq.start
        seq.generated_before += generated
        seq.target = seq.input_tokens + seq.generated_before
        seq.prefilled = 0
        seq.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(seq)

    def abort(self, seq: Seq) -> None:
        """Drop a sequence wherever it is (its client went away); its blocks are freed."""
        if seq.key in self.running:
            self.running.pop(seq.key)
            self.heap = [(f, k) for f, k in self.heap if k != seq.key]
            heapq.heapify(self.heap)
            self.base_ctx -= seq.target + 1 - seq.start
            if self.full_reservation:
                self.reserved -= self._footprint(seq)
            return
        for index, waiting in enumerate(self.waiting):
            if waiting is seq:
                del self.waiting[index]
                if seq.prefilled and self.full_reservation:
                    self.reserved -= self._footprint(seq)
                elif seq.prefilled:
                    self.admitted -= seq.target
                return

    def clear(self) -> list[Seq]:
        """The replica failed: every sequence it held, reset to be served again elsewhere."""
        moved = list(self.running.values()) + list(self.waiting)
        for seq in moved:
            seq.reset()
        self.running.clear()
        self.waiting.clear()
        self.heap.clear()
        self.base_ctx = 0
        self.reserved = 0
        self.admitted = 0
        return moved
