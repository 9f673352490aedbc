"""The gateway's throughput with tenants on (keys, budgets, rate limits, the usage ledger) against the bare
gateway, in one run on this machine.

Each gateway runs as `flopex serve`, pinned to CPU 0 with one worker, in front of the same emulated backend (no
delays, 16-token answers); the backend and this closed-loop load generator (64 connections) run on CPU 1.
Variants: bare; tenants on SQLite (budgets and rate limits in the process); tenants on SQLite, then PostgreSQL,
with Redis (budgets and rate limits leased from Redis); tenants on PostgreSQL alone (budgets by row lock). Every
metered request is authenticated, rate-limited (a limit it never reaches), reserved against a hard daily budget
(one it never reaches), settled, journaled and written to the ledger. PostgreSQL and Redis are this machine's
own services, sharing its two CPUs with everything else.

    python bench/gateway_ledger.py [--postgres URL] [--redis URL] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from gateway_vs_litellm import _wait
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from flopex.gateway import free_port
from flopex.ledger import LedgerStore
from flopex.ledger._schema import metadata

MODEL = "llama-3.1-8b"
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}).encode()


async def _load(url: str, token: str | None, seconds: float, connections: int = 64) -> dict[str, float]:
    """Closed loop: `connections` clients, each sending its next request when the last is answered."""
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    latencies: list[float] = []
    errors = 0
    kinds: collections.Counter[str] = collections.Counter()
    stop_at = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            async with session.post(url, data=BODY, headers=headers) as r:
                body = await r.read()
                if r.status != 200:
                    errors += 1
                    kinds[f"{r.status} {json.loads(body).get('error', {}).get('code')}"] += 1
                    continue
            latencies.append(time.perf_counter() - start)

    begin = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        await asyncio.gather(*(client(session) for _ in range(connections)))
    elapsed = time.perf_counter() - begin
    q = statistics.quantiles(latencies, n=100)
    if kinds:
        print(f"errors at {url}: {dict(kinds)}", file=sys.stderr)
    return {"rps": len(latencies) / elapsed, "p50": q[49], "p99": q[98], "errors": errors, "n": len(latencies)}


def _cpu(pids: list[int]) -> dict[int, float]:
    """CPU-seconds (user + system) each process has used so far."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _services() -> list[int]:
    """This machine's PostgreSQL and Redis processes (they share its CPUs with the gateway)."""
    found = subprocess.run(["pgrep", "-f", "postgres|redis-server"], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def _measured(url: str, token: str | None, seconds: float, connections: int, gateway_pid: int) -> dict[str, float]:
    asyncio.run(_load(url, token, 2.0, connections))  # warm up
    before_gw, before_services = _cpu([gateway_pid]), _cpu(_services())
    result = asyncio.run(_load(url, token, seconds, connections))
    after_gw, after_services = _cpu([gateway_pid]), _cpu(_services())
    result["gateway_cpu_per_1k"] = (after_gw[gateway_pid] - before_gw[gateway_pid]) / result["n"] * 1000
    result["services_cpu_per_1k"] = (
        sum(t - before_services.get(pid, 0.0) for pid, t in after_services.items()) / result["n"] * 1000
    )
    return result


def _fresh_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as c:
        metadata.drop_all(c)
        c.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


def _fresh_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    names = list(client.scan_iter(match="flopex:*"))
    if names:
        client.delete(*names)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("FLOPEX_TEST_POSTGRES_URL"), help="PostgreSQL URL")
    parser.add_argument("--redis", default=os.environ.get("FLOPEX_TEST_REDIS_URL"), help="Redis URL")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64, help="concurrent clients of the closed loop")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    flopex = shutil.which("flopex") or str(Path(sys.executable).parent / "flopex")
    work = Path(tempfile.mkdtemp(prefix="flopex-bench-ledger-"))
    bport = free_port()
    backend = subprocess.Popen(
        ["taskset", "-c", "1", flopex, "emulate", "--model", MODEL, "--accelerator", "H100-SXM", "--port",
         str(bport), "--time-scale", "0", "--max-queue", "100000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    variants: list[tuple[str, str | None, str | None]] = [("bare", None, None)]
    variants.append(("tenants, SQLite", f"sqlite:///{work / 'ledger.sqlite3'}", None))
    if args.redis:
        variants.append(("tenants, SQLite + Redis", f"sqlite:///{work / 'ledger-redis.sqlite3'}", args.redis))
    if args.postgres and args.redis:
        variants.append(("tenants, PostgreSQL + Redis", args.postgres, args.redis))
    if args.postgres:
        variants.append(("tenants, PostgreSQL", args.postgres, None))
    results: dict[str, dict[str, float]] = {}
    try:
        _wait(f"http://127.0.0.1:{bport}/v1/models")
        for name, db, redis_url in variants:
            token = None
            config: dict[str, object] = {
                "models": {MODEL: {"backends": [{"id": "h100", "base_url": f"http://127.0.0.1:{bport}/v1",
                                                 "usd_per_hour": 2.5, "tokens_per_s": 3000,
                                                 "max_concurrency": 100000}]}},
                "limits": {"max_in_flight": 100000},
            }  # fmt: skip
            if db is not None:
                if db.startswith("postgresql"):
                    _fresh_postgres(db)
                if redis_url:
                    _fresh_redis(redis_url)
                store = LedgerStore(db)
                store.migrate()
                key_id, token = store.create_key("bench", rpm=10_000_000, tpm=1_000_000_000)
                store.set_budget("tenant", "bench", "day", 1e6, True)
                store.set_budget("key", key_id, "month", 1e6, True)
                store.engine.dispose()
                tenants: dict[str, object] = {"database_url": db, "journal_dir": str(work / f"journal-{len(results)}")}
                if redis_url:
                    tenants["redis_url"] = redis_url
                config["tenants"] = tenants
            path = work / f"gateway-{len(results)}.json"
            path.write_text(json.dumps(config))
            gport = free_port()
            gateway = subprocess.Popen(
                ["taskset", "-c", "0", flopex, "serve", "--config", str(path), "--port", str(gport)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                _wait(f"http://127.0.0.1:{gport}/healthz")
                url = f"http://127.0.0.1:{gport}/v1/chat/completions"
                results[name] = _measured(url, token, args.seconds, args.connections, gateway.pid)
            finally:
                gateway.terminate()
                gateway.wait(timeout=30)
            if db is not None:
                store = LedgerStore(db)
                results[name]["records"] = len(store.request_ids())
                store.engine.dispose()
    finally:
        backend.terminate()
        backend.wait(timeout=10)
    console = Console(width=160)
    table = Table(title="Gateway throughput with tenants on, against the bare gateway (gateway on CPU 0)")
    columns = ("", "req/s", "vs bare", "p50 ms", "p99 ms", "errors", "gateway CPU-s/1k", "PostgreSQL+Redis CPU-s/1k",
               "ledger records")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right" if column else "left")
    bare = results["bare"]
    for name, r in results.items():
        table.add_row(
            name, f"{r['rps']:,.0f}", f"{r['rps'] / bare['rps'] - 1:+.1%}" if name != "bare" else "-",
            f"{r['p50'] * 1e3:.2f}", f"{r['p99'] * 1e3:.2f}", f"{r['errors']:.0f}",
            f"{r['gateway_cpu_per_1k']:.3f}", f"{r['services_cpu_per_1k']:.3f}",
            f"{r['records']:,.0f}" if "records" in r else "-",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"Closed loop, {args.connections} connections, {args.seconds:g} s after a 2 s warm-up. CPU-s/1k: CPU-seconds "
        "per 1,000 answered requests, of the gateway process and of this machine's PostgreSQL and Redis processes "
        "(which take their CPU from the same two cores as the gateway, the backend and the load). Ledger records: "
        "every request of the run, warm-up included, written by the time the gateway stopped."
    )
    if len(variants) < 5:
        console.print("PostgreSQL and Redis variants: pass --postgres and --redis (or set FLOPEX_TEST_*_URL).")


if __name__ == "__main__":
    main()
