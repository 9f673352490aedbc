"""`flopex serve` as real processes: two gateways sharing one Redis hold a rate limit together; a gateway killed
with SIGKILL under load loses no acknowledged request's record and doubles none; no key reaches the logs."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from flopex.ledger import LedgerStore
from tests.gateway.conftest import MODEL, ServeProcess, Server, emulator, http
from tests.ledger.conftest import fresh_redis


@pytest.fixture()
def emu() -> Iterator[Server]:
    with emulator("H100-SXM", time_scale=0.0) as e:
        yield e


def write_config(path: Path, emu: Server, db: str, journal: Path, redis_url: str | None = None,
                 write_interval_s: float = 0.05) -> Path:  # fmt: skip
    backend = {"id": "h100", "base_url": f"{emu.url}/v1", "usd_per_hour": 2.0, "tokens_per_s": 2000.0}
    tenants: dict[str, Any] = {"database_url": db, "journal_dir": str(journal), "write_interval_s": write_interval_s}
    if redis_url:
        tenants["redis_url"] = redis_url
    path.write_text(yaml.safe_dump({"models": {MODEL: {"backends": [backend]}}, "tenants": tenants}))
    return path


Gateway = ServeProcess


@contextmanager
def gateway(config: Path, log: Path) -> Iterator[Gateway]:
    g = Gateway(config, log)
    try:
        yield g
    finally:
        g.stop()


def ask(url: str, token: str) -> Any:
    with openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=10) as client:
        return client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )


def test_two_gateways_sharing_redis_hold_one_rate_limit(emu: Server, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = LedgerStore(db)
    store.migrate()
    _, token = store.create_key("acme", rpm=10)
    config = write_config(tmp_path / "gw.yaml", emu, db, tmp_path / "journal", fresh_redis())
    with gateway(config, tmp_path / "a.log") as a, gateway(config, tmp_path / "b.log") as b:
        if time.time() % 60 > 50:  # the window turns every minute: start in a fresh one
            time.sleep(61 - time.time() % 60)
        codes = []
        for i in range(30):
            try:
                codes.append(ask((a, b)[i % 2].url, token).status_code)
            except openai.RateLimitError:
                codes.append(429)
    assert codes.count(200) == 10 and codes.count(429) == 20
    assert 200 in codes[1::2] and 200 in codes[0::2]  # both gateways served some


@pytest.mark.parametrize("write_interval_s", [30.0, 0.2], ids=["all-in-journal", "half-written"])
def test_sigkill_under_load_loses_and_doubles_nothing(emu: Server, tmp_path: Path, write_interval_s: float) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = LedgerStore(db)
    store.migrate()
    _, token = store.create_key("acme")
    journal = tmp_path / "journal"
    config = write_config(tmp_path / "gw.yaml", emu, db, journal, write_interval_s=write_interval_s)
    acked: list[str] = []
    stop = threading.Event()
    first = Gateway(config, tmp_path / "first.log")

    def load() -> None:
        while not stop.is_set():
            try:
                acked.append(ask(first.url, token).headers["x-flopex-request-id"])
            except (openai.APIConnectionError, openai.APIStatusError):
                pass

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    while len(acked) < 200:
        time.sleep(0.05)
    first.stop(signal.SIGKILL)  # no chance to flush or clean up
    stop.set()
    for t in threads:
        t.join()
    before = set(store.request_ids())
    if write_interval_s > 10:
        assert not before & set(acked)  # nothing had reached the database: the journal holds it all
    assert list(journal.glob("journal-*.jsonl"))

    with gateway(config, tmp_path / "second.log"):
        after = store.request_ids()
    assert set(acked) <= set(after)  # every acknowledged request has its record...
    assert len(after) == len(set(after))  # ...exactly once
    assert len(after) - len(acked) <= 8  # at most those in flight when it died (recorded, never acknowledged)
    assert not list(journal.glob("journal-*.jsonl"))  # the replayed journal and the clean stop's are gone


def test_no_key_material_in_logs_metrics_or_records(emu: Server, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = LedgerStore(db)
    store.migrate()
    key_id, token = store.create_key("acme")
    revoked_id, revoked = store.create_key("acme")
    store.revoke(revoked_id)
    config = write_config(tmp_path / "gw.yaml", emu, db, tmp_path / "journal")
    log = tmp_path / "gw.log"
    with gateway(config, log) as g:
        assert ask(g.url, token).status_code == 200
        for bad in (revoked, token[:-2] + "xx", "sk-" + token):
            with pytest.raises(openai.AuthenticationError):
                ask(g.url, bad)
        metrics = http("GET", f"{g.url}/metrics").text
        usage = http("GET", f"{g.url}/v1/usage", token=token).text
    text = log.read_text()
    assert "401" in text and revoked_id in text  # the refusals are logged, by key id
    records = repr(store.records("acme"))
    for secret in (token, revoked, token.split("_", 2)[2], revoked.split("_", 2)[2], token[:-2]):
        for where, content in (("log", text), ("metrics", metrics), ("usage", usage), ("records", records)):
            assert secret not in content, f"key material in the {where}"
