from __future__ import annotations

from pathlib import Path

import pytest

from flopex.catalog import Catalog, load_catalog

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the real user's overlay folder or ledger."""
    monkeypatch.setenv("FLOPEX_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("FLOPEX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FLOPEX_DATABASE_URL", raising=False)
    monkeypatch.delenv("FLOPEX_REDIS_URL", raising=False)
    monkeypatch.delenv("FLOPEX_CATALOG", raising=False)
