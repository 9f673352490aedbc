"""flopex's gateway against LiteLLM's proxy, in front of the same backend, on this machine.

The gateway under test runs pinned to CPU 0 with one worker; the backend (flopex's emulator with no delays,
a canned 16-token answer) and this load generator run on CPU 1. LiteLLM's proxy is installed into its own
virtual environment (`pip install 'litellm[proxy]'`, from the package index this machine can reach) and run
the same way with callbacks off and no retries. Measured for each: added latency over calling the backend
directly (sequential, p50 and p99), the highest open-loop request rate whose p99 stays under twice the direct
p99 (non-streaming), added time to first token when streaming, and CPU-seconds per 1,000 requests.

    python bench/gateway_vs_litellm.py [--skip-litellm]
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
import urllib.request
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.table import Table

from flopex.gateway import free_port

# a neutral model name: LiteLLM fetches a Hugging Face tokenizer for llama-named models when streaming, which
# these offline machines cannot reach; both gateways and the emulator accept any name
MODEL = "bench"
EMULATED = "llama-3.1-8b"
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}).encode()
STREAM = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16, "stream": True}
).encode()
SLOW_BODY = json.dumps({"model": "bench-50ms", "messages": [{"role": "user", "content": "hello"}]}).encode()
LITELLM_VENV = Path(tempfile.gettempdir()) / "flopex-bench-litellm"


CANNED = r"""
import asyncio, json, sys
from aiohttp import web
ANSWER = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "bench-50ms",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "canned"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 16, "total_tokens": 24}}).encode()
async def chat(request):
    await request.read()
    await asyncio.sleep(0.05)
    return web.Response(body=ANSWER, content_type="application/json")
async def models(request):
    return web.json_response({"object": "list", "data": [{"id": "bench-50ms", "object": "model"}]})
app = web.Application()
app.add_routes([web.post("/v1/chat/completions", chat), web.get("/v1/models", models)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _wait(url: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _sequential(session: aiohttp.ClientSession, url: str, n: int, body: bytes) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
            await r.read()
            assert r.status == 200, r.status
        out.append(time.perf_counter() - start)
    return out


async def _ttft(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.post(url, data=STREAM, headers={"content-type": "application/json"}) as r:
            async for line in r.content:
                if line.startswith(b"data: {"):
                    out.append(time.perf_counter() - start)
                    break
            await r.read()
    return out


async def _open_loop(
    session: aiohttp.ClientSession, url: str, rate: float, seconds: float
) -> tuple[list[float], int, float]:
    """Requests sent at `rate`/s regardless of answers: (latencies, errors, achieved rate)."""
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        start = time.perf_counter()
        try:
            async with session.post(url, data=SLOW_BODY, headers={"content-type": "application/json"}) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
                    return
        except (aiohttp.ClientError, TimeoutError):
            errors += 1
            return
        latencies.append(time.perf_counter() - start)

    tasks = []
    begin = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies, errors, len(latencies) / (time.perf_counter() - begin)


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def _measure(base: str, slow_base: str, pid: int | None, direct_p99: float) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=1024)
    timeout = aiohttp.ClientTimeout(total=10)  # an overloaded gateway shows as errors, not as a stalled run
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        url = f"{base}/v1/chat/completions"
        await _sequential(session, url, 50, BODY)  # warm up
        seq = await _sequential(session, url, 400, BODY)
        ttft = await _ttft(session, url, 150)
        slow_url = f"{slow_base}/v1/chat/completions"
        slow = await _sequential(session, slow_url, 40, SLOW_BODY)
        best = 0.0
        cpu_per_1k = float("nan")
        for rate in (25, 50, 100, 150, 200, 300, 400, 600, 800, 1000, 1200, 1600, 2000, 2400, 3200):
            before = _cpu_seconds(pid) if pid else 0.0
            lat, errors, achieved = await _open_loop(session, slow_url, rate, 3.0)
            after = _cpu_seconds(pid) if pid else 0.0
            if not lat or errors or achieved < 0.95 * rate or _pct(lat, 99) > direct_p99:
                break
            best = rate
            cpu_per_1k = (after - before) / len(lat) * 1000
    return {
        "p50": statistics.median(seq),
        "p99": _pct(seq, 99),
        "ttft": statistics.median(ttft),
        "rate": best,
        "cpu_per_1k": cpu_per_1k,
        "slow_p99": _pct(slow, 99),
    }


def _litellm(backend: str, slow: str, port: int) -> subprocess.Popen[bytes] | str:
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        done = subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], capture_output=True
        )
        if done.returncode:
            return f"could not install litellm[proxy]: {done.stderr.decode()[-300:]}"
    config = LITELLM_VENV / "config.yaml"
    config.write_text(
        f"model_list:\n  - model_name: {MODEL}\n    litellm_params:\n      model: openai/{MODEL}\n"
        f"      api_base: {backend}/v1\n      api_key: unused\n"
        f"  - model_name: bench-50ms\n    litellm_params:\n      model: openai/bench-50ms\n"
        f"      api_base: {slow}/v1\n      api_key: unused\n"
        "litellm_settings:\n  callbacks: []\n  num_retries: 0\n  request_timeout: 30\n"
        # neither gateway checks keys in this run (flopex's tenant keys are a separate piece)
        "general_settings:\n  dangerously_permit_weak_or_unset_master_key: true\n"
    )
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")  # its bundled price map, not a download
    return subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            str(LITELLM_VENV / "bin" / "litellm"),
            "--config",
            str(config),
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-litellm", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    flopex = shutil.which("flopex") or str(Path(sys.executable).parent / "flopex")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        bport, gport, lport = free_port(), free_port(), free_port()
        emulate = [flopex, "emulate", "--model", EMULATED, "--accelerator", "H100-SXM", "--port", str(bport)]
        procs.append(
            subprocess.Popen(
                ["taskset", "-c", "1", *emulate, "--time-scale", "0", "--max-queue", "100000"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        backend = f"http://127.0.0.1:{bport}"
        _wait(f"{backend}/v1/models")
        sport = free_port()
        procs.append(subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", CANNED, str(sport)]))
        slow = f"http://127.0.0.1:{sport}"
        _wait(f"{slow}/v1/models")
        cfg = Path(tempfile.mkdtemp()) / "gateway.yaml"
        cfg.write_text(
            f"models:\n  {MODEL}:\n    backends:\n      - id: emulated\n        base_url: {backend}/v1\n"
            "        usd_per_hour: 2.5\n        tokens_per_s: 3000\n        power_w: 900\n"
            "        grid_gco2e_per_kwh: 300\n        max_concurrency: 100000\n"
            f"  bench-50ms:\n    backends:\n      - id: canned\n        base_url: {slow}/v1\n"
            "        usd_per_hour: 2.5\n        tokens_per_s: 3000\n        power_w: 900\n"
            "        grid_gco2e_per_kwh: 300\n        max_concurrency: 100000\n"
            "limits: {max_in_flight: 100000}\n"
        )
        gateway = subprocess.Popen(
            ["taskset", "-c", "0", flopex, "serve", "--config", str(cfg), "--port", str(gport)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(gateway)
        _wait(f"http://127.0.0.1:{gport}/healthz")
        console = Console(width=150)
        direct = asyncio.run(_measure(backend, slow, None, float("inf")))
        limit = 2 * direct["slow_p99"]
        results = {
            "flopex": asyncio.run(
                _measure(f"http://127.0.0.1:{gport}", f"http://127.0.0.1:{gport}", gateway.pid, limit)
            )
        }
        note = ""
        if not args.skip_litellm:
            lite = _litellm(backend, slow, lport)
            if isinstance(lite, str):
                note = lite
            else:
                procs.append(lite)
                _wait(f"http://127.0.0.1:{lport}/health/liveliness", 120)
                lite_url = f"http://127.0.0.1:{lport}"
                results["LiteLLM"] = asyncio.run(_measure(lite_url, lite_url, lite.pid, limit))
        table = Table(title="Gateway overhead on this machine (gateway on CPU 0, backend and load on CPU 1)")
        for col in (
            "",
            "added p50 ms",
            "added p99 ms",
            "added TTFT ms",
            "max req/s (p99 < 2x direct)",
            "CPU-s / 1k req",
        ):
            table.add_column(col, justify="right" if col else "left")
        table.add_row("direct", "0", "0", "0", f"{direct['rate']:,.0f}", "-")
        for name, r in results.items():
            added = [(r[k] - direct[k]) * 1e3 for k in ("p50", "p99", "ttft")]
            table.add_row(name, *[f"{a:.2f}" for a in added], f"{r['rate']:,.0f}", f"{r['cpu_per_1k']:.2f}")
        if "LiteLLM" in results:
            f, lt = results["flopex"], results["LiteLLM"]
            ratios = [(f[k] - direct[k]) / max(lt[k] - direct[k], 1e-9) for k in ("p50", "p99", "ttft")]
            rate_ratio = f"{f['rate'] / max(lt['rate'], 1):.1f}x"
            cpu_ratio = f"{f['cpu_per_1k'] / lt['cpu_per_1k']:.2f}x"
            table.add_row("flopex / LiteLLM", *[f"{x:.2f}x" for x in ratios], rate_ratio, cpu_ratio)
        console.print(table)
        console.print(
            "Added latency and TTFT: against an instant emulated backend "
            f"(direct p50 {direct['p50'] * 1e3:.2f} ms, p99 {direct['p99'] * 1e3:.2f} ms). "
            "Maximum rate: open loop, 3 s per step, against a canned backend that "
            f"answers after 50 ms (direct p99 {direct['slow_p99'] * 1e3:.1f} ms, so the limit is p99 under "
            f"{limit * 1e3:.0f} ms). The backend and the Python load generator share CPU 1: the direct rate is "
            "their ceiling, not the backend's."
        )
        if note:
            console.print(f"LiteLLM: {note}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
