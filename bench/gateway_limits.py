"""Attack a real `flopex serve` process the ways the 2026-11-29 user trial did, and measure its memory (RSS, from
/proc) and what the attackers got:

- headers: 40 connections each sending 32 MB of request headers that never end;
- chunked: one 300 MB chunked upload;
- slow: 350 connections trickling a request, one byte a second, for 30 s.

    python bench/gateway_limits.py [headers|chunked|slow ...] [--config GATEWAY.yaml]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

from flopex.gateway import free_port

MODEL = "llama-3.1-8b"
MB = 1_000_000


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) in MB, from /proc/PID/status."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1000, int(fields["VmHWM"].split()[0]) / 1000


def serve(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flopex", "serve", "--config", str(config), "--port", str(port)],
                                stdout=out, stderr=out)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the gateway did not start: {log.read_text()}")


async def _read_reply(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(4096), 1.0)
    except (TimeoutError, ConnectionError):
        return b""


async def header_flood(port: int, total: int) -> tuple[int, bytes]:
    """Send `total` bytes of headers that never end; (bytes the gateway took, what it answered)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    line = b"x-filler: " + b"a" * 8182 + b"\r\n"
    sent = 0
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        while sent < total:
            writer.write(line)
            await writer.drain()
            sent += len(line)
    except ConnectionError:
        pass
    reply = await _read_reply(reader)
    writer.close()
    return sent, reply


async def chunked_upload(port: int, total: int) -> tuple[int, bytes]:
    """A chunked upload of `total` bytes, stopping at the gateway's answer; (bytes sent, the answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"a" * 65536
    sent = 0
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip
    read = asyncio.ensure_future(reader.read(4096))
    try:
        while sent < total and not read.done():
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += len(chunk)
        if not read.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    try:
        reply = await asyncio.wait_for(read, 30)
    except (TimeoutError, ConnectionError):
        reply = b""
    writer.close()
    return sent, reply


async def trickle(port: int, seconds: float) -> float:
    """A request sent a byte a second: how long the gateway kept the connection open (up to `seconds`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n" + b"{" * 1000
    start = time.monotonic()
    for byte in request:
        if time.monotonic() - start > seconds or reader.at_eof():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            break
        try:
            await asyncio.wait_for(reader.read(4096), 1.0)
            break  # an answer (or the end): the gateway let go
        except TimeoutError:
            pass
        except ConnectionError:
            break
    held = time.monotonic() - start
    writer.close()
    return held


async def _watch(pid: int, work: Awaitable[list[object]]) -> tuple[list[object], float]:
    task = asyncio.ensure_future(work)
    peak = 0.0
    while not task.done():
        peak = max(peak, rss_mb(pid)[0])
        await asyncio.sleep(0.05)
    return task.result(), peak


def _attacks(port: int) -> dict[str, Callable[[], Awaitable[list[object]]]]:
    async def headers() -> list[object]:
        return list(await asyncio.gather(*(header_flood(port, 32 * MB) for _ in range(40))))

    async def chunked() -> list[object]:
        return [await chunked_upload(port, 300 * MB)]

    async def slow() -> list[object]:
        return list(await asyncio.gather(*(trickle(port, 30.0) for _ in range(350))))

    return {"headers": headers, "chunked": chunked, "slow": slow}


def _summary(name: str, results: list[object]) -> str:
    if name == "slow":
        held = sorted(float(r) for r in results)  # type: ignore[arg-type]
        return f"connections held: median {held[len(held) // 2]:.1f} s, max {held[-1]:.1f} s"
    sent = [r[0] for r in results]  # type: ignore[index]
    replies = {bytes(r[1]).split(b"\r\n", 1)[0].decode(errors="replace") or "(closed)" for r in results}  # type: ignore[index]
    return f"most a client wrote (socket buffers included): {max(sent) / MB:.2f} MB; answers: {sorted(replies)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("attacks", nargs="*", default=["headers", "chunked", "slow"])
    parser.add_argument("--config", type=Path, help="gateway YAML/JSON (default: one backend, no tenants)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flopex-limits-"))
    config = args.config
    if config is None:
        config = work / "gateway.json"
        backend = {"id": "b", "base_url": f"http://127.0.0.1:{free_port()}/v1", "usd_per_hour": 1.0,
                   "tokens_per_s": 1000.0}  # fmt: skip
        config.write_text(json.dumps({"models": {MODEL: {"backends": [backend]}}}))
    for name in args.attacks:
        port = free_port()
        proc = serve(config, port, work / f"{name}.log")
        try:
            time.sleep(1.0)
            before = rss_mb(proc.pid)[0]
            results, peak = asyncio.run(_watch(proc.pid, _attacks(port)[name]()))
            after = rss_mb(proc.pid)[0]
            print(f"{name}: RSS {before:.0f} MB before, peak {peak:.0f} MB during, {after:.0f} MB after; "
                  f"{_summary(name, results)}")  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
