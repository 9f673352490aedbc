"""`flopex simulate`: replay a trace or synthetic arrivals against a plan's fleet."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flopex.catalog import Catalog
from flopex.cli._common import (
    CalibrationOption,
    CatalogOption,
    JsonOption,
    catalog_for,
    choose,
    efficiency_for,
    err_console,
    fail,
    out_console,
    print_json,
    solver_quiet,
)
from flopex.cli._svg import line_chart
from flopex.cli._traces import read_trace, trace_paths
from flopex.economics import load_energy_table
from flopex.errors import FlopexError, SimError
from flopex.gateway import GatewayConfig, load_gateway_config
from flopex.perf import Efficiency
from flopex.plan import Plan, PlanDocument, PlanSpec, load_plan, load_plan_document, make_plan, plan_document
from flopex.routing import Policy
from flopex.sim import (
    Fault,
    Request,
    SimOptions,
    generate,
    hosted_shares,
    replicas_from_document,
    report,
    requests_from_trace,
    simulate,
    split_hosted,
    verify_plan,
)
from flopex.workloads import ChatWorkload

__all__ = ["simulate_command"]

ARRIVALS = ("trace", "poisson", "gamma", "diurnal")


def _fault(text: str) -> Fault:
    try:
        replica, rest = text.rsplit("@", 1)
        at, duration = rest.split(":")
        return Fault(replica, float(at), float(duration))
    except ValueError:
        fail(
            f"--fail {text!r}: write REPLICA@START:SECONDS, e.g. --fail 'aws/us-east-1/g6.xlarge/on_demand#0@300:120'."
        )


def simulate_command(
    file: Annotated[Path | None, typer.Argument(help="A plan YAML or one chat/completion workload YAML.")] = None,
    plan_file: Annotated[
        Path | None, typer.Option("--plan", help="A plan document (`flopex plan --json`): simulate its fleet as is.")
    ] = None,
    routing: Annotated[
        Path | None,
        typer.Option(
            "--routing",
            help="A gateway YAML: route as `flopex serve --config` would (and, without FILE "
            "or --plan, simulate the plan it names).",
        ),
    ] = None,
    trace: Annotated[
        list[str] | None, typer.Option("--trace", help="Trace CSV, or WORKLOAD=CSV for several workloads.")
    ] = None,
    arrivals: Annotated[str, typer.Option("--arrivals", help="trace, poisson, gamma or diurnal.")] = "trace",
    rate_scale: Annotated[
        float, typer.Option("--rate-scale", min=0.0001, help="Replay traffic this many times faster (trace or rate).")
    ] = 1.0,
    plan_scale: Annotated[
        float, typer.Option("--plan-scale", min=0.0001, help="Plan the fleet for this many times each workload's rate.")
    ] = 1.0,
    duration: Annotated[float, typer.Option("--duration", min=1.0, help="Seconds of synthetic arrivals.")] = 600.0,
    burstiness: Annotated[
        float | None,
        typer.Option(
            "--burstiness",
            min=0.01,
            max=100.0,
            help="Squared coefficient of variation of gamma gaps (default: each workload's `traffic.burstiness`).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (runs are deterministic).")] = 0,
    policy: Annotated[str, typer.Option("--policy", help="plan (follow the plan's shares) or least-load.")] = "plan",
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Replay the plan `flopex plan` prints, or the MILP's alone.")
    ] = True,
    fail_at: Annotated[list[str] | None, typer.Option("--fail", help="REPLICA@START:SECONDS; repeatable.")] = None,
    no_spot: Annotated[bool, typer.Option("--no-spot-preemptions", help="Do not draw spot preemptions.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Folder to write SVG plots into.")] = None,
    catalog: CatalogOption = None,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
) -> None:
    """Replay traffic request by request, batch by batch, against the fleet `flopex plan` chooses."""
    kind = choose(arrivals, ARRIVALS, "--arrivals")
    chosen_policy = choose(policy, ("plan", "least-load"), "--policy")
    if file is not None and plan_file is not None or (file is None and plan_file is None and routing is None):
        fail("give one of FILE (a plan or workload YAML) and --plan PLAN.json, or --routing with a gateway YAML that "
             "names a plan.")  # fmt: skip
    eff = efficiency_for(calibration)
    cat = catalog_for(catalog, quiet=True)
    try:
        gateway = None if routing is None else load_gateway_config(routing)
        if file is not None:
            doc, chats, traces = _planned(file, trace, plan_scale, verify, (cat, eff))
        else:
            doc, chats, traces = _document(plan_file or _gateway_plan(routing, gateway), trace)
        replicas = replicas_from_document(doc, cat, eff)
        requests = _requests(chats, kind, traces, rate_scale, duration, burstiness, random.Random(seed))
        requests, to_hosted = split_hosted(requests, hosted_shares(doc), random.Random(seed + 1))
        options = SimOptions(
            seed=seed, policy=Policy.plan_weighted() if chosen_policy == "plan" else Policy.least_loaded(),
            policies=_gateway_policies(gateway, doc), faults=tuple(_fault(f) for f in fail_at or []),
            spot_preemptions=not no_spot,
        )  # fmt: skip
        with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} requests"),
                      TimeElapsedColumn(), console=err_console(), transient=True, disable=json) as bar:  # fmt: skip
            task = bar.add_task("sim", total=len(requests))
            result = simulate(requests, replicas, options, lambda done, total: bar.update(task, completed=done))
        slos = {w.name: w.slo for w in chats}
        data = report(result, replicas, slos, doc.usd_per_hour).data
    except FlopexError as exc:
        fail(str(exc))
    data["plan_usd_per_hour"] = doc.usd_per_hour
    data["routing"] = "plan shares" if gateway is None else f"as `flopex serve --config {routing}`"
    data["sent_to_hosted_apis"] = len(to_hosted)
    data["slos"] = {k: v.model_dump(exclude_none=True) for k, v in slos.items()}
    if json:
        print_json(data)
    else:
        _summary(data)
    if plot is not None:
        _plots(plot, data, result.completed)


def _planned(
    file: Path, trace: list[str] | None, plan_scale: float, verify: bool, models: tuple[Catalog, Efficiency]
) -> tuple[PlanDocument, list[ChatWorkload], dict[str, Path]]:
    """The fleet `flopex plan FILE` prints, its token workloads and their traces."""
    spec, workloads = load_plan(file)
    chats = [w for w in workloads if isinstance(w, ChatWorkload)]
    if len(chats) != len(workloads):
        raise SimError("the simulator replays token traffic; every workload must be chat or completion.")
    traces = trace_paths(trace, chats, file)
    plan = _plan(spec, [_scaled(w, plan_scale) for w in chats], models, traces if plan_scale == 1 else {}, verify)
    if not plan.solution.feasible:
        raise SimError(f"the plan is infeasible ({plan.solution.message}); run `flopex plan {file}` to see why.")
    return plan_document(plan, *models), chats, traces


def _document(path: Path, trace: list[str] | None) -> tuple[PlanDocument, list[ChatWorkload], dict[str, Path]]:
    """A plan document as written, its token workloads and their traces."""
    doc = load_plan_document(path)
    if not doc.feasible:
        raise SimError(f"{path}: the plan is {doc.status} ({doc.message}); there is no fleet to simulate.")
    chats = [w for w in (x.workload() for x in doc.workloads) if isinstance(w, ChatWorkload)]
    return doc, chats, trace_paths(trace, chats, path)


def _gateway_plan(routing: Path | None, gateway: GatewayConfig | None) -> Path:
    if routing is None or gateway is None or gateway.plan is None:
        raise SimError(f"{routing}: the gateway configuration names no `plan:`. To fix: give the plan with --plan.")
    return routing.parent / gateway.plan


def _gateway_policies(gateway: GatewayConfig | None, doc: PlanDocument) -> dict[str, Policy]:
    """Each workload's routing policy as the gateway builds it for the workload's model."""
    if gateway is None:
        return {}
    routes = {model: route.routing.policy() for model, route in gateway.models.items()}
    missing = [w.name for w in doc.workloads if w.model not in routes]
    if missing:
        raise SimError(
            f"the gateway configuration routes no model of workload(s) {', '.join(missing)} "
            f"({', '.join(doc.workload(m).model for m in missing)}). To fix: add the model under `models:`, "
            "or name this plan under `plan:`."
        )
    return {w.name: routes[w.model] for w in doc.workloads}


def _plan(
    spec: PlanSpec, planned: list[ChatWorkload], models: tuple[Catalog, Efficiency], traces: dict[str, Path],
    verify: bool,
) -> Plan:  # fmt: skip
    """The fleet `flopex plan` prints for these workloads: solved, then verified unless asked not to."""
    cat, eff = models
    with solver_quiet():
        plan = make_plan(spec, list(planned), cat, eff, load_energy_table(), explain=False)
        if verify and plan.solution.feasible:
            rows = {name: read_trace(path) for name, path in traces.items()}
            with err_console().status("verifying the plan in the simulator", spinner="dots"):
                plan = verify_plan(plan, cat, eff, load_energy_table(), rows).plan
    return plan


def _requests(
    chats: list[ChatWorkload], kind: str, traces: dict[str, Path], rate_scale: float, duration: float,
    burstiness: float | None, rng: random.Random,
) -> list[Request]:  # fmt: skip
    """Every workload's requests, in arrival order: its trace, or synthetic arrivals at its rate."""
    requests: list[Request] = []
    for w in chats:
        source = traces.get(w.name)
        if kind == "trace":
            if source is None:
                raise SimError(f"workload {w.name} has no trace. To fix: pass --trace FILE, or --arrivals poisson.")
            reqs = requests_from_trace(read_trace(source), w.name, w.traffic.buckets(), rate_scale)
        else:
            rate = (w.traffic.requests_per_s or 0.0) * rate_scale
            burst = burstiness or w.traffic.burstiness
            reqs = generate(kind, rate, duration, w.name, w.traffic.buckets(), rng, burstiness=burst)
        requests += [
            Request(len(requests) + i, r.arrival, r.workload, r.bucket, r.input_tokens, r.output_tokens)
            for i, r in enumerate(reqs)
        ]
    return sorted(requests, key=lambda r: (r.arrival, r.id))


def _scaled(w: ChatWorkload, factor: float) -> ChatWorkload:
    rate = (w.traffic.requests_per_s or 0.0) * factor
    return w.model_copy(update={"traffic": w.traffic.model_copy(update={"requests_per_s": rate})})


def _summary(d: dict[str, Any]) -> None:
    console = out_console()
    table = Table(
        title=f"Simulated {d['horizon_s'] / 60:,.1f} minutes: {d['completed']:,} requests", header_style="bold"
    )
    for col in (
        "workload / deployment",
        "requests",
        "TTFT p50",
        "TTFT p99",
        "TPOT p50",
        "TPOT p99",
        "E2E p99",
        "SLO met",
        "goodput req/s",
    ):
        table.add_column(col, justify="left" if col.startswith("workload") else "right", overflow="fold")
    for section in ("workloads", "deployments"):
        for name, s in d[section].items():
            label = name if section == "workloads" else "  " + name.split("|")[1]
            ttft, tpot = s["ttft_s"], s["tpot_s"]
            table.add_row(
                label, f"{s['requests']:,}", f"{ttft['p50'] * 1e3:,.0f} ms", f"{ttft['p99'] * 1e3:,.0f} ms",
                f"{tpot['p50'] * 1e3:,.1f} ms", f"{tpot['p99'] * 1e3:,.1f} ms", f"{s['e2e_s']['p99']:,.2f} s",
                f"{s['slo_attainment']:.2%}", f"{s['goodput_rps']:,.2f}",
            )  # fmt: skip
    console.print(table)
    busy = ", ".join(f"{rid} {r['busy_share']:.0%}" for rid, r in d["replicas"].items())
    console.print(f"Replica busy time: {busy}.")
    little = d["littles_law"]
    console.print(
        f"Cost ${d['cost_usd']:,.2f} (plan ${d['plan_usd_per_hour']:,.2f}/h), energy {d['energy_kwh']:,.2f} kWh. "
        f"KV preemptions {d['kv_preemptions']:,}; spot preemptions {len(d['spot_preemptions'])} "
        f"({sum(p['requests_rerouted'] for p in d['spot_preemptions']):,} requests re-routed); "
        f"dropped {d['dropped']:,}; routed by {d['routing']}; "
        f"sent to hosted APIs as planned {d['sent_to_hosted_apis']:,} (not simulated). "
        f"Little's law: {little['mean_in_system']:,.2f} in system against {little['throughput_x_mean_e2e']:,.2f}."
    )


def _plots(folder: Path, d: dict[str, Any], completed: list[Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    queue = [(rid.split("/")[-1], [(p["t"] / 60, p["queue"]) for p in r["series"]]) for rid, r in d["replicas"].items()]
    busy = [(rid.split("/")[-1], [(p["t"] / 60, p["busy"]) for p in r["series"]]) for rid, r in d["replicas"].items()]
    (folder / "queue.svg").write_text(
        line_chart(queue, "Requests waiting per replica", "minute", "mean queue"), encoding="utf-8"
    )
    (folder / "utilisation.svg").write_text(
        line_chart(busy, "Share of time stepping per replica", "minute", "busy"), encoding="utf-8"
    )
    ttft = sorted(c.ttft for c in completed)
    cdf = [(t, (i + 1) / len(ttft)) for i, t in enumerate(ttft[:: max(1, len(ttft) // 400)])] if ttft else []
    (folder / "ttft-cdf.svg").write_text(
        line_chart([("TTFT", cdf)], "Time to first token", "seconds", "share of requests"), encoding="utf-8"
    )
    err_console().print(f"wrote {folder}/queue.svg, utilisation.svg, ttft-cdf.svg")
