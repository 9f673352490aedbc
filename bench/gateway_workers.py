"""Throughput of `flopex serve --workers N` against N, on this machine.

One instant backend (a canned chat completion from a bare asyncio server, a few microseconds a request) and a
closed-loop load generator (this process: aiohttp on uvloop, 64 connections) share the machine with the gateway.
For each N the gateway is started, warmed for 1 s and loaded for STEP_S seconds; the rounds alternate N so that
drift hits every N alike, and each figure is the median over the rounds with its range. Beside the rate: the
CPU the gateway's processes used per request, and the share of the machine's CPU left over (idle), which says
whether the gateway or the machine was the limit.

    python bench/gateway_workers.py [--workers 1 2] [--rounds 3] [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
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

from flopex.gateway import free_port

sys.path.insert(0, str(Path(__file__).parent))
from gateway_vs_litellm import _wait  # noqa: E402

MODEL = "bench"
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}).encode()
CONNECTIONS = 64

INSTANT = r"""
import asyncio, json, sys
ANSWER = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "canned"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 16, "total_tokens": 24}}).encode()
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
class Http(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, data):
        self.buf += data
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep: return
            n = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:": n = int(line[15:])
            if len(rest) < n: return
            self.buf = rest[n:]
            self.t.write(OK)
async def main():
    server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time of these processes' threads, from schedstat (nanoseconds)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                total += int(task.read_text().split()[0])
            except OSError:
                continue
    return total / 1e9


def _idle_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[3]) + int(fields[4])) / os.sysconf("SC_CLK_TCK")


def _family(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's supervisor and its workers)."""
    found, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent:
                found.append(int(stat.parent.name))
                frontier.append(int(stat.parent.name))
    return found


async def _load(url: str, seconds: float) -> tuple[int, int]:
    """(answers, errors) of CONNECTIONS closed loops over `seconds`."""
    done = errors = 0
    stop = time.perf_counter() + seconds
    headers = {"content-type": "application/json"}

    async def loop(session: aiohttp.ClientSession) -> None:
        nonlocal done, errors
        while time.perf_counter() < stop:
            async with session.post(url, data=BODY, headers=headers) as r:
                await r.read()
                if r.status == 200:
                    done += 1
                else:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(loop(session) for _ in range(CONNECTIONS)))
    return done, errors


def _round(flopex: str, config: Path, workers: int, seconds: float) -> tuple[float, float, float, int]:
    """(answers/s, gateway CPU ms per answer, idle share of the machine, errors) for one gateway of `workers`."""
    port = free_port()
    proc = subprocess.Popen([flopex, "serve", "--config", str(config), "--port", str(port), "--workers", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        asyncio.run(_load(url, 1.0))
        pids = _family(proc.pid)
        cpu0, idle0, t0 = _cpu_seconds(pids), _idle_seconds(), time.perf_counter()
        done, errors = asyncio.run(_load(url, seconds))
        elapsed = time.perf_counter() - t0
        cpu, idle = _cpu_seconds(pids) - cpu0, _idle_seconds() - idle0
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return done / elapsed, 1e3 * cpu / max(done, 1), idle / (elapsed * (os.cpu_count() or 1)), errors


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    flopex = shutil.which("flopex") or str(Path(sys.executable).parent / "flopex")
    backend_port = free_port()
    backend = subprocess.Popen([sys.executable, "-c", INSTANT, str(backend_port)])
    config = Path(tempfile.mkdtemp()) / "gateway.yaml"
    config.write_text(
        f"models:\n  {MODEL}:\n    backends:\n      - id: instant\n        base_url: http://127.0.0.1:{backend_port}/v1\n"
        "        usd_per_hour: 2.5\n        tokens_per_s: 3000\n        power_w: 900\n        grid_gco2e_per_kwh: 300\n"
        "        max_concurrency: 100000\nlimits: {max_in_flight: 100000}\n"
    )
    results: dict[int, list[tuple[float, float, float, int]]] = {n: [] for n in args.workers}
    try:
        time.sleep(0.5)
        for r in range(args.rounds):
            order = args.workers if r % 2 == 0 else list(reversed(args.workers))
            for n in order:
                results[n].append(_round(flopex, config, n, args.seconds))
                rate, cpu, idle, errors = results[n][-1]
                print(f"round {r + 1}, {n} worker(s): {rate:,.0f} answers/s, {cpu:.3f} ms CPU an answer, "
                      f"{idle:.0%} of the machine idle, {errors} errors", flush=True)  # fmt: skip
    finally:
        backend.terminate()
    cores = os.cpu_count() or 1
    print(f"\n{cores} cores; the load generator and the backend share them with the gateway; "
          f"{args.rounds} rounds of {args.seconds:g} s, median (range)\n")  # fmt: skip
    print("| workers | answers/s | vs 1 worker | gateway CPU ms/answer | machine idle | errors |")
    print("|---:|---:|---:|---:|---:|---:|")
    base = statistics.median(x[0] for x in results[min(args.workers)])
    for n in args.workers:
        rates = [x[0] for x in results[n]]
        med = statistics.median(rates)
        print(f"| {n} | {med:,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) | {med / base:.2f}x | "
              f"{statistics.median(x[1] for x in results[n]):.3f} | {statistics.median(x[2] for x in results[n]):.0%} "
              f"| {sum(x[3] for x in results[n])} |")  # fmt: skip


if __name__ == "__main__":
    main()
