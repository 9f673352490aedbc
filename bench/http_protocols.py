"""What each way of bounding request heads costs per request: the server's CPU time per request (from /proc, so
that a slow load generator does not skew it) for a small JSON POST to a Starlette endpoint that reads the body,
on uvicorn with plain httptools, with flopex's limits (`LimitedHttpToolsProtocol` and `BodyLimit`), and with h11
(which has a head limit, `h11_max_incomplete_event_size`). Server pinned to CPU 0, load on CPU 1.

    python bench/http_protocols.py
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import aiohttp

from flopex.gateway import free_port

SERVER = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from flopex.gateway import BodyLimit, GatewayConfig, server_settings

async def ok(request):
    await request.body()
    return JSONResponse({"status": "ok"})

mode, port = sys.argv[1], int(sys.argv[2])
middleware = [Middleware(BodyLimit, max_body_bytes=8_000_000)] if mode == "flopex limits" else []
app = Starlette(routes=[Route("/x", ok, methods=["POST"])], middleware=middleware)
settings = server_settings(GatewayConfig().limits) if mode == "flopex limits" else {"http": mode}
uvicorn.run(app, port=port, loop="uvloop", log_level="warning", access_log=False, **settings)
"""

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 500}]})


async def load(port: int, seconds: float, connections: int = 16) -> int:
    done = 0
    end = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < end:
                async with session.post(f"http://127.0.0.1:{port}/x", data=BODY) as r:
                    await r.read()
                done += 1

        await asyncio.gather(*(client() for _ in range(connections)))
    return done


def cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    os.sched_setaffinity(0, {1})
    for mode in ("httptools", "flopex limits", "h11"):
        port = free_port()
        server = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", SERVER, mode, str(port)])
        try:
            time.sleep(3)
            asyncio.run(load(port, 1.0))  # warm up
            runs = []
            for _ in range(3):
                before = cpu_s(server.pid)
                requests = asyncio.run(load(port, 4.0))
                runs.append((cpu_s(server.pid) - before) / requests * 1e6)
            print(f"{mode}: server CPU per request {min(runs):.0f} us (runs: {', '.join(f'{r:.0f}' for r in runs)})")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
