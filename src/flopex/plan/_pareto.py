"""Cost against carbon: the Pareto frontier of a plan's fleet with the plan itself marked on it, and an SVG
of the frontier.

Every point of the sweep is a plan under the plan's own rules (domains, spot floor and zone share,
capacities, power budgets, its carbon cap) that counts all of its carbon: it prices carbon (at a token
$1e-6/t for the cheapest plan, $1e6/t for the lowest-carbon one, and a token price under seven caps between
them), which leaves out offers without published power and hosted APIs without a carbon factor. Where the
plan prices no carbon and sends nothing where carbon is unknown, the plan is the cheapest such plan, so it is
the cheapest point itself (not a re-solve, which could land elsewhere within the solver's gap). Otherwise the
plan is a point of its own, and a note says why it is not the cheapest point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from flopex.plan._milp import solve
from flopex.plan._model import Solution

if TYPE_CHECKING:
    from flopex.plan._plan import Plan

__all__ = ["ParetoPoint", "pareto", "pareto_svg"]

_TOKEN_PRICE = 1e-6  # $/t: enough to count carbon (and leave out what has none), too little to change a plan
_GREEN_PRICE = 1e6  # $/t: the lowest-carbon plan


@dataclass(frozen=True)
class ParetoPoint:
    carbon_price_usd_per_t: float
    usd_per_hour: float
    carbon_kg_per_hour: float
    carbon_cap_kg_per_hour: float | None = None
    this_plan: bool = False  # the plan `flopex plan` printed
    carbon_unknown_share: float = 0.0  # traffic sent where carbon is unknown, not in carbon_kg_per_hour
    note: str = ""  # for the plan where it is not on the frontier: why

    @property
    def counted(self) -> bool:
        """Whether all of the point's carbon is counted (every point of the sweep; the plan's where it sends
        nothing to offers without energy figures)."""
        return self.carbon_unknown_share <= 1e-9

    def to_json(self) -> dict[str, Any]:
        return {
            "usd_per_hour": self.usd_per_hour,
            "carbon_kg_per_hour": self.carbon_kg_per_hour,
            "carbon_price_usd_per_t": self.carbon_price_usd_per_t,
            "carbon_cap_kg_per_hour": self.carbon_cap_kg_per_hour,
            "this_plan": self.this_plan,
            "carbon_unknown_share": self.carbon_unknown_share,
            "note": self.note or None,
        }


def _point(s: Solution, price: float, cap_g: float | None, this_plan: bool = False) -> ParetoPoint:
    cap = None if cap_g is None else cap_g / 1000
    return ParetoPoint(price, s.usd_per_hour, s.carbon_g_per_hour / 1000, cap, this_plan, s.carbon_unknown_share)


def pareto(plan: Plan, steps: int = 8) -> list[ParetoPoint]:
    """The plans no other plan of the sweep beats on both cost and carbon, dearest first, with the plan itself
    among them (marked `this_plan`; with a note where it is not on the frontier)."""
    s, options = plan.solution, plan.options
    if not s.feasible:
        return []
    cap = options.carbon_cap_g_per_hour
    mine = _point(s, options.carbon_price_usd_per_t, cap, this_plan=True)
    points: list[ParetoPoint] = [mine] if mine.counted else []

    def run(price: float, cap_g: float | None) -> Solution:
        swept = replace(options, carbon_price_usd_per_t=price, carbon_cap_g_per_hour=cap_g)
        solution = solve(plan.inputs.candidates, plan.inputs.demands, swept, plan.inputs.hosted)
        if solution.feasible:
            points.append(_point(solution, price, cap_g))
        return solution

    cheapest = s if mine.counted and options.carbon_price_usd_per_t == 0 else run(_TOKEN_PRICE, cap)
    greenest = run(_GREEN_PRICE, cap)
    if cheapest.feasible and greenest.feasible and cheapest.carbon_g_per_hour > greenest.carbon_g_per_hour:
        lo, hi = greenest.carbon_g_per_hour, cheapest.carbon_g_per_hour
        for k in range(1, steps):
            run(_TOKEN_PRICE, lo + (hi - lo) * k / steps)
    front = _front(points)
    if not any(p.this_plan for p in front):
        front.append(replace(mine, note=_apart(mine, front)))
    return sorted(front, key=lambda p: (-p.usd_per_hour, p.carbon_kg_per_hour))


def _front(points: list[ParetoPoint]) -> list[ParetoPoint]:
    """The points no other beats on both axes, one per (cost, carbon), the plan's kept where it ties."""

    def beats(q: ParetoPoint, p: ParetoPoint) -> bool:
        return (q.usd_per_hour <= p.usd_per_hour + 1e-9 and q.carbon_kg_per_hour < p.carbon_kg_per_hour - 1e-9) or (
            q.usd_per_hour < p.usd_per_hour - 1e-9 and q.carbon_kg_per_hour <= p.carbon_kg_per_hour + 1e-9
        )

    unique: dict[tuple[float, float], ParetoPoint] = {}
    for p in sorted(points, key=lambda p: not p.this_plan):
        if not any(beats(q, p) for q in points):
            unique.setdefault((round(p.usd_per_hour, 4), round(p.carbon_kg_per_hour, 4)), p)
    return list(unique.values())


def _apart(mine: ParetoPoint, front: list[ParetoPoint]) -> str:
    """Why the plan is not a point of the frontier."""
    cheapest = min(front, key=lambda p: p.usd_per_hour, default=None)
    if not mine.counted:
        found = (
            f"its cheapest plan costs ${cheapest.usd_per_hour:,.2f}/h" if cheapest else "it finds no plan without them"
        )
        return (
            f"this plan sends {mine.carbon_unknown_share:.0%} of its traffic (averaged over its workloads) where "
            f"carbon is unknown (offers without published power, hosted APIs without a carbon factor), and its "
            f"{mine.carbon_kg_per_hour:,.3f} kgCO2e/h leaves that part out; the sweep counts all carbon, so it leaves "
            f"those offers out, and {found}"
        )
    return (
        "a plan of the sweep costs no more and emits less: the solver stops within its optimality gap, and where "
        "carbon is not priced it does not break ties on carbon"
    )


# The SVG: carbon across, cost up, both axes with ticks; each point labelled with its cost and carbon; the plan
# ringed in red (a dashed ring where its carbon is not all counted).
_W, _H = 720, 460
_LEFT, _RIGHT, _TOP, _BOTTOM = 84, 36, 56, 76
_BLUE, _RED, _GREY = "#2166ac", "#b2182b", "#d9d9d9"


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values that cover [lo, hi] with a margin, about `count` intervals, none below 0 where no
    value is (no cost or carbon is)."""
    floor = 0.0 if lo >= 0 else -math.inf
    if hi <= lo:
        half = abs(lo) * 0.1 or 1.0
        lo, hi = lo - half, hi + half
    margin = (hi - lo) * 0.06
    lo, hi = max(floor, lo - margin), hi + margin
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [k * step for k in range(first, last + 1)]


def _decimals(ticks: list[float]) -> int:
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    return max(0, -math.floor(math.log10(step)) + (1 if abs(mantissa - 2.5) < 1e-6 else 0))


def _label(p: ParetoPoint) -> str:
    text = f"${p.usd_per_hour:,.2f}/h, {p.carbon_kg_per_hour:,.3f} kg/h"
    if not p.this_plan:
        return text
    return f"this plan: {text}" + ("" if p.counted else " (carbon not all counted)")


def _place(
    x: float, y: float, width: float, taken: list[tuple[float, float, float, float]]
) -> tuple[float, float, str, bool]:
    """Where a label of `width` px beside the point (x, y) overlaps nothing placed before and stays inside the
    plot: above right or below left first (off a frontier that falls to the right), then the other corners,
    further out if need be (then with a leader line)."""
    options = []
    for lift in (0, 14, 28, 42):
        options += [(x + 8, y - 6 - lift, "start"), (x - 8, y + 14 + lift, "end"),
                    (x + 8, y + 14 + lift, "start"), (x - 8, y - 6 - lift, "end")]  # fmt: skip
    for k, (tx, ty, anchor) in enumerate(options):
        box = (tx if anchor == "start" else tx - width, ty - 10, width, 13)
        inside = _LEFT < box[0] and box[0] + width < _W - 4 and _TOP < box[1] and ty < _H - _BOTTOM
        clear = all(
            box[0] + box[2] < b[0] or b[0] + b[2] < box[0] or box[1] + box[3] < b[1] or b[1] + b[3] < box[1]
            for b in taken
        )
        if inside and clear:
            taken.append(box)
            return tx, ty, anchor, k >= 4
    tx, ty, anchor = options[0]
    return tx, ty, anchor, False


def pareto_svg(points: list[ParetoPoint], title: str) -> str:
    """The frontier as an SVG: carbon (kgCO2e/h) across and cost ($/h) up, both with ticks; every point
    labelled with its cost and carbon, the frontier joined, the plan ringed and labelled "this plan"."""
    xt = _ticks(min((p.carbon_kg_per_hour for p in points), default=0.0), max((p.carbon_kg_per_hour for p in points),
                default=1.0))  # fmt: skip
    yt = _ticks(min((p.usd_per_hour for p in points), default=0.0), max((p.usd_per_hour for p in points), default=1.0))

    def sx(v: float) -> float:
        return _LEFT + (v - xt[0]) / (xt[-1] - xt[0]) * (_W - _LEFT - _RIGHT)

    def sy(v: float) -> float:
        return _H - _BOTTOM - (v - yt[0]) / (yt[-1] - yt[0]) * (_H - _TOP - _BOTTOM)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        'font-family="DejaVu Sans, sans-serif">',
        f'<rect width="{_W}" height="{_H}" fill="#ffffff"/>',
        f'<text x="{_W / 2}" y="26" font-size="15" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
    ]
    out += _axes(xt, yt, sx, sy)
    counted = sorted((p for p in points if p.counted), key=lambda p: p.carbon_kg_per_hour)
    line = " ".join(f"{sx(p.carbon_kg_per_hour):.1f},{sy(p.usd_per_hour):.1f}" for p in counted)
    out.append(f'<polyline points="{line}" fill="none" stroke="#92c5de" stroke-width="2"/>')
    legend = (_W - _RIGHT - 250, _TOP + 6, 246, 44)
    out += _marks(points, sx, sy, [legend])
    out += _legend(*legend[:2])
    out.append("</svg>")
    return "".join(out)


def _axes(xt: list[float], yt: list[float], sx: Any, sy: Any) -> list[str]:
    """Grid lines, ticks with their values, the two axes and their titles."""
    x_digits, y_digits = _decimals(xt), _decimals(yt)
    bottom, top, left, right = sy(yt[0]), sy(yt[-1]), sx(xt[0]), sx(xt[-1])
    out = []
    for v in xt:
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="{_GREY}"/>')
        out.append(f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 5:.1f}" stroke="#333"/>')
        out.append(
            f'<text x="{x:.1f}" y="{bottom + 19:.1f}" font-size="11" text-anchor="middle">{v:,.{x_digits}f}</text>'
        )
    for v in yt:
        y = sy(v)
        out.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="{_GREY}"/>')
        out.append(f'<line x1="{left - 5:.1f}" y1="{y:.1f}" x2="{left:.1f}" y2="{y:.1f}" stroke="#333"/>')
        out.append(
            f'<text x="{left - 8:.1f}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{v:,.{y_digits}f}</text>'
        )
    out.append(f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" stroke="#333"/>')
    out.append(f'<line x1="{left:.1f}" y1="{top:.1f}" x2="{left:.1f}" y2="{bottom:.1f}" stroke="#333"/>')
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{_H - 24}" font-size="12" text-anchor="middle">'
               "carbon, kgCO2e per hour</text>")  # fmt: skip
    middle = (top + bottom) / 2
    out.append(f'<text x="22" y="{middle:.1f}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 22 {middle:.1f})">cost, $ per hour</text>')  # fmt: skip
    return out


def _marks(points: list[ParetoPoint], sx: Any, sy: Any, taken: list[tuple[float, float, float, float]]) -> list[str]:
    """A dot per point, a red ring around the plan, and each point's label where it overlaps no other label,
    dot or anything in `taken` (the legend)."""
    out = []
    taken += [(sx(p.carbon_kg_per_hour) - 5, sy(p.usd_per_hour) - 5, 10, 10) for p in points]
    for p in sorted(points, key=lambda p: not p.this_plan):  # the plan's label is placed first
        x, y = sx(p.carbon_kg_per_hour), sy(p.usd_per_hour)
        colour = _RED if p.this_plan else _BLUE
        if p.this_plan:
            dash = "" if p.counted else ' stroke-dasharray="3,2"'
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="{_RED}" stroke-width="2.5"{dash}/>'
            )
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
        text = _label(p)
        tx, ty, anchor, leader = _place(x, y, len(text) * 6.0, taken)
        if leader:
            out.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{tx:.1f}" y2="{ty - 4:.1f}" stroke="{colour}" '
                       'stroke-width="0.8"/>')  # fmt: skip
        weight = ' font-weight="bold"' if p.this_plan else ""
        out.append(f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="10" text-anchor="{anchor}" fill="{colour}"{weight}>'
                   f"{escape(text)}</text>")  # fmt: skip
    return out


def _legend(x: float, y: float) -> list[str]:
    return [
        f'<rect x="{x}" y="{y}" width="246" height="44" fill="#ffffff" stroke="{_GREY}"/>',
        f'<circle cx="{x + 14}" cy="{y + 14}" r="4" fill="{_BLUE}"/>',
        f'<text x="{x + 26}" y="{y + 18}" font-size="11">a plan of the sweep (carbon counted)</text>',
        f'<circle cx="{x + 14}" cy="{y + 32}" r="9" fill="none" stroke="{_RED}" stroke-width="2.5"/>',
        f'<circle cx="{x + 14}" cy="{y + 32}" r="4" fill="{_RED}"/>',
        f'<text x="{x + 26}" y="{y + 36}" font-size="11">this plan (flopex plan)</text>',
    ]
