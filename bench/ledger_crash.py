"""Kill `flopex serve` with SIGKILL under load, restart it, and count: every acknowledged request must have
exactly one usage record. Run twice: with the writer batching every 30 s (at the kill everything is only in
the journal) and every 0.2 s (the replay overlaps what was written). 1,000 acknowledged answers before each kill.

    python bench/ledger_crash.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flopex.catalog import load_accelerators
from flopex.gateway import BackgroundServer, create_emulator, free_port
from flopex.ledger import LedgerStore
from flopex.models import resolve_model
from flopex.perf import LLMQuery, Scenario, load_efficiency, predict_llm, replica_for

MODEL = "llama-3.1-8b"
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}).encode()


def _serve(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
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


def _run(interval_s: float, backend: str) -> dict[str, int]:
    work = Path(tempfile.mkdtemp(prefix="flopex-crash-"))
    db = f"sqlite:///{work / 'ledger.sqlite3'}"
    store = LedgerStore(db)
    store.migrate()
    _, token = store.create_key("acme")
    config = work / "gateway.json"
    config.write_text(json.dumps({
        "models": {MODEL: {"backends": [{"id": "h100", "base_url": backend, "usd_per_hour": 2.0,
                                         "tokens_per_s": 2000.0}]}},
        "tenants": {"database_url": db, "journal_dir": str(work / "journal"), "write_interval_s": interval_s},
    }))  # fmt: skip
    port = free_port()
    gateway = _serve(config, port, work / "first.log")
    acked: list[str] = []
    stop = threading.Event()

    def load() -> None:
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        while not stop.is_set():
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", BODY, headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    acked.append(r.headers["x-flopex-request-id"])
            except (OSError, urllib.error.HTTPError):
                pass

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    while len(acked) < 1000:
        time.sleep(0.05)
    gateway.send_signal(signal.SIGKILL)
    gateway.wait()
    stop.set()
    for t in threads:
        t.join()
    before = set(store.request_ids())
    lines = sum(len(p.read_text().splitlines()) for p in (work / "journal").glob("journal-*.jsonl"))
    gateway = _serve(config, port, work / "second.log")  # replays the journal before it takes traffic
    gateway.send_signal(signal.SIGTERM)
    gateway.wait(timeout=30)
    after = store.request_ids()
    return {
        "acknowledged": len(acked),
        "in the database at the kill": len(before & set(acked)),
        "journal lines": lines,
        "records after restart": len(after),
        "duplicates": len(after) - len(set(after)),
        "acknowledged without a record": len(set(acked) - set(after)),
        "recorded, never acknowledged": len(set(after) - set(acked)),
        "journals left": len(list((work / "journal").glob("journal-*.jsonl"))),
    }


def main() -> None:
    eff = load_efficiency()
    query = LLMQuery(resolve_model(MODEL), load_accelerators().resolve("H100-SXM"), 1, "fp8", 1000, 200,
                     Scenario("server", 0, 2.0, 0.2))  # fmt: skip
    emulator = BackgroundServer(create_emulator(MODEL, replica_for(predict_llm(query, eff), eff), time_scale=0.0))
    emulator.start()
    try:
        results = {f"{s:g} s": _run(s, f"{emulator.url}/v1") for s in (30.0, 0.2)}
    finally:
        emulator.stop()
    table = Table(title="SIGKILL under load, then restart (8 clients, killed after 1,000 acknowledged answers)")
    table.add_column("writer batch interval")
    for column in next(iter(results.values())):
        table.add_column(column, justify="right")
    for name, r in results.items():
        table.add_row(name, *(f"{v:,}" for v in r.values()))
    Console(width=int(os.environ.get("COLUMNS", "170"))).print(table)


if __name__ == "__main__":
    main()
