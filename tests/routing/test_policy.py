"""Routing policies on hand-made snapshots."""

from __future__ import annotations

import random

import pytest

from flopex.routing import Backend, Policy, RouteRequest, pick_best

REQ = RouteRequest("chat", 0, 100)


def _b(bid: str, **kw: object) -> Backend:
    fields: dict[str, object] = {"group": "g", "workloads": frozenset({"chat"})}
    fields.update(kw)
    return Backend(id=bid, **fields)  # type: ignore[arg-type]


def test_filters_drop_unhealthy_and_foreign_backends() -> None:
    backends = [_b("a", healthy=False), _b("b", workloads=frozenset({"code"})), _b("c")]
    assert Policy.least_loaded().route(backends, REQ, random.Random(0)) == backends[2]
    assert Policy.least_loaded().route(backends[:2], REQ, random.Random(0)) is None


def test_least_load_prefers_the_emptier_backend_and_ties_go_to_the_first_id() -> None:
    busy, idle = _b("a", queued=3, running=5, capacity=10), _b("b", running=1, capacity=10)
    assert Policy.least_loaded().route([busy, idle], REQ, random.Random(0)) == idle
    assert Policy.least_loaded().route([_b("z"), _b("y")], REQ, random.Random(0)).id == "y"  # type: ignore[union-attr]


def test_plan_weighted_follows_the_plan_shares() -> None:
    a = _b("a", shares={("chat", 0): 0.75}, capacity=100)
    b = _b("b", shares={("chat", 0): 0.25}, capacity=100)
    rng = random.Random(3)
    picks = [Policy.plan_weighted().route([a, b], REQ, rng) for _ in range(4000)]
    share = sum(p is a for p in picks) / len(picks)
    assert 0.72 < share < 0.78
    # a backend the plan gives nothing never gets the bucket while another has a share
    c = _b("c", shares={("chat", 1): 1.0})
    assert all(Policy.plan_weighted().route([a, c], REQ, rng) is a for _ in range(200))


@pytest.mark.parametrize(
    ("scored", "best"),
    [
        ([("a", 1.0), ("ab", 1.0)], "a"),  # a prefix sorts first in plain string order
        ([("ab", 1.0), ("a", 1.0)], "a"),
        ([("r10", 0.5), ("r1", 0.5), ("r2", 0.5)], "r1"),
        ([("B", 0.0), ("a", 0.0)], "B"),  # code-point order: upper case before lower case
        ([("b", 0.2), ("a", 0.1)], "b"),  # no tie: the higher score whatever its id
        ([("z", -1.0), ("y", -2.0), ("x", -1.0)], "x"),
        ([("only", 0.0)], "only"),
    ],
)
def test_pick_best_takes_the_highest_score_and_breaks_ties_by_lowest_id(
    scored: list[tuple[str, float]], best: str
) -> None:
    assert pick_best([(_b(bid), s) for bid, s in scored], random.Random(0)).id == best
