"""The ledger on SQLite always, and on the PostgreSQL and Redis named by FLOPEX_TEST_POSTGRES_URL and
FLOPEX_TEST_REDIS_URL (`.ci/run` sets both to this machine's services; elsewhere those tests are skipped, saying
which variable to set)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from flopex.ledger import LedgerStore
from flopex.ledger._schema import metadata

POSTGRES_ENV = "FLOPEX_TEST_POSTGRES_URL"
REDIS_ENV = "FLOPEX_TEST_REDIS_URL"


def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"needs PostgreSQL: set {POSTGRES_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    return url


def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"needs Redis: set {REDIS_ENV} (e.g. redis://127.0.0.1:6379/0)")
    return url


def fresh_postgres() -> str:
    """The test database emptied of flopex's tables (and Alembic's record of them)."""
    url = postgres_url()
    engine = create_engine(url)
    try:
        with engine.begin() as c:
            metadata.drop_all(c)
            c.execute(text("DROP TABLE IF EXISTS alembic_version"))
    except Exception as exc:  # say what is wrong instead of failing deep inside a test
        pytest.fail(f"{POSTGRES_ENV}={url} is set but PostgreSQL does not answer: {exc}")
    finally:
        engine.dispose()
    return url


def fresh_redis() -> str:
    """Redis with flopex's keys removed."""
    import redis

    url = redis_url()
    client = redis.Redis.from_url(url)
    try:
        names = list(client.scan_iter(match="flopex:*", count=1000))
        if names:
            client.delete(*names)
    except redis.RedisError as exc:
        pytest.fail(f"{REDIS_ENV}={url} is set but Redis does not answer: {exc}")
    finally:
        client.close()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    return fresh_postgres()


@pytest.fixture()
def store(db_url: str) -> Iterator[LedgerStore]:
    s = LedgerStore(db_url)
    s.migrate()
    yield s
    s.engine.dispose()


@pytest.fixture()
def redis_only() -> str:
    return fresh_redis()
