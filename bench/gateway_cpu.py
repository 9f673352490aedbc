"""The gateway's CPU per request against the bare pass-through proxy, and against the gateway of an earlier
revision: the steadiest measure of the gateway's own cost on a busy machine.

Each proxy runs pinned to CPU 0 with one worker (uvloop, httptools); an instant backend (a canned chat completion
from a bare asyncio server) and this load generator share CPU 1. Per round and proxy: 200 requests to warm up,
then REQUESTS sequential non-streamed requests, the proxy's CPU time over them from /proc/PID/task/*/schedstat.
Rounds alternate the order of the proxies; each figure is the median over the rounds with its range.

    python bench/gateway_cpu.py [--before REV] [--rounds 5] [--requests 2000]

`--before REV` checks the revision out into a temporary git worktree and runs its `flopex serve` beside the
current one (the same virtual environment serves both).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

from flopex.gateway import free_port

sys.path.insert(0, str(Path(__file__).parent))
from gateway_workers import BODY, INSTANT, _cpu_seconds, _wait  # noqa: E402

HERE = Path(__file__).resolve().parent.parent


async def _sequential(url: str, n: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            async with session.post(url, data=BODY, headers={"content-type": "application/json"}) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url} answered {r.status}")


def _pinned(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", "0", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", help="a git revision whose gateway to measure beside this one")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flopex-bench-cpu-"))
    backend_port = free_port()
    procs = [subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", INSTANT, str(backend_port)])]
    config = work / "gateway.yaml"
    config.write_text(
        f"models:\n  bench:\n    backends:\n      - id: instant\n        base_url: http://127.0.0.1:{backend_port}/v1\n"
        "        usd_per_hour: 2.5\n        tokens_per_s: 3000\n        power_w: 900\n        grid_gco2e_per_kwh: 300\n"
        "        max_concurrency: 100000\nlimits: {max_in_flight: 100000}\n"
    )
    sources = {"flopex": HERE / "src"}
    if args.before:
        tree = work / "before"
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(tree), args.before], check=True,
                       capture_output=True)  # fmt: skip
        sources[f"flopex at {args.before}"] = tree / "src"
    targets: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for name, src in sources.items():
            port = free_port()
            env = {**os.environ, "PYTHONPATH": str(src)}
            serve = [sys.executable, "-m", "flopex", "serve", "--config", str(config), "--port", str(port)]
            targets[name] = (_pinned(serve, env), f"http://127.0.0.1:{port}")
            _wait(f"http://127.0.0.1:{port}/healthz")
        port = free_port()
        bare = [sys.executable, str(HERE / "bench" / "bare_proxy.py"), "--port", str(port), "--upstream",
                f"fast=http://127.0.0.1:{backend_port}"]  # fmt: skip
        targets["bare proxy"] = (_pinned(bare), f"http://127.0.0.1:{port}/fast")
        _wait(f"http://127.0.0.1:{port}/fast/v1/models")
        cpu: dict[str, list[float]] = {name: [] for name in targets}
        for r in range(args.rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for name in order:
                proc, base = targets[name]
                url = f"{base}/v1/chat/completions"
                asyncio.run(_sequential(url, 200))
                before = _cpu_seconds([proc.pid])
                asyncio.run(_sequential(url, args.requests))
                cpu[name].append(1e3 * (_cpu_seconds([proc.pid]) - before) / args.requests)
            print(f"round {r + 1}: " + ", ".join(f"{n} {cpu[n][-1]:.3f} ms" for n in targets), flush=True)
    finally:
        for proc, _ in targets.values():
            proc.terminate()
        for proc in procs:
            proc.terminate()
        if args.before:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(work / "before")],
                           capture_output=True)  # fmt: skip
    bare_cpu = statistics.median(cpu["bare proxy"])
    print(f"\n{args.rounds} rounds of {args.requests:,} sequential requests; median (range)\n")
    print("| | CPU ms/request | vs bare proxy |")
    print("|---|---:|---:|")
    for name, values in cpu.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} ({min(values):.3f}-{max(values):.3f}) | {med / bare_cpu:.2f}x |")


if __name__ == "__main__":
    main()
