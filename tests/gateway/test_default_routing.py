"""The default routing over real HTTP: two identical backends share the traffic (the cost scorer no longer makes
the busier one look cheaper and take it all)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.gateway.conftest import MODEL, emulator, gateway, spec

MESSAGES: Any = [{"role": "user", "content": "Say something."}]


def test_two_identical_backends_share_the_traffic(client_for: Any) -> None:
    with emulator("H100-SXM", time_scale=0.05) as a, emulator("H100-SXM", time_scale=0.05) as b, \
            gateway([spec("a", a.url), spec("b", b.url)]) as gw:  # fmt: skip
        client = client_for(gw)

        def one(_: int) -> str:
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=8)
            return str(raw.headers["x-flopex-backend"])

        with ThreadPoolExecutor(8) as pool:
            chosen = Counter(pool.map(one, range(200)))
    assert sum(chosen.values()) == 200
    assert 0.35 <= chosen["a"] / 200 <= 0.65, chosen
