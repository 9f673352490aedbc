"""The gateway's pool under its default routing: traffic follows the configured shares and does not pile onto
one backend."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from flopex.gateway import Pool
from flopex.gateway._config import ModelRoute
from tests.gateway.conftest import MODEL, spec


@pytest.mark.parametrize("in_flight_cap", [4, 64])
def test_two_identical_backends_share_the_traffic_under_the_default_routing(in_flight_cap: int) -> None:
    pool = Pool.of(MODEL, [spec("a", "http://a"), spec("b", "http://b")], ModelRoute())
    rng = random.Random(3)
    chosen: Counter[str] = Counter()
    live = []
    for _ in range(4000):
        state = pool.choose(pool.request(200, 0, None), set(), rng, 0.0)
        assert state is not None
        state.in_flight += 1
        live.append(state)
        chosen[state.spec.id] += 1
        while len(live) >= in_flight_cap:  # a request finishes, at random
            live.pop(rng.randrange(len(live))).in_flight -= 1
    assert 0.45 < chosen["a"] / 4000 < 0.55


def test_a_backend_with_twice_the_weight_gets_about_twice_the_traffic() -> None:
    heavy = replace(spec("heavy", "http://a"), shares=(2 / 3,))
    light = replace(spec("light", "http://b"), shares=(1 / 3,))
    pool = Pool.of(MODEL, [heavy, light], ModelRoute())
    rng = random.Random(4)
    chosen: Counter[str] = Counter()
    for _ in range(6000):
        state = pool.choose(pool.request(200, 0, None), set(), rng, 0.0)
        assert state is not None
        chosen[state.spec.id] += 1
    assert 1.8 < chosen["heavy"] / chosen["light"] < 2.2
