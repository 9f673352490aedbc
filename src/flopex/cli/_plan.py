"""`flopex plan`: the cheapest fleet that serves the workloads within their SLOs and constraints."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flopex.catalog import Catalog
from flopex.cli._common import (
    CalibrationOption,
    CatalogOption,
    JsonOption,
    catalog_for,
    efficiency_for,
    err_console,
    fail,
    out_console,
    print_json,
    solver_quiet,
)
from flopex.cli._traces import read_trace, trace_paths
from flopex.economics import EnergyTable, load_energy_table
from flopex.errors import FlopexError
from flopex.perf import Efficiency, load_bands
from flopex.plan import (
    Margins,
    ParetoPoint,
    Plan,
    PlanDocument,
    PlanSpec,
    load_plan,
    make_plan,
    melange_result,
    pareto,
    pareto_svg,
    plan_document,
    plan_document_schema,
    read_melange,
    solve_melange,
)
from flopex.sim import Verified, VerifyOptions, verify_plan
from flopex.workloads import ChatWorkload, Workload

__all__ = ["plan_command"]


def _summary(j: dict[str, Any]) -> None:
    console = out_console()
    if j["status"] not in ("optimal", "time_limit"):
        console.print(f"[bold red]No plan:[/] {j['message']}")
        if j["relaxations"]:
            console.print("Relaxing one constraint at a time:")
            for r in j["relaxations"]:
                result = "still infeasible" if r["usd_per_hour"] is None else f"feasible at ${r['usd_per_hour']:,.2f}/h"
                console.print(f"  without {r['text']}: {result}")
        return
    console.print(_fleet_table(j))
    for w in j["workloads"]:
        per = "" if w["usd_per_mtok_output"] is None else f", ${w['usd_per_mtok_output']:,.3f} per 1M output tokens"
        console.print(f"{w['name']}: ${w['usd_per_hour']:,.2f}/h{per}")
        for r in w["buckets"]:
            shares = ", ".join(f"{k.split('|')[1] if '|' in k else k} {v:.0%}" for k, v in r["shares"].items())
            console.print(f"   bucket {r['label']} ({r['rate']:,.3g} {w['unit']}): {shares}")
    console.print(_solver_line(j))
    for line in _explanation_lines(j):
        console.print(line)
    for warning in j["warnings"]:
        console.print(f"[bold yellow]Warning:[/] {warning[0].upper()}{warning[1:]}")


def _fleet_table(j: dict[str, Any]) -> Table:
    title = f"Plan {j['name']}: ${j['usd_per_hour']:,.2f}/h (${j['usd_per_month']:,.0f}/month)"
    table = Table(title=title, header_style="bold")
    for col in ("workload", "offer", "config", "groups", "instances", "$/hour", "utilisation", "headroom", "kW",
                "kgCO2e/h"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("workload", "offer", "config") else "right", overflow="fold")

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for line in j["deployments"]:
        instances = line["groups"] * (line["instances_per_group"] or 0)
        table.add_row(
            line["workload"], line["offer"] + (" (spot)" if line["spot"] else ""), line["config"],
            str(line["groups"] or "-"), str(instances or "-"), f"${line['usd_per_hour']:,.2f}",
            fmt(line["utilisation"], ".0%"),
            fmt(None if line["utilisation"] is None else max(0.0, 1 - line["utilisation"]), ".0%"),
            fmt(line["power_kw"], ",.1f"),
            fmt(line["carbon_kg_per_hour"], ",.3f"),
        )  # fmt: skip
    return table


def _solver_line(j: dict[str, Any]) -> str:
    s = j["solver"]
    gap = "unknown" if s["gap"] is None else f"{s['gap']:.2%}"
    if j["unknown"]:
        known = [d for d in j["deployments"] if d["unknown"] is None]
        energy = (
            f"Energy and carbon unknown: {len(j['unknown'])} deployment(s) publish none "
            f"({'; '.join(j['unknown'][:3])}{'; ...' if len(j['unknown']) > 3 else ''})"
            + (f"; the rest draw {j['known_energy_kwh_per_hour']:,.2f} kWh/h and emit "
               f"{j['known_carbon_kg_per_hour']:,.3f} kgCO2e/h" if known else "")
        )  # fmt: skip
    else:
        energy = f"Energy {j['energy_kwh_per_hour']:,.2f} kWh/h, carbon {j['carbon_kg_per_hour']:,.3f} kgCO2e/h"
    return (
        energy + f". Solved by {s['engine']} in {s['seconds']:.2f} s of its {s['time_limit_s']:,.0f} s limit "
        f"({s['integer_variables']} integer, {s['continuous_variables']} continuous variables, "
        f"{s['constraints']} constraints), gap {gap}."
    )


def _explanation_lines(j: dict[str, Any]) -> list[str]:
    e = j["explanation"]
    lines = []
    for b in e["binding"]:
        if b["constraint"] == "unknown_power":
            lines.append(
                f"{b['text'][0].upper()}{b['text'][1:]}: costs ${b['costs_usd_per_hour']:,.2f}/h (admitting them, "
                f"without the cap or budget that needs their energy figures: ${b['usd_per_hour_without']:,.2f}/h)."
            )
        else:
            lines.append(
                f"Binding: {b['text']} costs ${b['costs_usd_per_hour']:,.2f}/h "
                f"(without it: ${b['usd_per_hour_without']:,.2f}/h)."
            )
    for baseline in (e.get("single_offer_same_rules"), e.get("single_offer_without_domains")):
        if baseline is not None:
            lines.append(_single_offer_line(baseline, j["usd_per_hour"]))
    return lines


def _single_offer_line(b: dict[str, Any], plan_usd: float) -> str:
    """The plan against the cheapest single offer per workload under the same rules, or why no single offer
    meets them; the comparison without the failure-domain rule leaves it out of both sides."""
    relaxed = bool(b["rules_left_out"])
    if b["usd_per_hour"] is None:
        if relaxed:
            return f"Without the domain rule, no single offer meets the plan's other rules either: {b['reason']}."
        return f"No single offer meets this plan's rules: {b['reason']}."
    picked = "; ".join(f"{w['workload']} on {w['offer']}" for w in b["workloads"])
    if b["picked_one_workload_at_a_time"]:
        picked += "; picked one workload at a time, as they share limits, so a cheaper pairing may exist"
    against = _against(b["saving"])
    if not relaxed:
        return (
            f"This plan costs {against} {'as' if against == 'the same' else 'than'} the cheapest single offer per "
            f"workload under the same rules (${b['usd_per_hour']:,.2f}/h: {picked})."
        )
    without = b["plan_usd_per_hour"]
    plan = (
        f"this plan costs {against}, and the domain rule costs it nothing"
        if abs(without - plan_usd) < 0.005
        else f"this plan without the domain rule would cost ${without:,.2f}/h, {against}"
    )
    return (
        f"Under its other rules, the cheapest single offer per workload costs ${b['usd_per_hour']:,.2f}/h "
        f"({picked}): {plan}."
    )


def _against(saving: float) -> str:
    """How a plan compares with a baseline it never costs more than (beyond the solver's gap)."""
    if abs(saving) < 5e-4:
        return "the same"
    return f"{saving:.1%} less" if saving > 0 else f"{-saving:.1%} more (within the solver's gap)"


def _pareto_table(front: list[ParetoPoint]) -> None:
    table = Table(title="Cost against carbon: the Pareto frontier", header_style="bold")
    for col in ("", "$/hour", "kgCO2e/hour", "$ per tonne avoided, against the cheapest"):
        table.add_column(col, justify="left" if not col else "right")
    counted = [p for p in front if p.counted]
    cheapest = min(counted, key=lambda p: p.usd_per_hour) if counted else None
    for p in front:
        avoided = 0.0 if cheapest is None else (cheapest.carbon_kg_per_hour - p.carbon_kg_per_hour) / 1000
        marginal = (
            "-"
            if cheapest is None or avoided <= 0 or not p.counted
            else f"{(p.usd_per_hour - cheapest.usd_per_hour) / avoided:,.0f}"
        )
        carbon = f"{p.carbon_kg_per_hour:,.3f}" + ("" if p.counted else " (not all counted)")
        table.add_row("this plan" if p.this_plan else "", f"{p.usd_per_hour:,.2f}", carbon, marginal)
    console = out_console()
    console.print(table)
    for p in front:
        if p.note:
            console.print(f"Not on the frontier: {p.note}.")


def _melange(path: Path, time_limit: float | None) -> None:
    try:
        spec = read_melange(path)
        with solver_quiet():
            solution = solve_melange(spec, time_limit or 10.0)
        print_json(melange_result(spec, solution))
    except FlopexError as exc:
        fail(str(exc))


def plan_command(
    file: Annotated[
        Path | None, typer.Argument(help="A plan YAML (workloads and options) or one workload YAML.")
    ] = None,
    carbon_price: Annotated[float | None, typer.Option("--carbon-price", min=0.0, help="USD per tonne CO2e.")] = None,
    carbon_cap: Annotated[
        float | None, typer.Option("--carbon-cap-kg-per-hour", min=0.0, help="Cap on expected kgCO2e per hour.")
    ] = None,
    min_domains: Annotated[
        int | None, typer.Option("--min-domains", min=1, help="Failure domains per workload.")
    ] = None,
    utilisation: Annotated[float | None, typer.Option("--utilisation", min=0.01, max=1.0)] = None,
    confidence: Annotated[
        float | None,
        typer.Option(
            "--confidence",
            min=0.5,
            max=0.99,
            help="Plan at this one-sided confidence of the performance "
            "model's out-of-sample error: capacity lower and latency higher than predicted.",
        ),
    ] = None,
    whole: Annotated[bool, typer.Option("--whole", help="Route each slice to one offer (Mélange style).")] = False,
    time_limit: Annotated[float | None, typer.Option("--time-limit", min=0.1, help="Solver seconds.")] = None,
    gap: Annotated[float | None, typer.Option("--gap", min=0.0, max=0.5, help="Relative MIP gap to stop at.")] = None,
    pareto_axes: Annotated[str | None, typer.Option("--pareto", help="cost,carbon: sweep the carbon price.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="With --pareto: write the frontier as SVG.")] = None,
    melange: Annotated[Path | None, typer.Option("--melange", help="Solve a Mélange input file instead.")] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Replay the plan in the simulator; correct it until it holds.")
    ] = True,
    target: Annotated[
        float, typer.Option("--target", min=0.5, max=0.9999, help="Share of requests within SLO to verify.")
    ] = 0.99,
    trace: Annotated[
        list[str] | None, typer.Option("--trace", help="Verify on a trace CSV, or WORKLOAD=CSV for several workloads.")
    ] = None,
    catalog: CatalogOption = None,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
    schema: Annotated[bool, typer.Option("--schema", help="Print the plan document's JSON Schema and exit.")] = False,
) -> None:
    """The cheapest heterogeneous fleet (HiGHS MILP) for one or more workloads, explained."""
    if schema:
        print_json(plan_document_schema())
        return
    if melange is not None:
        _melange(melange, time_limit)
        return
    if file is None:
        fail("give a plan or workload file (e.g. examples/fleet-plan.yaml), or --melange FILE.")
    if pareto_axes is not None and pareto_axes.replace(" ", "") not in ("cost,carbon", "carbon,cost"):
        fail(f"--pareto {pareto_axes!r}: flopex sweeps cost against carbon. To fix: pass --pareto cost,carbon.")
    if plot is not None and (pareto_axes is None or plot.suffix.lower() != ".svg"):
        fail("--plot writes the --pareto frontier as SVG. To fix: pass --pareto cost,carbon --plot frontier.svg.")
    try:
        spec_, workloads = load_plan(file)
        overrides = {key: value for key, value in (
            ("carbon_price_usd_per_t", carbon_price), ("carbon_cap_kg_per_hour", carbon_cap),
            ("min_failure_domains", min_domains), ("utilisation", utilisation), ("time_limit_s", time_limit),
            ("mip_gap", gap), ("whole_assignment", whole or None), ("confidence", confidence))
            if value is not None}  # fmt: skip
        spec_ = spec_.model_copy(update=overrides)
        inputs = (catalog_for(catalog, quiet=True), efficiency_for(calibration), load_energy_table())
        traces = _trace_rows(trace, workloads, file) if verify else {}
        with solver_quiet():
            plan, verified = _solve(spec_, workloads, inputs, VerifyOptions(target=target) if verify else None, traces)
            front = pareto(plan) if pareto_axes else None
    except FlopexError as exc:
        fail(str(exc))
    _show(plan_document(plan, inputs[0], inputs[1]), verified, front, json)
    if spec_.confidence is None and not json and plan.solution.feasible:
        chosen = [load_bands()[r] for r in ("LLM throughput", "LLM TTFT", "LLM TPOT")]
        figures = ", ".join(f"{b.regime} sigma {b.sigma:.2f} over {b.rows} rows" for b in chosen if b is not None)
        err_console().print(
            f"Capacities rest on the performance model's predictions; its out-of-sample log error: {figures} "
            "(flopex calibrate report --cross-validate). --confidence 0.9 plans to hold at its pessimistic end.",
            highlight=False,
        )
    if spec_.confidence is not None and not json:
        m = Margins.of(spec_)
        err_console().print(
            f"Planned at {spec_.confidence:.0%} confidence of the model's out-of-sample error: capacities divided by "
            f"{m.throughput:.2f}, TTFT and TPOT taken {m.ttft:.2f}x and {m.tpot:.2f}x as long as predicted, video "
            f"{m.video:.2f}x (data/calibration/error-bands.yaml; flopex calibrate report --cross-validate).",
            highlight=False,
        )
    if plot is not None and front is not None:
        plot.write_text(pareto_svg(front, f"{spec_.name}: cost against carbon"), encoding="utf-8")
        err_console().print(f"wrote {plot}")
    skipped = plan.inputs.skipped
    if skipped and not json:  # with --json they are in the document's `skipped`
        listed = f"{len(skipped)} options, all in --json's `skipped`; e.g." if len(skipped) > 1 else "one option:"
        err_console().print(f"Left out of the plan: {listed} {skipped[0]}.", highlight=False)
    if plan.solution.status not in ("optimal", "time_limit") or (verified is not None and not verified.met):
        raise typer.Exit(1)


def _solve(
    spec: PlanSpec,
    workloads: list[Workload],
    inputs: tuple[Catalog, Efficiency, EnergyTable],
    verify: VerifyOptions | None,
    traces: dict[str, list[tuple[str, int, int]]],
) -> tuple[Plan, Verified | None]:
    """The plan, explained, and its verification in the simulator when asked for and feasible."""
    plan = make_plan(spec, workloads, *inputs, explain=verify is None)
    if verify is None:
        return plan, None
    if not plan.solution.feasible:
        return make_plan(spec, workloads, *inputs, inputs=plan.inputs), None  # explained: what would make it work
    with err_console().status("verifying the plan in the simulator", spinner="dots") as status:
        verified = verify_plan(plan, *inputs, traces, verify, lambda text: status.update(f"verifying: {text}"))
    return verified.plan, verified


def _show(doc: PlanDocument, verified: Verified | None, front: list[ParetoPoint] | None, json: bool) -> None:
    data = doc.to_json()
    if json:
        data["verification"] = None if verified is None else _verification_json(verified)
        if front is not None:
            data["pareto"] = [p.to_json() for p in front]
        print_json(data)
        return
    _summary(data)
    if verified is not None:
        _verification_lines(verified)
    if front is not None:
        _pareto_table(front)


def _trace_rows(
    given: list[str] | None, workloads: list[Workload], file: Path
) -> dict[str, list[tuple[str, int, int]]]:
    chats = [w for w in workloads if isinstance(w, ChatWorkload)]
    return {name: read_trace(path) for name, path in trace_paths(given, chats, file).items()}


def _verification_json(v: Verified) -> dict[str, Any]:
    rounds = [
        {"usd_per_hour": r.usd_per_hour, "corrections": r.corrections, "workloads": [asdict(c) for c in r.checks]}
        for r in v.rounds
    ]
    return {
        "target": v.target,
        "met": v.met,
        "message": v.message,
        "not_verified": list(v.unverified),
        "rounds": rounds,
        "kept_round": v.kept % len(v.rounds) if v.rounds else None,
        "workloads": [asdict(c) for c in v.checks],
        "capacity_measured_over_modelled": v.factors,
    }


def _verification_lines(v: Verified) -> None:
    console = out_console()
    if not v.rounds:
        return
    first, shown = v.rounds[0], v.rounds[v.kept]
    head = (
        f"Verified in the simulator ({len(v.rounds)} round{'s' if len(v.rounds) > 1 else ''}, "
        f"target {v.target:.0%} of requests within SLO)"
    )
    if first.usd_per_hour != shown.usd_per_hour:
        head += f"; the plan as first solved cost ${first.usd_per_hour:,.2f}/h"
    console.print(head + ":")
    for c in shown.checks:
        mark = "[green]holds[/]" if c.attainment >= v.target else "[bold red]falls short[/]"
        hosted = f", {c.hosted:,} more sent to hosted APIs" if c.hosted else ""
        console.print(
            f"  {c.workload}: {c.attainment:.2%} of {c.requests:,} simulated requests within SLO, {mark} (p99 TTFT "
            f"{c.ttft_p99_s * 1e3:,.0f} ms, TPOT {c.tpot_p99_s * 1e3:,.1f} ms, end to end {c.e2e_p99_s:,.2f} s"
            f"{hosted})"
        )
    if v.factors:
        measured = "; ".join(f"{k} {f:.2f}" for k, f in sorted(v.factors.items()))
        console.print(f"  capacity measured in the simulator / modelled: {measured}")
    for name in v.unverified:
        console.print(f"  {name}: not verified (the simulator replays token traffic; video and agent workloads "
                      "are planned on the model alone)")  # fmt: skip
    if not v.met:
        console.print(f"[bold red]The plan does not hold:[/] {v.message}")
