"""What each response cost, used and emitted on the backend that served it, and each backend's books.

Every backend has a `flopex.economics.BackendMeter`. An upstream attempt starts on the meter when the gateway
sends it and ends when its answer is complete (or fails). The meter splits the backend's $/h and power among
the requests in flight by their work per engine step, and keeps the time with nothing in flight as the
backend's idle cost and energy, so that labels + unbilled + idle = the backend's $/h x the window. The label is
`flopex.economics.Label` (unit "request"), the same schema `flopex label` writes."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flopex.economics import BackendMeter, Charge, EnergyTable, Label, MeterTotals, RateCard, request_label
from flopex.gateway._backends import BackendState
from flopex.gateway._config import BackendSpec

__all__ = ["Attempt", "MeterCollector", "Metering", "idle_basis", "label_headers", "rate_card", "reservation_usd"]

_NO_IDLE_FIGURE = "idle power not known to the gateway: counted at the operating power (an upper bound)"


def rate_card(spec: BackendSpec) -> RateCard:
    """The backend's costs and power as the meter takes them. `power_w` is the facility power at the backend's
    operating point: its busy power. Idle power comes from the spec where it carries one (`idle_w`); else it is
    counted at the busy power, an upper bound, and said so."""
    if spec.hosted:
        return RateCard(
            usd_per_mtok_input=spec.usd_per_mtok_input or 0.0, usd_per_mtok_output=spec.usd_per_mtok_output,
            backend=spec.id, hardware=spec.hardware, region=spec.region, price_basis=spec.basis,
        )  # fmt: skip
    busy = spec.power_w  # None: no TDP in the catalog, and no power_w configured
    idle = _idle_w(spec)
    return RateCard(
        usd_per_hour=spec.usd_per_hour, busy_w=busy, idle_w=busy if idle is None and busy is not None else idle,
        grid_gco2e_per_kwh=spec.grid_gco2e_per_kwh, backend=spec.id, hardware=spec.hardware, region=spec.region,
        pue=spec.pue, price_basis=spec.basis,
    )  # fmt: skip


def _idle_w(spec: BackendSpec) -> float | None:
    return spec.idle_w


def idle_basis(spec: BackendSpec) -> str | None:
    """How the backend's idle power was found (None for a hosted API)."""
    if spec.hosted:
        return None
    return "the backend's idle facility power" if _idle_w(spec) is not None else _NO_IDLE_FIGURE


_MARGIN = 2.0


def reservation_usd(state: BackendState, prompt_bound: int, max_tokens: int) -> float:
    """The most a request is let to cost on this backend, reserved against budgets before it is sent.

    A hosted API: `prompt_bound` tokens at the input price and `max_tokens` at the output price. A self-hosted
    backend: twice its time alone on the backend at the slower of the predicted and the observed TTFT (scaled
    from the prediction's 1,000-token prompt) and TPOT, at the backend's $/h. A request's share of the backend
    is at most the whole backend, and is smaller when others share it; a charge above the reservation (a
    request held far longer than its speed predicts) is booked unbilled, so a hard budget is never passed."""
    s = state.spec
    if s.hosted:
        return (prompt_bound * (s.usd_per_mtok_input or 0.0) + max_tokens * (s.usd_per_mtok_output or 0.0)) / 1e6
    ttft = max(state.ttft, s.ttft_s) * max(1.0, prompt_bound / 1000)
    tpot = max(state.tpot, s.tpot_s)
    return _MARGIN * s.usd_per_hour / 3600 * (ttft + max_tokens * tpot)


class Attempt:
    """One upstream attempt on the meter of its backend."""

    __slots__ = ("metering", "spec", "key", "charge")

    def __init__(self, metering: Metering, spec: BackendSpec, key: int) -> None:
        self.metering = metering
        self.spec = spec
        self.key = key
        self.charge: Charge | None = None

    def first_token(self) -> None:
        if self.charge is None:
            self.metering.meters[self.spec.id].first_token(self.key, self.metering.clock())

    def end(self, billed: bool, prompt_tokens: int = 0, completion_tokens: int = 0) -> Charge:
        """The attempt leaves the backend (once; later calls return the same charge)."""
        if self.charge is None:
            meter = self.metering.meters[self.spec.id]
            self.charge = meter.finish(self.key, self.metering.clock(), prompt_tokens, completion_tokens, billed=billed)
        return self.charge

    def label(self, prompt_tokens: int, completion_tokens: int, counted: str) -> Label:
        """Ends the attempt as billed (if it has not ended) and labels it."""
        charge = self.end(True, prompt_tokens, completion_tokens)
        return self.metering.label(self.spec, charge, prompt_tokens, completion_tokens, counted)


class Metering:
    """The meters of every backend of one gateway, on one clock."""

    def __init__(
        self, specs: Iterable[BackendSpec], energy: EnergyTable | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:  # fmt: skip
        self.clock = clock
        t0 = clock()
        self.specs = {s.id: s for s in specs}
        self.meters = {s.id: BackendMeter(rate_card(s), t0) for s in self.specs.values()}
        self.energy = energy
        self._bands = None if energy is None else energy.grades["1k_output_tokens"]
        self._uncertainty = None if energy is None else energy.power.uncertainty_pct.value
        self._keys = itertools.count()
        self._second, self._stamp = 0, ""

    def begin(self, state: BackendState, prompt_tokens: int, streamed: bool, cap_usd: float | None = None) -> Attempt:
        """An attempt goes to `state`'s backend now. A streamed answer's first token is observed; one that is not
        streamed is taken to come at the backend's moving-average TTFT."""
        attempt = Attempt(self, state.spec, next(self._keys))
        now = self.clock()
        first = None if streamed else now + state.ttft
        self.meters[state.spec.id].start(attempt.key, now, prompt_tokens, first_token_at=first, cap_usd=cap_usd)
        return attempt

    def label(self, spec: BackendSpec, charge: Charge, prompt: int, completion: int, counted: str) -> Label:
        return request_label(
            charge, self.meters[spec.id].card, prompt, completion, counted, bands=self._bands,
            uncertainty_pct=self._uncertainty, generated=self._now(),
        )  # fmt: skip

    def _now(self) -> str:
        """The time a label is generated, to the second (written once a second, not once an answer)."""
        second = int(time.time())
        if second != self._second:
            self._second, self._stamp = second, datetime.fromtimestamp(second, UTC).isoformat()
        return self._stamp

    def totals(self) -> dict[str, MeterTotals]:
        now = self.clock()
        return {bid: m.totals(now) for bid, m in self.meters.items()}

    def view(self, backend_id: str) -> dict[str, Any]:
        """A backend's books for the admin API."""
        t = self.meters[backend_id].totals(self.clock())
        return {**t.__dict__, "idle_power_basis": idle_basis(self.specs[backend_id])}


def label_headers(label: Label) -> dict[str, str]:
    out = {"x-flopex-backend": str(label.backend), "x-flopex-cost-usd": f"{label.cost_usd:.6g}"}
    if label.energy_wh_facility is not None:
        out["x-flopex-energy-wh"] = f"{label.energy_wh_facility:.6g}"
    if label.co2e_g_operational is not None:
        out["x-flopex-co2e-g"] = f"{label.co2e_g_operational:.6g}"
    return out


_SERIES: Mapping[str, tuple[str, str]] = {  # MeterTotals field -> (metric, help)
    "backend_usd": ("flopex_backend_cost_usd", "The backend's cost over the gateway's life: its $/h x the time"),
    "labelled_usd": ("flopex_backend_labelled_usd", "Cost charged to answers' labels"),
    "unbilled_usd": ("flopex_backend_unbilled_usd", "Cost of failed attempts and of shares above a reservation"),
    "idle_usd": ("flopex_backend_idle_usd", "Cost of the time with nothing in flight"),
    "backend_wh": ("flopex_backend_energy_wh", "The backend's facility energy: busy power in use, idle power idle"),
    "labelled_wh": ("flopex_backend_labelled_energy_wh", "Energy charged to answers' labels"),
    "unbilled_wh": ("flopex_backend_unbilled_energy_wh", "Energy of failed attempts"),
    "idle_wh": ("flopex_backend_idle_energy_wh", "Energy of the time with nothing in flight"),
    "idle_s": ("flopex_backend_idle_seconds", "Time with nothing in flight"),
}


class MeterCollector(Collector):
    """Each backend's books on /metrics, read from the meters when scraped (idle time accrues between
    requests, so these are not counters incremented per request). Unknown energy is left out."""

    def __init__(self, metering: Metering) -> None:
        self.metering = metering

    def collect(self) -> Iterator[Metric]:
        totals = self.metering.totals()
        for field, (name, text) in _SERIES.items():
            family = CounterMetricFamily(name, text, labels=["backend"])
            for bid, t in totals.items():
                value = getattr(t, field)
                if value is not None:
                    family.add_metric([bid], value)
            yield family
        in_flight = GaugeMetricFamily(
            "flopex_backend_in_flight_usd", "Cost accrued by requests still in flight", labels=["backend"]
        )
        for bid, t in totals.items():
            in_flight.add_metric([bid], t.in_flight_usd)
        yield in_flight
