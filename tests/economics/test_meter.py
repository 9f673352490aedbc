"""The backend meter: a request's share of its backend's cost and energy, and books that balance."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopex.catalog import load_catalog
from flopex.economics import ENERGY_HOSTED, BackendMeter, Charge, RateCard, load_energy_table, quote
from flopex.perf import load_efficiency
from flopex.workloads import ChatWorkload, load_workload_text

H100 = RateCard(usd_per_hour=3.6, busy_w=1000.0, idle_w=250.0, grid_gco2e_per_kwh=400.0)  # $0.001 a second


def test_a_request_alone_pays_all_the_time_it_holds_the_backend_and_idle_is_apart() -> None:
    m = BackendMeter(H100, 0.0)
    m.start("a", 1.0, 50)
    m.first_token("a", 1.5)
    c = m.finish("a", 4.0, 50, 100)
    assert c.usd == pytest.approx(0.003) and c.backend_s == pytest.approx(3.0)
    assert c.wh == pytest.approx(1000 * 3 / 3600) and c.co2e_g == pytest.approx(1000 * 3 / 3600 / 1000 * 400)
    assert c.held_s == pytest.approx(3.0) and c.prefill_s == pytest.approx(0.5) and c.first_token == "observed"
    t = m.totals(10.0)
    assert t.idle_s == pytest.approx(7.0) and t.idle_usd == pytest.approx(0.007)
    assert t.idle_wh == pytest.approx(250 * 7 / 3600)
    assert t.labelled_usd + t.idle_usd == pytest.approx(t.backend_usd) == pytest.approx(0.010)
    assert t.labelled_wh is not None and t.idle_wh is not None
    assert t.labelled_wh + t.idle_wh == pytest.approx(t.backend_wh)


def test_a_long_prompt_costs_more_than_a_short_one_with_the_same_answer() -> None:
    """Both start together, take their first token at 1 s and finish at 3 s: while prefilled the long one does
    10,000 tokens of work per step to the short one's 10."""
    m = BackendMeter(H100, 0.0)
    m.start("long", 0.0, 10_000)
    m.start("short", 0.0, 10)
    m.first_token("long", 1.0)
    m.first_token("short", 1.0)
    long, short = m.finish("long", 3.0), m.finish("short", 3.0)
    assert long.usd == pytest.approx(0.001 * (10_000 / 10_010 + 0.5 * 2))
    assert short.usd == pytest.approx(0.001 * (10 / 10_010 + 0.5 * 2))
    assert long.usd > 1.4 * short.usd
    assert long.usd + short.usd == pytest.approx(0.003)


def test_an_answer_not_streamed_switches_at_the_given_first_token_time() -> None:
    m = BackendMeter(H100, 0.0)
    m.start("a", 0.0, 1000, first_token_at=0.5)
    m.start("b", 0.0, 1)
    m.first_token("b", 0.0)
    a = m.finish("a", 2.0)
    b = m.finish("b", 2.0)
    assert a.first_token == "estimated" and a.prefill_s == pytest.approx(0.5)
    assert a.usd == pytest.approx(0.001 * (0.5 * 1000 / 1001 + 1.5 / 2))
    assert a.usd + b.usd == pytest.approx(0.002)
    m.start("c", 3.0, 10, first_token_at=9.0)  # finished before its estimated first token: prefill throughout
    c = m.finish("c", 4.0)
    assert c.first_token == "none" and c.prefill_s == pytest.approx(1.0)


def test_a_hosted_api_charges_list_prices_and_knows_no_energy() -> None:
    api = RateCard(usd_per_mtok_input=0.1, usd_per_mtok_output=0.3)
    m = BackendMeter(api, 0.0)
    m.start("chat", 0.0, 1000)
    m.start("embedding", 0.0, 500)
    chat = m.finish("chat", 1.0, 1000, 200)
    embedding = m.finish("embedding", 1.0, 500, 0)
    assert chat.usd == pytest.approx((1000 * 0.1 + 200 * 0.3) / 1e6)
    assert embedding.usd == pytest.approx(500 * 0.1 / 1e6)  # embeddings pay their input price
    assert chat.wh is None and chat.co2e_g is None and chat.energy_unknown == chat.co2e_unknown == ENERGY_HOSTED
    t = m.totals(5.0)
    assert t.idle_usd == 0 and t.backend_usd == pytest.approx(chat.usd + embedding.usd) and t.backend_wh is None


def test_unknown_power_and_grid_stay_unknown_with_a_reason() -> None:
    m = BackendMeter(RateCard(usd_per_hour=1.0, busy_w=None), 0.0)
    m.start("a", 0.0, 1)
    c = m.finish("a", 1.0)
    assert c.wh is None and c.co2e_g is None and c.energy_unknown and c.co2e_unknown
    m = BackendMeter(RateCard(usd_per_hour=1.0, busy_w=500.0), 0.0)
    m.start("a", 0.0, 1)
    c = m.finish("a", 1.0)
    assert c.wh == pytest.approx(500 / 3600) and c.co2e_g is None and c.co2e_unknown and not c.energy_unknown


def test_failed_attempts_and_shares_over_a_cap_are_booked_unbilled() -> None:
    m = BackendMeter(H100, 0.0)
    m.start("failed", 0.0, 10)
    failed = m.finish("failed", 1.0, billed=False)
    m.start("capped", 1.0, 10, cap_usd=0.0005)
    capped = m.finish("capped", 2.0)
    assert capped.usd == pytest.approx(0.0005) and capped.over_cap_usd == pytest.approx(0.0005)
    t = m.totals(2.0)
    assert t.labelled_usd == pytest.approx(0.0005)
    assert t.unbilled_usd == pytest.approx(failed.usd + 0.0005) == pytest.approx(0.0015)
    assert t.labelled_usd + t.unbilled_usd + t.idle_usd == pytest.approx(t.backend_usd)


def test_a_request_cannot_start_twice() -> None:
    m = BackendMeter(H100, 0.0)
    m.start("a", 0.0, 1)
    with pytest.raises(ValueError, match="already in flight"):
        m.start("a", 0.1, 1)


# --- properties over random event sequences ---------------------------------------------------------------

_Event = tuple[float, int, int, float, float]  # start time, prompt tokens, streamed?, prefill s, decode s


def _replay(
    events: list[_Event], card: RateCard, prompts: dict[int, int] | None = None
) -> tuple[BackendMeter, list[Charge]]:
    """Every request of `events` through one meter, in time order: the meter, and each request's charge."""
    timeline: list[tuple[float, int, str, int]] = []  # (time, order, kind, request)
    for i, (start, _, _, prefill, decode) in enumerate(events):
        timeline += [(start, 0, "start", i), (start + prefill, 1, "first", i), (start + prefill + decode, 2, "end", i)]
    m = BackendMeter(card, 0.0)
    charges: dict[int, Charge] = {}
    for t, _, kind, i in sorted(timeline):
        _, prompt, streamed, prefill, _ = events[i]
        prompt = (prompts or {}).get(i, prompt)
        if kind == "start":
            m.start(i, t, prompt, first_token_at=None if streamed else t + prefill)
        elif kind == "first" and streamed:
            m.first_token(i, t)
        elif kind == "end":
            charges[i] = m.finish(i, t, prompt, 10)
    return m, [charges[i] for i in range(len(events))]


def _seconds(high: float) -> st.SearchStrategy[float]:
    """A time as a clock gives it: none, or at least a nanosecond (a float near 1e-308 s leaves products that
    fall below the smallest normal float, where no sum keeps 12 digits)."""
    return st.one_of(st.just(0.0), st.floats(1e-9, high, allow_nan=False))


_events = st.lists(
    st.tuples(_seconds(100), st.integers(1, 20_000), st.integers(0, 1), _seconds(10), _seconds(30)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_events, st.floats(0.01, 100), st.floats(0, 2000), st.floats(0, 500))
def test_labels_plus_idle_are_the_backends_cost_and_energy(
    events: list[_Event], usd_per_hour: float, busy_w: float, idle_w: float
) -> None:
    card = RateCard(usd_per_hour=usd_per_hour, busy_w=busy_w, idle_w=idle_w, grid_gco2e_per_kwh=300.0)
    m, charges = _replay(events, card)
    assert all(c.usd >= 0 and c.wh is not None and c.wh >= 0 for c in charges)
    end = max(s + p + d for s, _, _, p, d in events) + 5.0
    t = m.totals(end)
    assert t.in_flight == 0 and t.in_flight_usd == 0
    assert sum(c.usd for c in charges) == pytest.approx(t.labelled_usd, rel=1e-12)
    assert t.labelled_usd + t.idle_usd == pytest.approx(usd_per_hour / 3600 * end, rel=1e-9)
    assert t.backend_wh is not None and t.labelled_wh is not None and t.idle_wh is not None
    assert t.labelled_wh + t.idle_wh == pytest.approx(t.backend_wh, rel=1e-9, abs=1e-12)
    assert t.busy_s + t.idle_s == pytest.approx(end, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(_events, st.data())
def test_a_longer_prompt_with_the_same_answer_and_timing_never_costs_less(
    events: list[_Event], data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(events) - 1))
    longer = events[i][1] + data.draw(st.integers(1, 50_000))
    _, before = _replay(events, H100)
    _, after = _replay(events, H100, {i: longer})
    # the meter sums times up to `end` s in floating point: each sum may be off by about end x 1e-16 s
    end = max(s + p + d for s, _, _, p, d in events)
    slack = H100.usd_per_hour / 3600 * end * 1e-12
    assert after[i].usd >= before[i].usd - slack


def test_a_float_sums_rounding_is_within_the_slack_and_no_more() -> None:
    """The case that found the slack: a 62-token longer prompt, cheaper by 7e-17 USD from rounding alone."""
    events: list[_Event] = [(0.0, 1, 0, 0.0, 16.0), (16.0, 2, 0, 0.03125, 0.0)]
    _, before = _replay(events, H100)
    _, after = _replay(events, H100, {1: 64})
    assert before[1].usd - after[1].usd < H100.usd_per_hour / 3600 * 16.03125 * 1e-12


# --- the quote prices what the meter charges at full steady load ------------------------------------------


def _chat(rate: float) -> ChatWorkload:
    text = (
        f"name: w\nkind: chat\nmodel: llama-3.1-8b\ntraffic: {{requests_per_s: {rate!r}, input_tokens: 1000, "
        "output_tokens: 200}\nslo: {ttft_p99_s: 2.0, tpot_p99_s: 0.2}\n"
    )
    w = load_workload_text(Path("w.yaml"), text)
    assert isinstance(w, ChatWorkload)
    return w


def test_the_quotes_cost_per_token_at_full_load_is_what_the_meter_charges() -> None:
    """A group kept busy at exactly its capacity: the quote's $/1M output tokens (load 1, so no idle headroom)
    is the meter's charge per request over its answer's tokens."""
    catalog, eff, energy = load_catalog(), load_efficiency(), load_energy_table()
    first = next(r for r in quote(_chat(1.0), catalog, eff, energy).rows if r.source == "offer")
    capacity = float(first.detail["group_requests_per_s"])
    row = next(r for r in quote(_chat(capacity), catalog, eff, energy).rows if r.offer_id == first.offer_id)
    assert row.load == pytest.approx(1.0) and row.instances == row.instances_per_group
    ttft = float(row.detail["ttft_p99_s"])
    held = ttft + 200 * float(row.detail["tpot_p99_s"])
    assert held * capacity > 1  # always something in flight: no idle time
    m = BackendMeter(RateCard(usd_per_hour=row.usd_per_hour, busy_w=1.0), 0.0)
    gap, n = 1 / capacity, 2000
    ends: list[tuple[float, int]] = []  # (finish time, request), in order
    steady: list[float] = []
    for k in range(n):  # identical requests, one every 1/capacity seconds
        t = k * gap
        while ends and ends[0][0] <= t:
            end, j = ends.pop(0)
            charge = m.finish(j, end)
            if n // 4 < j < 3 * n // 4:
                steady.append(charge.usd)
        m.start(k, t, 1000, first_token_at=t + ttft)
        ends.append((t + held, k))
    meter_usd_per_mtok = sum(steady) / len(steady) / 200 * 1e6
    assert meter_usd_per_mtok == pytest.approx(row.usd_per_unit, rel=1e-6)
