from __future__ import annotations

import pytest

from flopex.catalog import AcceleratorTable, load_accelerators
from flopex.perf import Efficiency, load_efficiency


@pytest.fixture(scope="session")
def eff() -> Efficiency:
    return load_efficiency()


@pytest.fixture(scope="session")
def accs() -> AcceleratorTable:
    return load_accelerators()
