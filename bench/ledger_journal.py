"""The usage journal after a long run (the 2026-11-29 user trial: 169 MB after 212k requests, and 14.7 s and 1.09
GB to reload it at a stop or a restart). A writer process takes 212,000 records of ~800 bytes as a busy gateway
would (batches every 50 ms into SQLite), then either stops cleanly or is killed with SIGKILL; a second process
replays what is left. Prints the journal's size at the end of the run, the clean stop's time, and the replay's
time and peak memory; then the same with the database away for the whole run (all of it stays journaled).

    python bench/ledger_journal.py [--records 212000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITER = """
import asyncio, json, os, signal, sys, time
from pathlib import Path
from flopex.ledger import LedgerStore, UsageRecord, UsageWriter

url, folder, n, mode = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if mode == "down":  # the database is away for the whole run: everything stays in the journal
    Path(folder.parent / "down.db").write_bytes(b"this is no SQLite database" * 100)
    url = f"sqlite:///{folder.parent / 'down.db'}"
label = {"note": "x" * 420, "cost_usd": 1.2e-05, "backend": "h100", "hardware": "H100-SXM"}

async def main():
    store = LedgerStore(url)
    writer = UsageWriter(store, folder, interval_s=0.05)
    writer.start()
    for i in range(n):
        writer.record(UsageRecord(f"req-{i:09d}", "acme", "key1", "llama-3.1-8b", "h100", None, 12, 8, 1.2e-05,
                                  0.0049, 0.0019, label, 0.01, 0.02, 200, 1.8e9 + i))
        if i % 100 == 0:
            await asyncio.sleep(0.01)  # requests arrive over time (up to 10,000/s); the writer writes meanwhile
    while mode != "down" and (not writer.queue.empty() or writer.behind):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    size = sum(p.stat().st_size for p in folder.glob("journal-*.jsonl"))
    lines = sum(len(p.read_bytes().splitlines()) for p in folder.glob("journal-*.jsonl"))
    print(json.dumps({"journal_bytes": size, "journal_lines": lines}), flush=True)
    if mode in ("kill", "down"):
        os.kill(os.getpid(), signal.SIGKILL)
    start = time.perf_counter()
    await writer.stop()
    print(json.dumps({"stop_s": time.perf_counter() - start}), flush=True)

asyncio.run(main())
"""

REPLAY = """
import json, resource, sys, time
from pathlib import Path
from flopex.ledger import LedgerStore, UsageWriter
start = time.perf_counter()
n = UsageWriter(LedgerStore(sys.argv[1]), Path(sys.argv[2])).replay()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000
print(json.dumps({"replayed": n, "replay_s": seconds, "replay_peak_rss_mb": peak}))
"""


def _json_lines(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("{"):
            out.update(json.loads(line))
    return out


def run(records: int, mode: str) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="flopex-journal-"))
    url = f"sqlite:///{work / 'ledger.db'}"
    subprocess.run([sys.executable, "-c", "import sys; from flopex.ledger import LedgerStore; "
                    "LedgerStore(sys.argv[1]).migrate()", url], check=True)  # fmt: skip
    done = subprocess.run([sys.executable, "-c", WRITER, url, str(work / "journal"), str(records), mode],
                          capture_output=True, text=True)  # fmt: skip
    result = _json_lines(done.stdout)
    if mode == "stop":
        return result
    replay = subprocess.run([sys.executable, "-c", REPLAY, url, str(work / "journal")], capture_output=True, text=True)
    result.update(_json_lines(replay.stdout))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=212_000)
    args = parser.parse_args()
    started = time.perf_counter()
    killed = run(args.records, "kill")
    stopped = run(args.records, "stop")
    down = run(args.records, "down")
    print(f"{args.records:,} records written as they came: journal at the end {killed['journal_bytes'] / 1e6:.2f} "
          f"MB ({killed['journal_lines']:.0f} lines); a clean stop takes {stopped['stop_s']:.2f} s; after SIGKILL "
          f"the restart replays {killed['replayed']:.0f} records in {killed['replay_s']:.2f} s, peak RSS "
          f"{killed['replay_peak_rss_mb']:.0f} MB")  # fmt: skip
    print(f"{args.records:,} records with the database away: journal {down['journal_bytes'] / 1e6:.1f} MB; after "
          f"SIGKILL the restart replays {down['replayed']:.0f} records in {down['replay_s']:.2f} s, peak RSS "
          f"{down['replay_peak_rss_mb']:.0f} MB  ({time.perf_counter() - started:.0f} s in all)")  # fmt: skip


if __name__ == "__main__":
    main()
