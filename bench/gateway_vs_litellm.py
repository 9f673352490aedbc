"""flopex's gateway against a bare pass-through proxy and LiteLLM's proxy, in front of the same backends.

On this 2-core machine every proxy under test runs pinned to CPU 0 with one worker, on uvloop and httptools;
the backends (flopex's emulator with no delays, a canned 16-token answer; an aiohttp server that answers after
50 ms) and this load generator share CPU 1. The proxies:

- bare proxy: `bench/bare_proxy.py` (Starlette + uvicorn + aiohttp, forwarding the body and the answer and
  nothing else): the ceiling for a Python proxy;
- flopex: `flopex serve`, with routing, labels and metrics on;
- LiteLLM: `litellm[proxy]==LITELLM_VERSION` (and httptools, so that it runs on the same HTTP parser) in its
  own virtual environment from the package index, callbacks off, no retries, log level ERROR.

All three stay up side by side and are measured one at a time, in rounds: calls straight to the backends first,
then the proxies in an order that rotates each round. Each figure is the median over the rounds, with its range
(the direct max rate, the load generator's ceiling, is measured in the first round only).
Per proxy and round:

- added p50 and p99: over calling the instant backend directly, 400 sequential requests;
- added TTFT: the same, streamed, 150 requests;
- CPU ms per request: the proxy's process CPU time (its threads and any children, to the nanosecond from
  /proc/PID/task/*/schedstat) over those 400 requests, and over the open-loop step at its max rate;
- max rate: the highest open-loop rate against the 50 ms backend whose p99 stays under twice the direct p99,
  with no errors and the generator on schedule; found by doubling from 10 req/s, then bisecting three times
  (to within 9%), 2.5 s a step; a step that fails is tried once more before it counts as failed.

Then py-spy (in its own virtual environment) samples the flopex gateway under open-loop load at half its max
rate, and the heaviest functions are printed.

    python bench/gateway_vs_litellm.py [--rounds 3] [--skip-litellm] [--skip-profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from flopex.gateway import free_port

# the newest release whose [proxy] extra installs from the package index this machine reaches: the current one,
# 1.110.2, needs litellm-proxy==1.110.2, and 1.108.8 to 1.109.3 need litellm-enterprise or litellm-proxy-extras
# releases that are not on it
LITELLM_VERSION = "1.108.7"
PYSPY_VERSION = "0.4.3"
# a neutral model name: LiteLLM fetches a Hugging Face tokenizer for llama-named models when streaming, which
# these offline machines cannot reach; both gateways and the emulator accept any name
MODEL = "bench"
EMULATED = "llama-3.1-8b"
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}).encode()
STREAM = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16, "stream": True}
).encode()
SLOW_BODY = json.dumps({"model": "bench-50ms", "messages": [{"role": "user", "content": "hello"}]}).encode()
SEQUENTIAL, STREAMED, SLOW = 400, 150, 40  # requests per measure
FIRST_RATE, MAX_RATE, BISECTIONS, STEP_S = 10.0, 5120.0, 3, 2.5
TRIES = 2  # a step fails only twice over: one pause of 50 ms (new connections, a GC) fails a 2.5 s step's p99
TMP = Path(tempfile.gettempdir())
FLOPEX, BARE, LITELLM = "flopex", "bare proxy", f"LiteLLM {LITELLM_VERSION}"


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


@dataclass(frozen=True)
class Target:
    name: str
    fast: str  # a base URL whose /v1/chat/completions reaches the instant backend
    slow: str  # ... and the 50 ms one
    pid: int | None  # the proxy's process; None for calls straight to the backends


@dataclass
class Round:
    """One target's figures in one round (seconds; CPU in ms per request)."""

    p50: float
    p99: float
    ttft: float
    slow_p99: float
    rate: float  # 0: did not reach FIRST_RATE
    cpu_seq: float
    cpu_steps: dict[float, float] = field(default_factory=dict)  # open-loop rate passed -> CPU ms per request

    @property
    def cpu_rate(self) -> float:
        return self.cpu_steps.get(self.rate, math.nan)


def _wait(url: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds of `pid`, its threads and its live descendants, to the nanosecond (schedstat; /proc's stat
    counts 10 ms ticks); NaN without a process."""
    if pid is None:
        return math.nan
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    tree, total = [pid], 0
    while tree:
        p = tree.pop()
        for task in Path(f"/proc/{p}/task").glob("*/schedstat"):
            try:
                total += int(task.read_text().split()[0])
            except (OSError, IndexError):
                continue
        tree.extend(child for child, parent in parents.items() if parent == p)
    return total / 1e9


def _busy_seconds() -> float:
    """CPU seconds this machine's cores have been busy (all processes), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _session() -> aiohttp.ClientSession:
    # an overloaded proxy shows as errors, not as a stalled run
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2048), timeout=aiohttp.ClientTimeout(total=10))


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
    """Requests sent at `rate`/s whatever the answers: (latencies, errors, the rate they were sent at)."""
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
    sent = n / (time.perf_counter() - begin + 1 / rate)
    await asyncio.gather(*tasks)
    return latencies, errors, sent


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def _max_rate(session: aiohttp.ClientSession, url: str, pid: int | None, limit: float) -> dict[float, float]:
    """The open-loop rates that passed (p99 under `limit`, no errors, sent on schedule), each with the proxy's
    CPU ms per request: doubling from FIRST_RATE to the first failure, then bisecting (geometrically)."""
    passed: dict[float, float] = {}

    async def step(rate: float) -> bool:
        for _ in range(TRIES):
            before = _cpu_seconds(pid)
            lat, errors, sent = await _open_loop(session, url, rate, STEP_S)
            cpu = _cpu_seconds(pid) - before
            if lat and not errors and sent >= 0.95 * rate and _pct(lat, 99) <= limit:
                passed[rate] = cpu / len(lat) * 1e3
                return True
        return False

    good, rate = 0.0, FIRST_RATE
    while rate <= MAX_RATE and await step(rate):
        good, rate = rate, rate * 2
    if good and rate <= MAX_RATE:
        bad = rate
        for _ in range(BISECTIONS):
            mid = round(math.sqrt(good * bad))
            good, bad = (mid, bad) if await step(mid) else (good, mid)
    return passed


async def _measure(target: Target, limit: float | None, ladder: bool = True) -> Round:
    """One round of `target`; `limit` None: twice this measure's own p99 against the 50 ms backend; without
    `ladder`, no max rate (NaN)."""
    async with _session() as session:
        url, slow_url = f"{target.fast}/v1/chat/completions", f"{target.slow}/v1/chat/completions"
        await _sequential(session, url, 50, BODY)  # warm up
        before = _cpu_seconds(target.pid)
        seq = await _sequential(session, url, SEQUENTIAL, BODY)
        cpu_seq = (_cpu_seconds(target.pid) - before) / SEQUENTIAL * 1e3
        ttft = await _ttft(session, url, STREAMED)
        slow = await _sequential(session, slow_url, SLOW, SLOW_BODY)
        steps = await _max_rate(session, slow_url, target.pid, limit or 2 * _pct(slow, 99)) if ladder else {}
    return Round(
        p50=statistics.median(seq),
        p99=_pct(seq, 99),
        ttft=statistics.median(ttft),
        slow_p99=_pct(slow, 99),
        rate=max(steps, default=0.0) if ladder else math.nan,
        cpu_seq=cpu_seq,
        cpu_steps=steps,
    )


def _venv_tool(name: str, requirements: list[str], tool: str) -> Path | str:
    """`tool` from a virtual environment of its own holding `requirements` (made once); or why it could not be."""
    venv = TMP / f"flopex-bench-{name}"
    exe = venv / "bin" / tool
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *requirements], capture_output=True)
        if done.returncode or not exe.exists():
            return f"could not install {' '.join(requirements)}: {done.stderr.decode()[-300:]}"
    return exe


def _litellm(backend: str, slow: str, port: int) -> subprocess.Popen[bytes] | str:
    """LiteLLM's proxy, pinned, on CPU 0 (or why it could not be installed)."""
    requirements = [f"litellm[proxy]=={LITELLM_VERSION}", "httptools==0.9.0"]
    exe = _venv_tool(f"litellm-{LITELLM_VERSION}", requirements, "litellm")
    if isinstance(exe, str):
        return exe
    python = exe.parent / "python"
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    version = subprocess.run([str(python), "-c", probe], capture_output=True, text=True).stdout.strip()
    if version != LITELLM_VERSION:
        return f"{exe} is LiteLLM {version or 'unknown'}, not {LITELLM_VERSION}: remove {exe.parent.parent}"
    print(f"LiteLLM {version} (pinned), from {exe}", flush=True)
    config = exe.parent.parent / "config.yaml"
    config.write_text(
        f"model_list:\n  - model_name: {MODEL}\n    litellm_params:\n      model: openai/{MODEL}\n"
        f"      api_base: {backend}/v1\n      api_key: unused\n"
        f"  - model_name: bench-50ms\n    litellm_params:\n      model: openai/bench-50ms\n"
        f"      api_base: {slow}/v1\n      api_key: unused\n"
        "litellm_settings:\n  callbacks: []\n  num_retries: 0\n  request_timeout: 30\n"
        # neither gateway checks keys in this run (flopex's tenant keys are a separate piece)
        "general_settings:\n  dangerously_permit_weak_or_unset_master_key: true\n"
    )
    # its bundled price map, not a download; logs at ERROR, as flopex logs at WARNING and keeps no access log
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    argv = [str(exe), "--config", str(config), "--port", str(port), "--num_workers", "1"]
    return subprocess.Popen(
        ["taskset", "-c", "0", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )


def _short(frame: str) -> str:
    """py-spy's `function (path)` with the path cut to its package."""
    name, _, path = frame.partition(" (")
    for marker in ("site-packages/", "/src/", "/lib/python3.11/", "/lib/python3.12/"):
        path = path.rsplit(marker, 1)[-1]
    return f"{name} ({path}"


def _top(raw: str, n: int = 15) -> list[str]:
    """py-spy's collapsed stacks as each package's share and two markdown tables: the `n` functions with the most
    samples of their own, and flopex's functions by their samples with callees; shares of all samples of the
    process on CPU. The event loop's own C code (uvloop: sockets, callbacks) shows as the outermost frame's own
    samples, asyncio's `Runner.run`."""
    own: Counter[str] = Counter()
    within: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_short(f) for f in stack.split(";")] if stack else []
        if frames:
            own[frames[-1]] += int(count)
            within.update(dict.fromkeys(frames, int(count)))
            packages[frames[-1].rsplit(" (", 1)[-1].rstrip(")").split("/")[0].removesuffix(".py")] += int(count)
    total = sum(own.values()) or 1
    rows = [f"{total:,} samples of the process on CPU; own samples by package: "]
    rows[0] += ", ".join(f"{p} {k / total:.1%}" for p, k in packages.most_common(10))
    rows += ["", "| function | own | with callees |", "|---|---:|---:|"]
    rows += [f"| `{f}` | {k / total:.1%} | {within[f] / total:.1%} |" for f, k in own.most_common(n)]
    ours = [(f, k) for f, k in within.most_common() if "flopex/" in f and k < total][:n]  # not the entry point
    rows += ["", "| flopex function | own | with callees |", "|---|---:|---:|"]
    rows += [f"| `{f}` | {own[f] / total:.1%} | {k / total:.1%} |" for f, k in ours]
    return rows


def _profile(target: Target, rate: float, seconds: int) -> list[str]:
    """py-spy's samples of `target` under open-loop load at `rate` against the 50 ms backend."""
    spy = _venv_tool(f"py-spy-{PYSPY_VERSION}", [f"py-spy=={PYSPY_VERSION}"], "py-spy")
    if isinstance(spy, str):
        return [spy]
    out = TMP / "flopex-bench-profile.txt"
    argv = [str(spy), "record", "--pid", str(target.pid), "--duration", str(seconds), "--rate", "250"]
    argv += ["--format", "raw", "--nolineno", "--output", str(out)]
    record = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def load() -> tuple[list[float], int, float]:
        async with _session() as session:
            return await _open_loop(session, f"{target.slow}/v1/chat/completions", rate, seconds + 2)

    lat, errors, _ = asyncio.run(load())
    _, err = record.communicate()
    if record.returncode:
        return [f"py-spy failed: {err.decode()[-300:]}"]
    head = f"{len(lat):,} requests at {rate:,.0f} req/s ({errors} errors), sampled for {seconds} s at 250 Hz"
    return [head, *_top(out.read_text())]


def _spread(values: list[float], fmt: Callable[[float], str]) -> str:
    """The median, with the range when there is more than one value."""
    if not values:
        return "-"
    mid = fmt(statistics.median(values))
    return mid if len(values) == 1 else f"{mid} ({fmt(min(values))}–{fmt(max(values))})"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _rates(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    misses = sum(1 for v in values if not v)
    if misses == len(values):
        return f"did not reach the first step ({FIRST_RATE:.0f} req/s)"
    cell = _spread([v for v in values if v], lambda x: f"{x:,.0f}")
    return cell + (f"; did not reach the first step in {misses} of {len(values)} rounds" if misses else "")


def _table(results: dict[str, list[Round]]) -> list[str]:
    rows = [
        "| | added p50 ms | added p99 ms | added TTFT ms | max req/s | CPU ms/req, sequential "
        "| CPU ms/req at its max rate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    direct = results["direct"]
    for name, rounds in results.items():
        cells = ["-", "-", "-"]
        if name != "direct":
            cells = [
                _spread([getattr(r, k) - getattr(d, k) for r, d in zip(rounds, direct, strict=True)], _ms)
                for k in ("p50", "p99", "ttft")
            ]
        cells.append(_rates([r.rate for r in rounds]))
        for cpu in ([r.cpu_seq for r in rounds], [r.cpu_rate for r in rounds]):
            cells.append(_spread([c for c in cpu if not math.isnan(c)], lambda x: f"{x:.3f}"))
        rows.append(f"| {name} | {' | '.join(cells)} |")
    return rows


def _check(label: str, target: str, values: list[float], ok: Callable[[float], bool] | None, unit: str) -> str:
    fmt: Callable[[float], str] = (lambda v: f"{v:+.2f} ms") if unit == "ms" else (lambda v: f"{v:.2f}x")
    met = "-"
    if ok is not None and values:
        met = ("yes" if ok(statistics.median(values)) else "no") + f" ({sum(map(ok, values))} of {len(values)} rounds)"
    return f"| {label} | {target} | {_spread(values, fmt)} | {met} |"


def _checks(results: dict[str, list[Round]]) -> list[str]:
    rows = ["| | target | median (range) over the rounds | met |", "|---|---|---:|---|"]
    fx = results[FLOPEX]
    if BARE in results:
        pairs = list(zip(fx, results[BARE], strict=True))
        rows.append(
            _check(
                "flopex / bare proxy: CPU per request, sequential",
                "≤ 1.3x",
                [f.cpu_seq / b.cpu_seq for f, b in pairs],
                lambda v: v <= 1.3,
                "x",
            )
        )
        common = [max(set(f.cpu_steps) & set(b.cpu_steps), default=None) for f, b in pairs]
        at = ", ".join(sorted({f"{c:,.0f}" for c in common if c}))
        ratios = [f.cpu_steps[c] / b.cpu_steps[c] for (f, b), c in zip(pairs, common, strict=True) if c]
        rows.append(
            _check(
                f"flopex / bare proxy: CPU per request at {at} req/s (the highest rate both passed)",
                "≤ 1.3x",
                ratios,
                lambda v: v <= 1.3,
                "x",
            )
        )
        rows.append(
            _check(
                "flopex − bare proxy: p50",
                "≤ +0.5 ms",
                [(f.p50 - b.p50) * 1e3 for f, b in pairs],
                lambda v: v <= 0.5,
                "ms",
            )
        )
        rows.append(
            _check("flopex / bare proxy: max rate", "", [f.rate / b.rate for f, b in pairs if b.rate], None, "x")
        )
    if LITELLM in results:
        pairs = list(zip(fx, results[LITELLM], strict=True))
        reached = [f.rate / lt.rate for f, lt in pairs if lt.rate]
        row = _check("flopex / LiteLLM: max rate", "≥ 20x", reached, lambda v: v >= 20, "x")
        if len(reached) < len(pairs):  # never a ratio over a floor: LiteLLM's rate is only known to be under it
            floor_ok = all(f.rate >= 20 * FIRST_RATE for f, lt in pairs if not lt.rate)
            met = (
                "no"
                if not all(v >= 20 for v in reached)
                else (f"yes: flopex ≥ 20 x {FIRST_RATE:.0f} req/s there" if floor_ok else "unknown")
            )
            cell = f"{_spread(reached, lambda v: f'{v:.2f}x')}; " if reached else ""
            cell += f"LiteLLM did not reach the first step ({FIRST_RATE:.0f} req/s) in {len(pairs) - len(reached)} of "
            row = f"| flopex / LiteLLM: max rate | ≥ 20x | {cell}{len(pairs)} rounds | {met} |"
        rows.append(row)
        rows.append(
            _check(
                "flopex / LiteLLM: CPU per request, sequential",
                "",
                [f.cpu_seq / lt.cpu_seq for f, lt in pairs],
                None,
                "x",
            )
        )
        rows.append(_check("flopex − LiteLLM: p50", "", [(f.p50 - lt.p50) * 1e3 for f, lt in pairs], None, "ms"))
    return rows


def _start(procs: list[subprocess.Popen[bytes]], cpu: int, argv: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["taskset", "-c", str(cpu), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(proc)
    return proc


def _targets(procs: list[subprocess.Popen[bytes]], litellm: bool) -> tuple[list[Target], str]:
    """Start the two backends on CPU 1 and the proxies on CPU 0: the targets, and a note (LiteLLM's absence)."""
    flopex = shutil.which("flopex") or str(Path(sys.executable).parent / "flopex")
    bport, sport, gport, pport, lport = (free_port() for _ in range(5))
    _start(
        procs,
        1,
        [
            flopex,
            "emulate",
            "--model",
            EMULATED,
            "--accelerator",
            "H100-SXM",
            "--port",
            str(bport),
            "--time-scale",
            "0",
            "--max-queue",
            "100000",
        ],
    )
    _start(procs, 1, [sys.executable, "-c", CANNED, str(sport)])
    backend, slow = f"http://127.0.0.1:{bport}", f"http://127.0.0.1:{sport}"
    cfg = Path(tempfile.mkdtemp()) / "gateway.yaml"
    figures = "usd_per_hour: 2.5\n        tokens_per_s: 3000\n        power_w: 900\n        grid_gco2e_per_kwh: 300"
    cfg.write_text(
        f"models:\n  {MODEL}:\n    backends:\n      - id: emulated\n        base_url: {backend}/v1\n"
        f"        {figures}\n        max_concurrency: 100000\n"
        f"  bench-50ms:\n    backends:\n      - id: canned\n        base_url: {slow}/v1\n"
        f"        {figures}\n        max_concurrency: 100000\n"
        "limits: {max_in_flight: 100000}\n"
    )
    gateway = _start(procs, 0, [flopex, "serve", "--config", str(cfg), "--port", str(gport)])
    bare = Path(__file__).with_name("bare_proxy.py")
    proxy = _start(
        procs,
        0,
        [
            sys.executable,
            str(bare),
            "--port",
            str(pport),
            "--upstream",
            f"fast={backend}",
            "--upstream",
            f"slow={slow}",
        ],
    )
    p, g = f"http://127.0.0.1:{pport}", f"http://127.0.0.1:{gport}"
    targets = [
        Target("direct", backend, slow, None),
        Target(BARE, f"{p}/fast", f"{p}/slow", proxy.pid),
        Target(FLOPEX, g, g, gateway.pid),
    ]
    note = ""
    if litellm:
        lite = _litellm(backend, slow, lport)
        if isinstance(lite, str):
            note = f"LiteLLM: {lite}"
        else:
            procs.append(lite)
            targets.append(Target(LITELLM, f"http://127.0.0.1:{lport}", f"http://127.0.0.1:{lport}", lite.pid))
    for url in (f"{backend}/v1/models", f"{slow}/v1/models", f"{g}/healthz", f"{p}/fast/v1/models"):
        _wait(url)
    if len(targets) == 4:
        _wait(f"http://127.0.0.1:{lport}/health/liveliness", 180)
    return targets, note


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    procs: list[subprocess.Popen[bytes]] = []
    begin = time.time()
    cpu = next((x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name")), ":?")
    cpu = cpu.split(":", 1)[1].strip()
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} x {cpu}, Python {sys.version.split()[0]}", flush=True)
    try:
        targets, note = _targets(procs, not args.skip_litellm)
        results: dict[str, list[Round]] = {t.name: [] for t in targets}
        proxies = targets[1:]
        for i in range(args.rounds):  # the direct max rate (the load generator's ceiling) only in the first
            busy, ours, start = _busy_seconds(), _cpu_seconds(os.getpid()), time.time()
            direct = asyncio.run(_measure(targets[0], None, ladder=i == 0))
            results["direct"].append(direct)
            order = [targets[0], *proxies[i % len(proxies) :], *proxies[: i % len(proxies)]]
            for t in order[1:]:
                results[t.name].append(asyncio.run(_measure(t, 2 * direct.slow_p99)))
            done = ", ".join(f"{t.name} {results[t.name][-1].rate:,.0f} req/s" for t in order[i > 0 :])
            other = (_busy_seconds() - busy - _cpu_seconds(os.getpid()) + ours) / (time.time() - start)
            print(
                f"round {i + 1} ({time.time() - begin:.0f} s): {done}; other processes: {other:.0%} of a core",
                flush=True,
            )
        direct_rounds = results["direct"]
        print("\n".join(["", *_table(results), "", *_checks(results), ""]))
        print(
            f"direct p50 {_spread([r.p50 for r in direct_rounds], _ms)} ms, p99 "
            f"{_spread([r.p99 for r in direct_rounds], _ms)} ms, TTFT {_spread([r.ttft for r in direct_rounds], _ms)} "
            f"ms; max rate: p99 under twice the direct p99 against the 50 ms backend "
            f"({_spread([2 * r.slow_p99 for r in direct_rounds], _ms)} ms). The backends and this load generator "
            "share CPU 1: the direct rate is their ceiling, not the backends', and a proxy's max rate near it is "
            "that ceiling, not the proxy's: its CPU per request is the figure that measures it."
        )
        if note:
            print(note)
        if not args.skip_profile:
            gateway = next(t for t in targets if t.name == FLOPEX)
            rate = round(statistics.median(r.rate for r in results[FLOPEX]) / 2)
            print("", f"flopex gateway under py-spy {PYSPY_VERSION}:", *_profile(gateway, rate, 15), sep="\n")
        print(f"\n{time.time() - begin:.0f} s in all")
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
