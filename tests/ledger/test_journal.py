"""The usage journal holds only what the database does not: segments are deleted once written, a process killed
between a batch's database write and that deletion loses and doubles nothing, a live process's journal is never
replayed by another, and records the queue dropped are written from the journal."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from flopex.ledger import LedgerStore, UsageRecord, UsageWriter
from tests.gateway.conftest import emulator
from tests.gateway.test_limits import serving
from tests.ledger.conftest import fresh_redis
from tests.ledger.test_processes import Gateway, ask, write_config

LABEL = {"label_schema_version": 2, "unit": "request", "cost_usd": 1.2e-05, "price_basis": "backend $/h",
         "share_basis": "observed", "backend": "h100", "hardware": "H100-SXM", "region": "aws/us-east-1",
         "prompt_tokens": 12, "completion_tokens": 8, "held_s": 0.021, "energy_wh_facility": 0.0049,
         "co2e_g_operational": 0.0019, "grid_gco2e_per_kwh": 384.0, "pue": 1.2}  # fmt: skip


def record(i: int) -> UsageRecord:
    return UsageRecord(f"req-{i:08d}", "acme", "key1", "llama-3.1-8b", "h100", None, 12, 8, 1.2e-05, 0.0049,
                       0.0019, LABEL, 0.01, 0.02, 200, 1_800_000_000.0 + i)  # fmt: skip


def journal_lines(folder: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in folder.glob("journal-*.jsonl"))


def journal_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("journal-*.jsonl"))


def count(store: LedgerStore) -> tuple[int, int]:
    """(records, distinct request ids) in the database."""
    ids = store.request_ids()
    return len(ids), len(set(ids))


def test_the_journal_of_a_running_gateway_holds_only_what_is_not_written(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = LedgerStore(db)
    store.migrate()
    _, token = store.create_key("acme")
    journal = tmp_path / "journal"
    acked: list[str] = []
    with emulator("H100-SXM", time_scale=0.0) as emu:
        gw = Gateway(write_config(tmp_path / "gw.yaml", emu, db, journal), tmp_path / "gw.log")
        try:

            def load() -> None:
                for _ in range(75):
                    acked.append(ask(gw.url, token).headers["x-flopex-request-id"])

            threads = [threading.Thread(target=load) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            deadline = time.time() + 10
            while len(store.request_ids()) < len(acked) and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the batch's segment is deleted after its write
            assert count(store) == (300, 300)
            assert journal_bytes(journal) == 0  # before: every record stayed in the journal until the stop
        finally:
            gw.stop()
    assert not list(journal.glob("journal-*"))  # a clean stop leaves nothing, not even its lock


CRASHING_WRITER = """
import asyncio, os, signal, sys
from pathlib import Path
sys.path[:0] = [{root!r}]
from flopex.ledger import LedgerStore, UsageWriter
from tests.ledger.test_journal import record

class Store(LedgerStore):
    batches = 0
    def write(self, records):
        n = super().write(records)
        Store.batches += 1
        if Store.batches == {kill_at}:  # committed, and its segments not yet deleted
            os.kill(os.getpid(), signal.SIGKILL)
        return n

async def main():
    writer = UsageWriter(Store({url!r}), Path({journal!r}), batch=100, interval_s=0.0, segment_bytes=8192)
    writer.start()
    for i in range({n}):
        writer.record(record(i))
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_a_crash_between_the_database_write_and_the_deletion_loses_and_doubles_nothing(
    store: LedgerStore, db_url: str, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    root = str(Path(__file__).resolve().parents[2])
    script = CRASHING_WRITER.format(root=root, kill_at=3, url=db_url, journal=str(journal), n=1000)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr  # SIGKILL, right after the third batch's commit
    assert count(store) == (300, 300)
    per_segment = 8192 // len(json.dumps(record(0).row())) + 1
    # the segments of the first two batches are gone (but the one they share with the third); the third batch's
    # records (written) and the rest remain. Before: the journal held all 1,000.
    lines = journal_lines(journal)
    assert 800 <= lines <= 800 + per_segment
    assert UsageWriter(store, journal).replay() == lines
    assert count(store) == (1000, 1000)  # nothing lost, nothing twice
    assert not list(journal.glob("journal-*"))


def test_a_live_writers_journal_is_never_replayed_by_another(tmp_path: Path) -> None:
    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.migrate()
    journal = tmp_path / "journal"
    alive = UsageWriter(store, journal)
    for i in range(50):
        alive.record(record(i))  # journaled; its writer has not written them yet
    assert UsageWriter(store, journal).replay() == 0  # another process starting now leaves them to their owner
    assert journal_lines(journal) == 50 and count(store) == (0, 0)
    alive.journal.close(remove=False)  # as when its process dies: the lock goes with it
    assert UsageWriter(store, journal).replay() == 50
    assert count(store) == (50, 50) and not list(journal.glob("journal-*"))


def test_records_the_queue_dropped_are_written_from_the_journal(tmp_path: Path) -> None:
    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.migrate()
    journal = tmp_path / "journal"

    async def run() -> None:
        writer = UsageWriter(store, journal, interval_s=0.0, segment_bytes=4096)
        writer.queue = asyncio.Queue(maxsize=10)
        writer.start()
        for i in range(200):  # 190 of them find the queue full
            writer.record(record(i))
        deadline = time.time() + 10
        while (len(store.request_ids()) < 200 or journal_bytes(journal)) and time.time() < deadline:
            await asyncio.sleep(0.05)
        assert count(store) == (200, 200) and journal_bytes(journal) == 0
        for i in range(200, 210):
            writer.record(record(i))
        await writer.stop()

    asyncio.run(run())
    assert count(store) == (210, 210) and not list(journal.glob("journal-*"))


def test_a_stop_with_the_database_down_keeps_the_journal_for_the_next_start(tmp_path: Path) -> None:
    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.migrate()
    down = tmp_path / "down.db"
    down.write_bytes(b"this is no SQLite database" * 100)
    journal = tmp_path / "journal"

    async def run() -> None:
        writer = UsageWriter(LedgerStore(f"sqlite:///{down}"), journal, interval_s=30.0)
        writer.start()
        for i in range(20):
            writer.record(record(i))
        await writer.stop()

    asyncio.run(run())
    assert journal_lines(journal) == 20
    assert UsageWriter(store, journal).replay() == 20 and count(store) == (20, 20)


def test_two_workers_keep_their_own_journals_and_record_every_request_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = LedgerStore(db)
    store.migrate()
    _, token = store.create_key("acme")
    journal = tmp_path / "journal"
    acked: list[str] = []
    with emulator("H100-SXM", time_scale=0.0) as emu:
        config = yaml.safe_load(write_config(tmp_path / "gw.yaml", emu, db, journal, fresh_redis()).read_text())
        with serving(config, tmp_path, "--workers", "2") as gw:

            def load() -> None:
                for _ in range(25):
                    acked.append(ask(gw.url, token).headers["x-flopex-request-id"])

            threads = [threading.Thread(target=load) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(list(journal.glob("journal-*.lock"))) == 2  # two live writers, neither replayed by the other
    assert count(store) == (200, 200) and set(store.request_ids()) == set(acked)
    assert not list(journal.glob("journal-*"))  # both stopped cleanly and removed their journals
