"""Routing policies on hand-made snapshots."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import replace

import pytest

from flopex.routing import (
    Backend,
    Policy,
    RouteRequest,
    cheapest,
    fastest,
    kv_headroom,
    least_load,
    pick_best,
    pick_two,
    pick_weighted,
    plan_share,
    prefix_affinity,
    prior,
)

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


def _candidates(policy: Policy, backends: list[Backend], rng: random.Random, req: RouteRequest = REQ) -> list[str]:
    """The ids the policy's picker is shown for one request (the picker then takes the first)."""
    shown: list[str] = []

    def first(scored: Sequence[tuple[Backend, float]], rng: random.Random) -> Backend:
        shown.extend(b.id for b, _ in scored)
        return scored[0][0]

    replace(policy, picker=first).route(backends, req, rng)
    return shown


def _pool(n: int, down: Collection[int] = (), weights: Sequence[float] = ()) -> list[Backend]:
    return [
        _b(f"b{i}", healthy=i not in down, weight=weights[i] if weights else 1.0, running=i, capacity=100)
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("n", "down", "sample", "shown"),
    [
        (10, set(), 0, 10),  # 0: every backend that passes is scored
        (10, set(), 2, 2),
        (10, set(), 5, 5),
        (10, set(), 10, 10),  # a sample as large as the pool is the whole pool
        (10, set(), 50, 10),
        (10, set(range(8)), 5, 2),  # fewer pass than the sample: all of those that pass
        (10, set(range(9)), 2, 1),  # one passes among many filtered out: still found
        (10, set(range(10)), 2, 0),  # none passes: nothing is scored and route returns None
        (1000, {1, 2, 3}, 3, 3),
    ],
)
def test_sample_scores_that_many_distinct_backends_that_pass_the_filters(
    n: int, down: set[int], sample: int, shown: int
) -> None:
    pool = _pool(n, down)
    for seed in range(20):
        ids = _candidates(Policy(sample=sample), pool, random.Random(seed))
        assert len(ids) == shown
        assert len(set(ids)) == len(ids)
        assert not {f"b{i}" for i in down} & set(ids)
    assert (Policy(sample=sample).route(pool, REQ, random.Random(0)) is None) == (shown == 0)


@pytest.mark.parametrize(
    ("weights", "down", "expected"),
    [
        ((1, 1, 1, 1), set(), (0.25, 0.25, 0.25, 0.25)),  # equal priors: uniform
        ((3, 1), set(), (0.75, 0.25)),
        ((2, 1, 1), set(), (0.5, 0.25, 0.25)),
        ((1, 0, 1), set(), (0.5, 0.0, 0.5)),  # weight 0: never while another is left
        ((0, 0, 0), set(), (1 / 3, 1 / 3, 1 / 3)),  # all 0: uniform
        ((5, 0, 0), {0}, (0.0, 0.5, 0.5)),  # weight 0 when every other backend is filtered out
        ((2, 1, 1), {0}, (0.0, 0.5, 0.5)),  # in proportion among those that pass
        ((1, -1, 1), set(), (0.5, 0.0, 0.5)),  # a negative prior counts as 0
        ((0, -1, 0), set(), (1 / 3, 1 / 3, 1 / 3)),  # ... so when none is positive, uniform
    ],
)
def test_sample_draws_in_proportion_to_the_prior_weight(
    weights: tuple[float, ...], down: set[int], expected: tuple[float, ...]
) -> None:
    pool = _pool(len(weights), down, weights)
    rng = random.Random(7)
    counts = Counter(_candidates(Policy(sample=1), pool, rng)[0] for _ in range(4000))
    for i, share in enumerate(expected):
        assert counts[f"b{i}"] / 4000 == pytest.approx(share, abs=0.03)


def test_sample_two_with_pick_best_is_power_of_two_choices() -> None:
    """The busiest backend never wins (it always meets an emptier one); the emptiest wins whenever drawn."""
    pool = _pool(8)  # b{i} runs i sequences
    rng = random.Random(1)
    wins = Counter(Policy(sample=2).route(pool, REQ, rng).id for _ in range(4000))  # type: ignore[union-attr]
    assert wins["b7"] == 0
    assert wins["b0"] / 4000 == pytest.approx(2 / 8, abs=0.03)  # drawn in 1 - (7/8)(6/7) = 1/4 of pairs
    assert wins["b0"] > wins["b1"] > wins["b2"] > wins["b6"]


@pytest.mark.parametrize(
    "policy",
    [
        Policy(),
        Policy.plan_weighted(),
        Policy(scorers=((least_load, 1.0), (prior, 0.5)), picker=pick_two),
        Policy(scorers=((least_load, 1.0),), picker=pick_weighted, prefix_weight=2.0),
    ],
)
def test_a_sample_at_least_the_pool_size_changes_nothing(policy: Policy) -> None:
    pool = _pool(6, {2}, (1, 2, 3, 4, 5, 6))
    req = RouteRequest("chat", 0, 100, prefix_key=12345)
    plain, sampled = random.Random(5), random.Random(5)
    for _ in range(200):
        assert policy.route(pool, req, plain) == replace(policy, sample=6).route(pool, req, sampled)


def test_sampling_is_deterministic_for_a_seed() -> None:
    pool = _pool(40, {3, 4}, [1 + i % 3 for i in range(40)])
    a, b = random.Random(9), random.Random(9)
    assert [Policy(sample=3).route(pool, REQ, a) for _ in range(100)] == [
        Policy(sample=3).route(pool, REQ, b) for _ in range(100)
    ]


def test_the_prefix_backend_is_always_among_the_sampled() -> None:
    pool = _pool(30)
    req = RouteRequest("chat", 0, 100, prefix_key=424242)
    policy = Policy(sample=2, prefix_weight=10.0)
    affine = Policy(prefix_weight=10.0).route(pool, req, random.Random(0))  # the bonus outweighs any load
    assert affine is not None
    rng = random.Random(2)
    for _ in range(200):
        assert affine.id in _candidates(policy, pool, rng, req)
        assert policy.route(pool, req, rng) == affine


def _reference(policy: Policy, backends: list[Backend], r: RouteRequest, rng: random.Random) -> Backend | None:
    """Routing written out backend by backend: what `Policy.route` computes, one stage at a time."""
    alive = [b for b in backends if all(f(b, r) for f in policy.filters)]
    if not alive:
        return None
    affine = prefix_affinity(alive, r) if policy.prefix_weight else None
    scored = []
    for b in alive:
        if policy.product:
            score = 1.0
            for scorer, weight in policy.scorers:
                score *= scorer(b, r) ** weight
        else:
            score = sum(weight * scorer(b, r) for scorer, weight in policy.scorers)
        scored.append((b, score + policy.prefix_weight if affine == b.id else score))
    return policy.picker(scored, rng)


@pytest.mark.parametrize(
    "policy",
    [
        Policy(),
        Policy.plan_weighted(),
        Policy(scorers=((cheapest, 0.3), (fastest, 0.2), (least_load, 0.4), (prior, 0.1)), picker=pick_two),
        Policy(scorers=((kv_headroom, 0.7), (least_load, 1.3)), product=True, picker=pick_weighted),
        Policy(scorers=((least_load, 1.0), (plan_share, 2.0)), prefix_weight=0.5),
    ],
)
def test_route_chooses_as_scoring_each_backend_in_turn_would(policy: Policy) -> None:
    gen = random.Random(11)
    for trial in range(300):
        pool = [
            _b(
                f"b{i}",
                healthy=gen.random() > 0.1,
                queued=gen.randrange(5),
                running=gen.randrange(20),
                capacity=16,
                kv_used=gen.random(),
                usd_per_token=gen.random() * 1e-6,
                ttft_s=gen.random(),
                tpot_s=gen.random() / 20,
                weight=gen.choice((0.5, 1.0, 2.0)),
                shares={("chat", 0): gen.random()},
            )  # fmt: skip
            for i in range(gen.randrange(1, 12))
        ]
        req = RouteRequest("chat", 0, 100, prefix_key=trial)
        assert policy.route(pool, req, random.Random(trial)) == _reference(policy, pool, req, random.Random(trial))
