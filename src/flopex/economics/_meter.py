"""The meter of one backend: what each request it serves costs, uses and emits, such that the books balance.

A self-hosted backend costs its $/h and draws its facility power whether or not it is busy. Between two events
(a request starts, produces its first token, or finishes) the cost rate and the busy power are split among
the requests in flight in proportion to the work each does per engine step: a prompt being prefilled counts
its prompt tokens, an answer being decoded one token per step. A long prompt therefore costs more than a short
one with the same answer, and a request alone on the backend pays for all the time it holds it. Time with
nothing in flight is the backend's idle cost and idle energy, kept apart. By construction, over any window,

    labelled + unbilled + idle + (still in flight) = $/h x window     (and likewise energy)

where `unbilled` is the share of attempts that failed and of charges above a caller's cap. A hosted API is
priced per token (prompt x input price + answer x output price) and publishes no energy.

The meter is pure: the caller passes the clock's readings. Each request's share is kept as the difference of
a running "cost per unit of work" integral between the times its weight changes, so an event costs O(log n).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

__all__ = ["ENERGY_HOSTED", "BackendMeter", "Charge", "MeterTotals", "RateCard"]

ENERGY_HOSTED = "the provider publishes no energy"
_NO_GRID = "the backend's grid carbon intensity is unknown"

FirstToken = Literal["observed", "estimated", "none"]


@dataclass(frozen=True)
class RateCard:
    """What one backend costs and draws. `busy_w` is facility power with any request in flight (at the batch
    it runs), `idle_w` with none; None where unknown. A hosted API has per-token prices and no power."""

    usd_per_hour: float = 0.0
    busy_w: float | None = None
    idle_w: float | None = None
    grid_gco2e_per_kwh: float | None = None
    usd_per_mtok_input: float | None = None
    usd_per_mtok_output: float | None = None
    energy_unknown: str = "no power figure for this backend (no TDP in the catalog, or no power_w configured)"
    # what the label says about the backend (the meter does not need these)
    backend: str | None = None
    hardware: str | None = None
    region: str | None = None
    pue: float | None = None
    price_basis: str = ""

    @property
    def hosted(self) -> bool:
        return self.usd_per_mtok_output is not None

    @property
    def usd_per_s(self) -> float:
        return 0.0 if self.hosted else self.usd_per_hour / 3600


@dataclass(frozen=True)
class Charge:
    """One request's bill on one backend. `wh` and `co2e_g` are None where unknown, with the reason."""

    usd: float
    wh: float | None
    co2e_g: float | None
    energy_unknown: str | None
    co2e_unknown: str | None
    held_s: float  # seconds in flight on the backend
    prefill_s: float  # of which before its first token (counted at its prompt's weight)
    backend_s: float  # its share in seconds of the whole backend (usd / the backend's $/s); 0 for a hosted API
    first_token: FirstToken
    prompt_weight: int = 0  # the prompt tokens its prefill was weighted by (the caller's estimate at its start)
    over_cap_usd: float = 0.0  # its share above the caller's cap, not charged (booked as unbilled)


@dataclass(frozen=True)
class MeterTotals:
    """A backend's books from the meter's start to `t`. For a self-hosted backend,
    `labelled_usd + unbilled_usd + idle_usd + in_flight_usd == backend_usd` (energy likewise, where known)."""

    window_s: float
    backend_usd: float
    labelled_usd: float
    unbilled_usd: float
    idle_usd: float
    in_flight_usd: float
    backend_wh: float | None
    labelled_wh: float | None
    unbilled_wh: float | None
    idle_wh: float | None
    in_flight_wh: float | None
    busy_s: float
    idle_s: float
    requests: int  # finished, billed or not
    in_flight: int


class _Held:
    """A request in flight: its weight now, where the integrals stood when that weight began, what it has
    accrued at earlier weights."""

    __slots__ = ("weight", "prompt", "usd0", "wh0", "usd", "wh", "started", "first", "cap", "estimated")

    def __init__(self, weight: float, usd0: float, wh0: float, started: float, cap: float | None) -> None:
        self.weight = weight
        self.prompt = int(weight)
        self.usd0 = usd0
        self.wh0 = wh0
        self.usd = 0.0
        self.wh = 0.0
        self.started = started
        self.first: float | None = None
        self.cap = cap
        self.estimated = False


class BackendMeter:
    """Cost, energy and carbon of the requests on one backend, from the events the caller reports."""

    def __init__(self, card: RateCard, t0: float) -> None:
        self.card = card
        self._usd_per_s = card.usd_per_s
        self.t0 = t0
        self._t = t0
        self._held: dict[Hashable, _Held] = {}
        self._weight = 0.0
        self._usd_per_w = 0.0  # running integral of cost per unit of weight (rebased when nothing is in flight)
        self._wh_per_w = 0.0
        self._switches: list[tuple[float, int, Hashable]] = []  # scheduled first tokens (not streamed)
        self._order = itertools.count()
        self._busy_s = self._idle_s = 0.0
        self._labelled_usd = self._unbilled_usd = self._labelled_wh = self._unbilled_wh = 0.0
        self._requests = 0

    # --- events ---------------------------------------------------------------------------------------------
    def start(
        self,
        rid: Hashable,
        t: float,
        prompt_tokens: int,
        *,
        first_token_at: float | None = None,
        cap_usd: float | None = None,
    ) -> None:
        """A request goes to the backend at `t`, with about `prompt_tokens` to prefill. `first_token_at`: when
        its first token will be taken to come where it cannot be observed (an answer that is not streamed).
        `cap_usd`: the most it may be charged (its share above it is booked as unbilled)."""
        if rid in self._held:
            raise ValueError(f"request {rid!r} is already in flight on this backend")
        self._advance(t)
        weight = float(max(prompt_tokens, 1))
        self._held[rid] = _Held(weight, self._usd_per_w, self._wh_per_w, self._t, cap_usd)
        self._weight += weight
        if first_token_at is not None:
            heapq.heappush(self._switches, (max(first_token_at, self._t), next(self._order), rid))
            self._held[rid].estimated = True

    def first_token(self, rid: Hashable, t: float) -> None:
        """The request's first token came at `t`: from now on it counts one token per step."""
        self._advance(t)
        self._switch(rid)

    def finish(
        self, rid: Hashable, t: float, prompt_tokens: int = 0, completion_tokens: int = 0, *, billed: bool = True
    ) -> Charge:
        """The request leaves the backend at `t`. The token counts price a hosted API; `billed=False` (a failed
        attempt) books its share as unbilled."""
        self._advance(t)
        h = self._held.pop(rid)
        h.usd += h.weight * (self._usd_per_w - h.usd0)
        h.wh += h.weight * (self._wh_per_w - h.wh0)
        self._weight -= h.weight
        if not self._held:
            self._weight = self._usd_per_w = self._wh_per_w = 0.0  # rebase: no request holds a reading
            self._switches.clear()
        self._requests += 1
        charge = self._charge(h, prompt_tokens, completion_tokens)
        if billed:
            self._labelled_usd += charge.usd
            self._unbilled_usd += charge.over_cap_usd
            self._labelled_wh += charge.wh or 0.0
        else:
            self._unbilled_usd += charge.usd + charge.over_cap_usd
            self._unbilled_wh += charge.wh or 0.0
        return charge

    def totals(self, t: float) -> MeterTotals:
        """The books up to `t` (the meter advances to it)."""
        self._advance(t)
        card = self.card
        in_usd = sum(h.usd + h.weight * (self._usd_per_w - h.usd0) for h in self._held.values())
        in_wh = sum(h.wh + h.weight * (self._wh_per_w - h.wh0) for h in self._held.values())
        window = self._t - self.t0
        busy_known = card.busy_w is not None and not card.hosted
        idle_wh = None if card.idle_w is None or card.hosted else card.idle_w * self._idle_s / 3600
        backend_wh = None
        if busy_known and idle_wh is not None:
            assert card.busy_w is not None
            backend_wh = card.busy_w * self._busy_s / 3600 + idle_wh
        return MeterTotals(
            window_s=window,
            backend_usd=card.usd_per_s * window if not card.hosted else self._labelled_usd + self._unbilled_usd,
            labelled_usd=self._labelled_usd,
            unbilled_usd=self._unbilled_usd,
            idle_usd=card.usd_per_s * self._idle_s,
            in_flight_usd=in_usd,
            backend_wh=backend_wh,
            labelled_wh=self._labelled_wh if busy_known else None,
            unbilled_wh=self._unbilled_wh if busy_known else None,
            idle_wh=idle_wh,
            in_flight_wh=in_wh if busy_known else None,
            busy_s=self._busy_s,
            idle_s=self._idle_s,
            requests=self._requests,
            in_flight=len(self._held),
        )

    @property
    def in_flight(self) -> int:
        return len(self._held)

    # --- inside ---------------------------------------------------------------------------------------------
    def _advance(self, t: float) -> None:
        """Move the clock to `t` (never backwards), applying the scheduled first tokens on the way."""
        while self._switches and self._switches[0][0] <= t:
            at, _, rid = heapq.heappop(self._switches)
            self._run_to(at)
            self._switch(rid)
        self._run_to(t)

    def _run_to(self, t: float) -> None:
        dt = t - self._t
        if dt <= 0:
            return
        self._t = t
        if not self._held:
            self._idle_s += dt
            return
        self._busy_s += dt
        self._usd_per_w += self._usd_per_s * dt / self._weight
        if self.card.busy_w is not None:
            self._wh_per_w += self.card.busy_w * dt / 3600 / self._weight

    def _switch(self, rid: Hashable) -> None:
        """Prefill to decode: from the current time the request weighs one token per step."""
        h = self._held.get(rid)
        if h is None or h.first is not None:
            return  # finished before its scheduled first token, or already switched
        h.usd += h.weight * (self._usd_per_w - h.usd0)
        h.wh += h.weight * (self._wh_per_w - h.wh0)
        h.usd0, h.wh0 = self._usd_per_w, self._wh_per_w
        self._weight += 1.0 - h.weight
        h.weight = 1.0
        h.first = self._t

    def _charge(self, h: _Held, prompt_tokens: int, completion_tokens: int) -> Charge:
        card = self.card
        held = self._t - h.started
        prefill = (h.first if h.first is not None else self._t) - h.started
        first: FirstToken = "none" if h.first is None else ("estimated" if h.estimated else "observed")
        if card.hosted:
            per_in, per_out = card.usd_per_mtok_input or 0.0, card.usd_per_mtok_output or 0.0
            usd = (prompt_tokens * per_in + completion_tokens * per_out) / 1e6
            return Charge(usd, None, None, ENERGY_HOSTED, ENERGY_HOSTED, held, prefill, 0.0, first, h.prompt)
        usd = max(h.usd, 0.0)
        over = 0.0
        if h.cap is not None and usd > h.cap:
            usd, over = h.cap, usd - h.cap
        wh = None if card.busy_w is None else max(h.wh, 0.0)
        energy_unknown = card.energy_unknown if wh is None else None
        co2e = None if wh is None or card.grid_gco2e_per_kwh is None else wh / 1000 * card.grid_gco2e_per_kwh
        co2e_unknown = energy_unknown if wh is None else (_NO_GRID if co2e is None else None)
        share = (usd + over) / card.usd_per_s if card.usd_per_s > 0 else 0.0
        return Charge(usd, wh, co2e, energy_unknown, co2e_unknown, held, prefill, share, first, h.prompt, over)
