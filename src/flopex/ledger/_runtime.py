"""What the gateway does per request when tenants are on: budgets reserved and settled atomically, rate limits
per key, and usage records journaled before the answer leaves and written to the database in batches.

A meter admits or refuses a request and settles it. `LocalMeter`: rate limits in this process, and budgets in
this process (the event loop makes check-and-reserve atomic) or in the database (a conditional UPDATE under the
row lock). `RedisMeter`: budgets and rate limits shared by every gateway replica, by credit leased from Redis
through Lua scripts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from flopex.ledger._journal import Journal, orphan_segments, replay_segments
from flopex.ledger._store import Budget, KeyInfo, LedgerStore, UsageRecord, period_key

log = logging.getLogger("flopex.ledger")

__all__ = [
    "Budgets",
    "LocalBudgets",
    "LocalMeter",
    "Meter",
    "RedisMeter",
    "Refusal",
    "Reservation",
    "SqlBudgets",
    "UsageWriter",
    "reconcile_redis",
]


@dataclass(frozen=True)
class Reservation:
    items: tuple[tuple[Budget, str, float], ...]  # (budget, period key, amount)
    alerts: tuple[str, ...] = ()  # soft budgets passed


class Budgets(Protocol):
    async def reserve(self, key: KeyInfo, amount: float) -> Reservation | None: ...
    async def settle(self, reservation: Reservation, actual: float) -> None: ...


class _BudgetCache:
    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self.cache: dict[str, tuple[float, list[Budget]]] = {}

    async def of(self, key: KeyInfo) -> list[Budget]:
        hit = self.cache.get(key.key_id)
        if hit is None or hit[0] < time.monotonic():
            hit = (time.monotonic() + 5.0, await asyncio.to_thread(self.store.budgets_for, key))
            self.cache[key.key_id] = hit
        return hit[1]


class LocalBudgets:
    """One process: reserved and spent per (budget, period) in memory, seeded from the usage records."""

    def __init__(self, store: LedgerStore) -> None:
        self.budgets = _BudgetCache(store)
        self.store = store
        self.state: dict[tuple[int, str], list[float]] = {}

    async def reserve(self, key: KeyInfo, amount: float) -> Reservation | None:
        items = [(b, period_key(b.period), amount) for b in await self.budgets.of(key)]
        for b, p, _ in items:
            if (b.id, p) not in self.state:
                spent = await asyncio.to_thread(self.store.spent, b, p)
                self.state.setdefault((b.id, p), [0.0, spent])
        # no await from here on: check and reserve happen as one step on the event loop
        alerts = []
        for b, p, a in items:
            reserved, spent = self.state[(b.id, p)]
            if spent + reserved + a > b.limit_usd:
                if b.hard:
                    return None
                alerts.append(_alert(b))
        for b, p, a in items:
            self.state[(b.id, p)][0] += a
        return Reservation(tuple(items), tuple(alerts))

    async def settle(self, reservation: Reservation, actual: float) -> None:
        for b, p, a in reservation.items:
            entry = self.state[(b.id, p)]
            entry[0] -= a
            entry[1] += actual


class SqlBudgets:
    """Budgets kept in the database (PostgreSQL without Redis): a conditional UPDATE per budget."""

    def __init__(self, store: LedgerStore) -> None:
        self.budgets = _BudgetCache(store)
        self.store = store

    async def reserve(self, key: KeyInfo, amount: float) -> Reservation | None:
        items = tuple((b, period_key(b.period), amount) for b in await self.budgets.of(key))
        if not items:
            return Reservation(())
        passed = await asyncio.to_thread(self.store.reserve_sql, items)
        return None if passed is None else Reservation(items, tuple(_alert(b) for b in passed))

    async def settle(self, reservation: Reservation, actual: float) -> None:
        if reservation.items:
            await asyncio.to_thread(self.store.settle_sql, reservation.items, actual)


def _alert(b: Budget) -> str:
    return f"{b.scope} {b.scope_id} is over its soft {b.period} budget of ${b.limit_usd:g}"


@dataclass(frozen=True)
class Refusal:
    status: int  # 429: a rate limit; 402: a hard budget
    retry_after_s: float | None = None


class Meter(Protocol):
    """Rate limits and budgets together: admit a request (reserving its largest cost) or refuse it; finish it
    (settling its real cost and counting its tokens)."""

    async def admit(self, key: KeyInfo, amount: float) -> Reservation | Refusal: ...
    async def finish(self, key: KeyInfo, reservation: Reservation, actual: float, tokens: int) -> None: ...
    async def drain(self) -> None: ...
    async def close(self) -> None: ...


def _window() -> tuple[int, float]:
    now = time.time()
    return int(now // 60), 60 - now % 60


class LocalMeter:
    """Rate limits in this process, in fixed one-minute windows, with budgets in this process or the database."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self.counts: dict[tuple[str, str, int], int] = defaultdict(int)

    def _count(self, kind: str, key_id: str, minute: int, n: int) -> int:
        if len(self.counts) > 100_000:  # forget windows that have turned
            self.counts = defaultdict(int, {k: v for k, v in self.counts.items() if k[2] == minute})
        self.counts[(kind, key_id, minute)] += n
        return self.counts[(kind, key_id, minute)]

    async def admit(self, key: KeyInfo, amount: float) -> Reservation | Refusal:
        minute, wait = _window()
        if key.tpm is not None and self._count("tpm", key.key_id, minute, 0) >= key.tpm:
            return Refusal(429, wait)
        if key.rpm is not None and self._count("rpm", key.key_id, minute, 1) > key.rpm:
            return Refusal(429, wait)
        reservation = await self.budgets.reserve(key, amount)
        if reservation is None:
            if key.rpm is not None:  # a refused request does not count against the rate (as with Redis)
                self._count("rpm", key.key_id, minute, -1)
            return Refusal(402)
        return reservation

    async def finish(self, key: KeyInfo, reservation: Reservation, actual: float, tokens: int) -> None:
        await self.budgets.settle(reservation, actual)
        if key.tpm is not None and tokens:
            self._count("tpm", key.key_id, _window()[0], tokens)

    async def drain(self) -> None:
        return None

    async def close(self) -> None:
        return None


# Lease credit from counters kept as Redis hashes {spent, reserved}. KEYS: the hashes; per key ARGV: limit, hard
# (1/0), want, ttl. A hard counter grants what is left of its limit, up to `want`; a soft one grants `want`.
# Returns per key the grant and the counter's spent + reserved after it (as strings: Lua numbers would be cut to
# integers), and 1 where the limit cut the grant short.
_LEASE = """
local out = {}
for i = 1, #KEYS do
  local j = 4 * (i - 1)
  local limit, hard, want = tonumber(ARGV[j + 1]), ARGV[j + 2] == '1', tonumber(ARGV[j + 3])
  local used = tonumber(redis.call('HGET', KEYS[i], 'spent') or '0')
    + tonumber(redis.call('HGET', KEYS[i], 'reserved') or '0')
  local grant, short = want, 0
  if hard and used + want > limit then grant, short = math.max(0, limit - used), 1 end
  if grant > 0 then redis.call('HINCRBYFLOAT', KEYS[i], 'reserved', grant) end
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[j + 4]))
  table.insert(out, string.format('%.17g', grant))
  table.insert(out, string.format('%.17g', used + grant))
  table.insert(out, short)
end
return out
"""

# Report what a replica used and give back what it leased and did not use. Per key ARGV: spent to add, reserved
# to release, ttl. Returns per key the counter's spent + reserved after it.
_SYNC = """
local out = {}
for i = 1, #KEYS do
  local spent, release = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  if spent ~= 0 then redis.call('HINCRBYFLOAT', KEYS[i], 'spent', spent) end
  if release ~= 0 then redis.call('HINCRBYFLOAT', KEYS[i], 'reserved', -release) end
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[3 * i]))
  local used = tonumber(redis.call('HGET', KEYS[i], 'spent') or '0')
    + tonumber(redis.call('HGET', KEYS[i], 'reserved') or '0')
  table.insert(out, string.format('%.17g', used))
end
return out
"""


class _Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class _Pipeline:
    """Lua script calls made in one turn of the event loop go to Redis together at its end, as one pipeline of
    EVALSHAs (each still runs atomically, in the order queued). Pipelines do not wait for one another."""

    def __init__(self, redis: Any, gather_s: float = 0.0) -> None:
        self.redis = redis
        self.gather_s = gather_s  # how long calls gather before they go (0: the end of this loop turn)
        self.pending: list[tuple[_Script, list[str], list[Any], asyncio.Future[Any]]] = []
        self.scheduled = False
        self.in_flight: set[asyncio.Task[None]] = set()

    def submit(self, script: _Script, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending.append((script, keys, args, future))
        if not self.scheduled:
            self.scheduled = True
            if self.gather_s:
                loop.call_later(self.gather_s, self._send_pending)
            else:
                loop.call_soon(self._send_pending)
        return future

    def _send_pending(self) -> None:
        self.scheduled = False
        batch, self.pending = self.pending, []
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def flush(self) -> None:
        """Wait until everything submitted so far has been answered."""
        while self.pending or self.in_flight:
            if self.in_flight:
                await asyncio.gather(*self.in_flight)
            else:
                await asyncio.sleep(0)

    async def _run(self, batch: list[tuple[_Script, list[str], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            results = await self._send([(script, keys, args) for script, keys, args, _ in batch])
        except Exception as exc:  # Redis is down: every caller in the batch hears why
            results = [exc] * len(batch)
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _send(self, calls: list[tuple[_Script, list[str], list[Any]]]) -> list[Any]:
        results: list[Any] = await self._execute(calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:  # a Redis that restarted or was flushed: load the scripts, run what did not run
            for script in {calls[i][0].sha: calls[i][0] for i in missing}.values():
                await self.redis.script_load(script.source)
            for i, r in zip(missing, await self._execute([calls[i] for i in missing]), strict=True):
                results[i] = r
        return results

    async def _execute(self, calls: list[tuple[_Script, list[str], list[Any]]]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results


@dataclass(eq=False)
class _Lease:
    """This replica's share of one counter in Redis: a budget's period, or a key's requests or tokens this minute.
    Credit is leased from Redis (atomically, never past a hard limit) and spent here without a round trip; what
    was used goes back to Redis, and unused credit with it, every sync."""

    name: str
    limit: float
    hard: bool
    ttl_s: int
    chunk: float  # leased beyond the demand, so that the next requests find credit here
    whole: bool = False  # requests per minute: lease whole units only
    reserves: bool = True  # False for tokens per minute, counted after the fact and never leased
    credit: float = 0.0  # leased, not yet used
    in_use: float = 0.0  # held by admitted requests still in flight
    spent: float = 0.0  # used here and not yet reported
    others: float = 0.0  # the counter's spent + reserved beyond this replica's outstanding share, as last seen
    demand: float = 0.0  # what admissions waiting for credit need
    leasing: asyncio.Future[None] | None = None
    exhausted: bool = False  # the last lease came back short: the hard limit is reached

    @property
    def outstanding(self) -> float:
        return self.credit + self.in_use + self.spent

    @property
    def used(self) -> float:
        return self.others + self.in_use + self.spent

    def saw(self, used: float) -> None:
        self.others = used - self.outstanding


class RedisMeter:
    """Budgets and rate limits shared by every gateway replica through Redis, without a round trip per request.

    Each replica leases credit from the shared counters (one Lua script checks the limit and reserves the grant
    atomically, so the replicas together never pass a hard limit), admits requests against it locally, and every
    `sync_s` reports what it used and gives back what it did not (a second script). Leases are sized to the
    waiting demand plus `chunk` of the limit, so a replica holds at most a sliver of a budget it is not using."""

    def __init__(self, store: LedgerStore, redis: Any, sync_s: float = 0.1, chunk: float = 0.02) -> None:
        self.budgets = _BudgetCache(store)
        self.store = store
        self.redis = redis
        self.sync_s = sync_s
        self.chunk = chunk
        self.pipeline = _Pipeline(redis)
        self.lease_script = _Script(_LEASE)
        self.sync_script = _Script(_SYNC)
        self.leases: dict[str, _Lease] = {}
        self.seeded: set[str] = set()
        self.syncer: asyncio.Task[None] | None = None

    def _lease(self, name: str, limit: float, hard: bool, ttl_s: int, whole: bool = False,
               reserves: bool = True) -> _Lease:  # fmt: skip
        lease = self.leases.get(name)
        chunk = math.floor(limit * self.chunk) if whole else limit * self.chunk
        if lease is None:
            lease = self.leases[name] = _Lease(name, limit, hard, ttl_s, chunk, whole, reserves)
        elif lease.limit != limit or lease.hard != hard:  # the budget or the key's limit changed
            lease.limit, lease.hard, lease.chunk, lease.exhausted = limit, hard, chunk, False
        return lease

    async def admit(self, key: KeyInfo, amount: float) -> Reservation | Refusal:
        if self.syncer is None or self.syncer.done():
            self.syncer = asyncio.create_task(self._sync_loop())
        items = tuple((b, period_key(b.period), amount) for b in await self.budgets.of(key))
        for b, p, _ in items:
            name = f"flopex:budget:{b.id}:{p}"
            if name not in self.seeded:  # the durable spend, once per replica; HSETNX keeps what others added
                spent = await asyncio.to_thread(self.store.spent, b, p)
                await self.redis.hsetnx(name, "spent", spent)
                self.seeded.add(name)
        minute, wait = _window()
        needs = [(self._lease(f"flopex:budget:{b.id}:{p}", b.limit_usd, b.hard, 3_000_000), a) for b, p, a in items]
        rate = None
        if key.rpm is not None:
            rate = self._lease(f"flopex:rpm:{key.key_id}:{minute}", key.rpm, True, 120, whole=True)
            needs.append((rate, 1.0))
        tokens = None
        if key.tpm is not None:
            tokens = self._lease(f"flopex:tpm:{key.key_id}:{minute}", key.tpm, True, 120, reserves=False)
        while True:
            if tokens is not None and tokens.used >= tokens.limit:
                return Refusal(429, wait)
            short = [(lease, a) for lease, a in needs if lease.credit < a - 1e-12]
            if not short:  # all of it here, with no await between the check and the taking
                for lease, a in needs:
                    lease.credit -= a
                    if lease is rate:
                        lease.spent += a  # a request counts once admitted, whatever becomes of it
                    else:
                        lease.in_use += a
                alerts = tuple(_alert(b) for (b, _, _), (lease, _) in zip(items, needs, strict=False)
                               if not b.hard and lease.used > b.limit_usd)  # fmt: skip
                return Reservation(items, alerts)
            refused = [lease for lease, _ in short if lease.exhausted]
            if refused:
                return Refusal(429, wait) if rate in refused else Refusal(402)
            for lease, a in short:
                lease.demand += a
            try:
                await self._lease_more([lease for lease, _ in short])
            finally:
                for lease, a in short:
                    lease.demand -= a

    async def _lease_more(self, leases: list[_Lease]) -> None:
        """Lease what the waiting admissions need, joining a lease already on its way where there is one."""
        joining = [lease.leasing for lease in leases if lease.leasing is not None]
        mine = [lease for lease in leases if lease.leasing is None]
        if mine:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            for lease in mine:
                lease.leasing = done
            try:
                await asyncio.sleep(0)  # let the admissions arriving in this turn add their demand
                wants = []
                for lease in mine:
                    want = max(lease.demand - lease.credit, 0.0) + lease.chunk
                    wants.append(float(math.ceil(want)) if lease.whole else want)
                args: list[Any] = []
                for lease, want in zip(mine, wants, strict=True):
                    args += [lease.limit, "1" if lease.hard else "0", want, lease.ttl_s]
                reply = await self.pipeline.submit(self.lease_script, [lease.name for lease in mine], args)
                for i, lease in enumerate(mine):
                    lease.credit += float(reply[3 * i])
                    lease.saw(float(reply[3 * i + 1]))
                    lease.exhausted = int(reply[3 * i + 2]) == 1
            finally:
                for lease in mine:
                    lease.leasing = None
                done.set_result(None)
        if joining:
            await asyncio.gather(*joining)

    async def finish(self, key: KeyInfo, reservation: Reservation, actual: float, tokens: int) -> None:
        """Settle here, with no round trip: the next sync reports the spend and returns what was not spent."""
        for b, p, amount in reservation.items:
            lease = self.leases.get(f"flopex:budget:{b.id}:{p}")
            if lease is None:
                continue
            lease.in_use -= amount
            lease.spent += actual
            lease.credit += amount - actual
        if key.tpm is not None and tokens:
            lease = self._lease(f"flopex:tpm:{key.key_id}:{_window()[0]}", key.tpm, True, 120, reserves=False)
            lease.spent += tokens

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_s)
            try:
                await self.drain()
            except Exception as exc:  # Redis is away: what was used is still counted here; try again
                log.warning("budgets and rate limits could not reach Redis: %s", exc)

    async def drain(self) -> None:
        """Report what this replica used and give back unused credit; then forget counters with nothing here."""
        minute = _window()[0]
        leases = [
            lease for lease in self.leases.values()
            if lease.spent or lease.credit or (not lease.reserves and lease.name.endswith(f":{minute}"))
        ]  # fmt: skip
        if leases:
            sent = [(lease.spent, lease.credit if lease.leasing is None else 0.0) for lease in leases]
            args: list[Any] = []
            for lease, (spent, credit) in zip(leases, sent, strict=True):
                lease.spent -= spent
                lease.credit -= credit
                args += [spent, (spent + credit) if lease.reserves else 0.0, lease.ttl_s]
            try:
                reply = await self.pipeline.submit(self.sync_script, [lease.name for lease in leases], args)
            except Exception:
                # Whether Redis applied it is unknown. Report the spend again: applied twice, it moves the same
                # amount from reserved to spent once more, leaving spent + reserved as it was. Never reuse the
                # credit: if it was not given back, it stays reserved, which only makes budgets stricter.
                for lease, (spent, _) in zip(leases, sent, strict=True):
                    lease.spent += spent
                raise
            for lease, used in zip(leases, reply, strict=True):
                lease.saw(float(used))
                lease.exhausted = False  # what was given back may let a refused request through now
        for name, lease in list(self.leases.items()):
            idle = not lease.outstanding and not lease.demand and lease.leasing is None
            if idle and (lease.reserves or not lease.name.endswith(f":{minute}")):
                del self.leases[name]

    async def close(self) -> None:
        if self.syncer is not None:
            self.syncer.cancel()
        try:
            await self.drain()
        except Exception as exc:  # what stays leased only makes budgets stricter; `flopex budgets reconcile` frees it
            log.warning("could not give leases back to Redis at stop: %s", exc)


class UsageWriter:
    """Each record is appended to this process's journal before the answer leaves, then written to the
    database in batches off the request path; a journal segment is deleted once all of its records are written
    (`_journal.py`), so the journal holds what is not yet written. At start, the segments of processes that died
    are replayed (the request id makes replays idempotent); a clean stop writes what is left and removes its
    journal."""

    def __init__(
        self, store: LedgerStore, journal_dir: Path, batch: int = 500, interval_s: float = 0.05,
        segment_bytes: int = 1 << 20,
    ) -> None:  # fmt: skip
        self.store = store
        self.dir = journal_dir
        self.journal = Journal(journal_dir, segment_bytes)  # opened by the first record or `start`
        self.queue: asyncio.Queue[tuple[UsageRecord, int]] = asyncio.Queue(maxsize=100_000)
        self.batch = batch
        self.interval = interval_s
        self.task: asyncio.Task[None] | None = None
        self.writing: asyncio.Future[int] | None = None  # the batch being written, if one is
        self.behind = False  # the queue overflowed: some records are only in the journal
        self.written = 0

    def replay(self) -> int:
        """Write the journals of processes that died (not of live ones, which hold their locks), then delete them."""
        total = 0
        for paths, delete in orphan_segments(self.dir, self.journal.owner):
            total += replay_segments(paths, self._write_rows)
            delete()
        return total

    def _write_rows(self, rows: list[dict[str, Any]]) -> int:
        return self.store.write(UsageRecord(**row) for row in rows)

    def record(self, r: UsageRecord) -> None:
        segment = self.journal.append(r.row())
        try:
            self.queue.put_nowait((r, segment))
        except asyncio.QueueFull:
            self.behind = True

    async def run(self) -> None:
        while True:
            first = await self.queue.get()
            batch = [first]
            await asyncio.sleep(self.interval)
            while len(batch) < self.batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[tuple[UsageRecord, int]]) -> None:
        delay = 0.5
        while True:
            # shielded: a stop that cancels this task waits for the write under way (`self.writing`)
            self.writing = asyncio.ensure_future(asyncio.to_thread(self.store.write, [r for r, _ in batch]))
            try:
                self.written += await asyncio.shield(self.writing)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is slow or down: the journal holds the records; try again
                self.writing = None
                log.warning("usage records could not be written (retrying in %.1f s): %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self.writing = None
        self.journal.written(segment for _, segment in batch)
        if self.behind:
            await self._catch_up()

    async def _catch_up(self) -> None:
        """The queue dropped records that only the journal holds: write the sealed segments from their files."""
        self.behind = False
        sealed = self.journal.seal()
        try:
            await asyncio.to_thread(replay_segments, sealed, self._write_rows)
        except Exception as exc:  # try again after the next batch
            log.warning("the journal could not be written to the database: %s", exc)
            self.behind = True
            return
        self.journal.forget(sealed)

    def start(self) -> None:
        if self.journal.file is None:
            self.journal.open()
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        """Write what is left (from the journal, which holds the queue and any batch cut short) and remove the
        journal; if the database cannot take it, keep the journal for the next start to replay."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.writing is not None:  # a batch on its way: let it land first
            with contextlib.suppress(Exception):
                await self.writing
        left = self.journal.seal()
        try:
            await asyncio.to_thread(replay_segments, left, self._write_rows)
        except Exception as exc:
            log.warning("usage records left in the journal for the next start (%s): %s", self.dir, exc)
            self.journal.close(remove=False)
            return
        self.journal.close(remove=True)


def reconcile_redis(url: str) -> int:
    """Delete the budget counters kept in Redis; the next request re-seeds each from the usage records."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        names = list(client.scan_iter(match="flopex:budget:*", count=1000))
        return int(client.delete(*names)) if names else 0
    finally:
        client.close()
