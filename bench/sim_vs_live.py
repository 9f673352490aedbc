"""The simulator against the live system on the same traffic: does `flopex simulate` predict what
`flopex serve` in front of `flopex emulate` backends does?

A slice of the Azure LLM inference conversation trace (../shared/data/traces/, 2023-11-16, CC-BY) is sent
at its own arrival times, with its own prompt and answer lengths, through the gateway (a `flopex serve`
process) to two `flopex emulate` processes (Llama 3.1 8B FP8 on one L4 each), by the official openai
client with streaming; and the same requests are replayed by `flopex simulate`'s engine against the same two
replicas, routed by least load as the gateway is configured to. Both run the same engine scheduler
(`flopex.perf.EngineState`); the live side adds real HTTP, a real event loop and real routing decisions made
on in-flight counts. `--time-scale K` slows the live system K times (arrival gaps and every emulated delay)
so that Python's own latency is small beside a step; live latencies are divided by K before comparing.

    python bench/sim_vs_live.py [--requests 800] [--time-scale 2] [--accelerator L4] [TRACE.csv]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import openai
from rich.console import Console
from rich.table import Table

from flopex.catalog import load_accelerators
from flopex.gateway import free_port
from flopex.models import resolve_model
from flopex.perf import LLMQuery, Scenario, load_efficiency, predict_llm, replica_for
from flopex.routing import Policy
from flopex.sim import Completed, SimOptions, SimReplica, requests_from_trace, simulate
from flopex.workloads import LengthBucket

TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
MODEL = "llama-3.1-8b"
OFFER = "aws/eu-north-1/g6.xlarge/on_demand"


def _rows(path: Path, n: int) -> list[tuple[str, int, int]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = []
        for row in reader:
            rows.append((row["TIMESTAMP"], int(row["ContextTokens"]), int(row["GeneratedTokens"])))
            if len(rows) >= n:
                break
    return rows


def _wait_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _messages(input_tokens: int) -> list[dict[str, str]]:
    """A prompt the emulator counts as `input_tokens` tokens (it counts 4 characters of JSON a token)."""
    envelope = len('[{"role": "user", "content": ""}]')
    return [{"role": "user", "content": "x" * max(4 * input_tokens - envelope, 1)}]


async def _one(
    client: openai.AsyncOpenAI, at: float, start: float, scale: float, i: int, o: int
) -> dict[str, float | str]:
    await asyncio.sleep(max(start + at * scale - time.monotonic(), 0.0))
    sent = time.monotonic()
    first = 0.0
    tokens = 0
    async with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=_messages(i), max_tokens=o, stream=True  # type: ignore[arg-type]
    ) as response:
        backend = response.headers.get("x-flopex-backend", "?")
        async for chunk in await response.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                tokens += 1
                if not first:
                    first = time.monotonic()
    end = time.monotonic()
    ttft = (first - sent) / scale
    e2e = (end - sent) / scale
    return {"backend": backend, "ttft": ttft, "e2e": e2e, "tpot": (e2e - ttft) / (o - 1) if o > 1 else 0.0}


async def _drive(url: str, reqs: list[tuple[float, int, int]], scale: float) -> list[dict[str, float | str]]:
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
    start = time.monotonic() + 0.5
    return list(await asyncio.gather(*(_one(client, a, start, scale, i, o) for a, i, o in reqs)))


def _live(reqs: list[tuple[float, int, int]], accelerator: str, scale: float) -> list[dict[str, float | str]]:
    ports = [free_port(), free_port()]
    gw_port = free_port()
    procs = []
    env = {**os.environ, "FLOPEX_CONFIG_DIR": tempfile.mkdtemp()}
    config = Path(tempfile.mkdtemp()) / "gateway.yaml"
    backends = "\n".join(
        f"      - {{id: {accelerator.lower()}-{k}, base_url: 'http://127.0.0.1:{p}/v1', offer: {OFFER}, "
        f"precision: fp8, max_concurrency: 4096}}"
        for k, p in enumerate(ports)
    )
    config.write_text(
        f"models:\n  {MODEL}:\n    routing: {{picker: best, scorers: {{load: 1.0}}}}\n    backends:\n"
        f"{backends}\nmax_retries: 0\n",
        encoding="utf-8",
    )
    try:
        for p in ports:
            procs.append(subprocess.Popen(
                ["flopex", "emulate", "--model", MODEL, "--accelerator", accelerator, "--port", str(p),
                 "--time-scale", str(scale), "--max-queue", "100000"], env=env))  # fmt: skip
        procs.append(subprocess.Popen(["flopex", "serve", "--config", str(config), "--port", str(gw_port)], env=env))
        for p in ports:
            _wait_up(f"http://127.0.0.1:{p}/health")
        _wait_up(f"http://127.0.0.1:{gw_port}/v1/models")
        return asyncio.run(_drive(f"http://127.0.0.1:{gw_port}/v1", reqs, scale))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _simulated(rows: list[tuple[str, int, int]], accelerator: str) -> list[Completed]:
    eff = load_efficiency()
    q = LLMQuery(resolve_model(MODEL), load_accelerators().resolve(accelerator), 1, "fp8", 1000, 200,
                 Scenario("server", 0, 2.0, 0.2))  # fmt: skip
    model = replica_for(predict_llm(q, eff), eff)
    replicas = [SimReplica(f"{accelerator.lower()}-{k}", "g", frozenset({"conv"}), model, {("conv", 0): 0.5})
                for k in range(2)]  # fmt: skip
    reqs = requests_from_trace(rows, "conv", [LengthBucket(input_tokens=1000, output_tokens=200, weight=1.0)])
    return simulate(reqs, replicas, SimOptions(policy=Policy.least_loaded())).completed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", nargs="?", type=Path, default=TRACE)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--time-scale", type=float, default=2.0)
    parser.add_argument("--accelerator", default="L4")
    args = parser.parse_args()
    if not args.trace.exists():
        sys.exit(f"{args.trace}: the conversation trace is not checked out beside the project; pass its path.")
    rows = _rows(args.trace, args.requests)
    sim = _simulated(rows, args.accelerator)
    reqs = [(r.arrival, r.input_tokens, r.output_tokens) for r in
            sorted(requests_from_trace(rows, "conv", [LengthBucket(input_tokens=1, output_tokens=1, weight=1)]),
                   key=lambda r: r.id)]  # fmt: skip
    span = reqs[-1][0] if reqs else 0.0
    console = Console(stderr=True)
    console.print(f"live: {len(reqs)} requests over {span:,.0f} s of trace, {span * args.time_scale:,.0f} s wall ...")
    live = _live(reqs, args.accelerator, args.time_scale)
    table = Table(title=f"{len(rows)} requests of the conversation trace ({len(rows) / span:.2f} req/s) on 2 x "
                        f"{args.accelerator}: flopex simulate against flopex serve + flopex emulate "
                        f"(time scale {args.time_scale:g})")  # fmt: skip
    for col in ("metric", "sim p50", "live p50", "live/sim p50", "sim p90", "live p90", "live/sim p90"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    sim_values = {"TTFT s": [c.ttft for c in sim], "TPOT s": [c.tpot for c in sim if c.request.output_tokens > 1],
                  "end to end s": [c.e2e for c in sim]}  # fmt: skip
    live_values = {"TTFT s": [float(r["ttft"]) for r in live],
                   "TPOT s": [float(r["tpot"]) for r, q in zip(live, reqs, strict=True) if q[2] > 1],
                   "end to end s": [float(r["e2e"]) for r in live]}  # fmt: skip
    for metric, s_vals in sim_values.items():
        cells = [metric]
        sp = np.percentile(s_vals, [50, 90])
        lp = np.percentile(live_values[metric], [50, 90])
        for k in range(2):
            cells += [f"{sp[k]:.3f}", f"{lp[k]:.3f}", f"{lp[k] / sp[k]:.2f}"]
        table.add_row(*cells[:1], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6])
    out = Console(width=120)
    out.print(table)
    names = sorted({c.replica for c in sim})
    sim_share = {n: sum(1 for c in sim if c.replica == n) / len(sim) for n in names}
    live_share = {n: sum(1 for r in live if r["backend"] == n) / len(live) for n in names}
    out.print("Share of requests per backend: " + "; ".join(
        f"{n} sim {sim_share[n]:.1%}, live {live_share[n]:.1%}" for n in names))  # fmt: skip


if __name__ == "__main__":
    main()
