"""How fast flopex simulates: requests per wall-clock second and the real-time factor.

Replays the Azure LLM inference conversation trace (19,366 requests over an hour; ../shared/data/traces/,
CC-BY) against fleets of 1 to 256 identical replicas (Llama 3.1 8B FP8 on one H100 each, routed by least load),
at trace scales that keep each fleet loaded and at the trace's own rate (where most replicas idle, so the
cost of routing each arrival over the fleet shows), once more with power-of-two choices (`Policy(sample=2)`:
two replicas drawn, the emptier taken). Wall and CPU seconds of the `simulate` call. Falls back to a
synthetic Poisson hour at the trace's rate when the trace is not checked out beside the project.

Peer: Vidur (microsoft/vidur, PyPI 0.0.26) downloads its profiling data from a model hub at run time, so it
cannot run on these offline machines; its paper reports simulating large deployments orders of magnitude
faster than running them (LLaMA2-70B capacity search in about 1 CPU-hour against 42K GPU-hours), which is
the only published figure to set beside these.

    python bench/sim_speed.py [TRACE.csv]
"""

from __future__ import annotations

import csv
import random
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flopex.catalog import load_accelerators
from flopex.models import resolve_model
from flopex.perf import LLMQuery, Scenario, load_efficiency, predict_llm, replica_for
from flopex.routing import Policy
from flopex.sim import SimOptions, SimReplica, generate, requests_from_trace, simulate
from flopex.workloads import LengthBucket

TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else TRACE
    eff = load_efficiency()
    q = LLMQuery(resolve_model("llama-3.1-8b"), load_accelerators().resolve("H100-SXM"), 1, "fp8", 1155, 211,
                 Scenario("server", 0, 2.0, 0.2))  # fmt: skip
    model = replica_for(predict_llm(q, eff), eff)
    buckets = [LengthBucket(input_tokens=1155, output_tokens=211, weight=1.0)]
    if path.exists():
        with path.open() as handle:
            rows = [
                (r["TIMESTAMP"], int(r["ContextTokens"]), int(r["GeneratedTokens"])) for r in csv.DictReader(handle)
            ]
        source = f"{path.name} ({len(rows):,} requests)"
    else:
        rows = []
        source = "synthetic Poisson hour at 5.4 requests/s (trace not found)"
    table = Table(title=f"flopex simulate speed: {source}, Llama 3.1 8B FP8 on 1 x H100 per replica")
    for col in ("replicas", "trace scale", "routing", "requests", "simulated s", "wall s", "CPU s", "requests/s",
                "real-time factor", "engine steps"):  # fmt: skip
        table.add_column(col, justify="right")
    least, two = ("least load", Policy.least_loaded()), ("least of 2 drawn", Policy(sample=2))
    for replicas, scale, (name, policy) in (
        (1, 1.0, least), (4, 4.0, least), (4, 1.0, least), (16, 16.0, least), (64, 64.0, least), (64, 1.0, least),
        (256, 1.0, least), (256, 1.0, two),
    ):  # fmt: skip
        if rows:
            reqs = requests_from_trace(rows, "chat", buckets, rate_scale=scale)
        else:
            reqs = generate("poisson", 5.4 * scale, 3600 / scale, "chat", buckets, random.Random(1))
        fleet = [SimReplica(f"r{i}", "g", frozenset({"chat"}), model, {}) for i in range(replicas)]
        start, start_cpu = time.perf_counter(), time.process_time()
        result = simulate(reqs, fleet, SimOptions(seed=1, policy=policy))
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        table.add_row(
            str(replicas), f"{scale:g}x", name, f"{len(reqs):,}", f"{result.horizon_s:,.0f}", f"{wall:.2f}",
            f"{cpu:.2f}", f"{len(reqs) / wall:,.0f}", f"{result.horizon_s / wall:,.0f}x", f"{result.steps:,}",
        )  # fmt: skip
    console = Console(width=150)
    console.print(table)
    console.print(
        "Vidur (the peer) cannot run offline here: its PyPI release downloads profiling data at run time. Its "
        "paper reports a LLaMA2-70B capacity search in about 1 CPU-hour against 42K GPU-hours of real runs."
    )


if __name__ == "__main__":
    main()
