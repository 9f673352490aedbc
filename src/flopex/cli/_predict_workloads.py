"""`flopex predict video|video-realtime|training|agent|modalities`: the workloads beyond chat tokens."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from flopex.catalog import PRECISIONS, Catalog, Offer, OfferQuery, Precision, select_offers
from flopex.cli._common import (
    CalibrationOption,
    JsonOption,
    catalog_for,
    choose,
    efficiency_for,
    err_console,
    fail,
    out_console,
    print_json,
)
from flopex.errors import FlopexError
from flopex.models import VideoModelSpec, generic_video_model, resolve_model, resolve_video_model
from flopex.perf import (
    RETENTIONS,
    AgentQuery,
    AgentSession,
    Band,
    LLMQuery,
    TrainingQuery,
    VideoPrediction,
    VideoQuery,
    load_bands,
    parse_scenario,
    predict_agent,
    predict_llm,
    predict_training,
    predict_video,
    realtime_fleet,
)

__all__ = ["register"]

_AcceleratorOpt = Annotated[str, typer.Option("--accelerator", help="Accelerator id or alias, e.g. H100-SXM.")]
_CountOpt = Annotated[int, typer.Option("--count", min=1, help="Accelerators in all.")]
_OfferOpt = Annotated[
    str | None,
    typer.Option("--offer", help="Catalog offer id to price with (default: the cheapest on-demand one)."),
]


def _kv(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_style="bold")
    table.add_column("figure", style="bold")
    table.add_column("value")
    for k, v in rows:
        table.add_row(k, v)
    return table


def _offer(catalog: Catalog, accelerator: str, offer_id: str | None) -> Offer | None:
    """The named offer (which must carry `accelerator`), or the cheapest on-demand one per accelerator-hour."""
    acc = catalog.accelerators.resolve(accelerator)
    if offer_id is not None:
        offer = catalog.offer(offer_id)
        if offer is None:
            fail(
                f"--offer {offer_id!r}: no such offer. To fix: pick one from "
                + f"`flopex catalog offers --accelerator {acc.id}`."
            )
        if offer.accelerator != acc.id:
            fail(f"--offer {offer.id} carries {offer.accelerator}, not {acc.id}. To fix: pass a {acc.id} offer.")
        return offer
    query = OfferQuery(accelerators=(acc.id,), markets=("on_demand",), limit=1)
    found = select_offers(catalog.offers, catalog.accelerators, catalog.regions, query)
    return found[0] if found else None


def _price_json(offer: Offer | None, accelerator_seconds: float, unit: str) -> dict[str, Any] | None:
    if offer is None:
        return None
    return {
        "offer": offer.id,
        "usd_per_accelerator_hour": offer.price_per_accelerator_hour,
        f"usd_per_{unit}": accelerator_seconds / 3600 * offer.price_per_accelerator_hour,
    }


def _precision(value: str) -> Precision:
    return choose(value, PRECISIONS, "--precision")


def _video_model(model: str, params_b: float | None, layers: int | None, hidden: int | None) -> VideoModelSpec:
    if model.strip().lower() == "generic":
        if params_b is None:
            fail("--model generic needs --params-b N, the DiT's size in billions (e.g. --params-b 14).")
        return generic_video_model(params_b, layers, hidden)
    if params_b is not None or layers is not None or hidden is not None:
        fail("--params-b, --layers and --hidden-size describe a generic DiT; use them with --model generic.")
    return resolve_video_model(model)


def _video_rows(p: VideoPrediction) -> list[tuple[str, str]]:
    j = p.to_json()
    sec, mem = j["seconds"], j["memory_gb"]
    return [
        ("seconds per video", f"{j['seconds_per_video']:,.1f} s on {j['sequence_parallel']} accelerator(s)"),
        ("accelerator-seconds per video", f"{j['accelerator_seconds_per_video']:,.0f}"),
        ("output", f"{j['frames']} frames at {j['fps']:g} fps = {j['video_seconds']:.2f} s of video"),
        ("compute per second of video", f"{j['compute_seconds_per_video_second']:,.0f} accelerator-seconds"),
        ("throughput", f"{j['videos_per_hour']:,.2f} videos/hour on {j['count']} ({j['replicas']} replica(s))"),
        ("tokens", f"{j['video_tokens']:,} video tokens, {j['sequence_tokens']:,} per attention sequence"),
        (
            "work",
            f"{j['flops_per_video']:.3g} FLOPs ({j['steps']} steps x {j['guidance_passes']} guidance pass(es)), "
            f"MFU {j['mfu']:.0%}",
        ),
        (
            "time split",
            f"linear {sec['linear']:,.1f} s, attention {sec['attention']:,.1f} s, communication "
            f"{sec['communication']:,.1f} s, weight offload {sec['weight_offload']:,.1f} s, text encoder "
            f"{sec['text_encoder']:,.2f} s, VAE decode {sec['vae_decode']:,.1f} s",
        ),
        (
            "memory per accelerator",
            f"{mem['usable']:,.1f} GB usable: weights {mem['weights']:,.1f}, activations {mem['activations']:,.1f}"
            + (" (weights offloaded to host memory)" if mem["weights_offloaded"] else ""),
        ),
    ]


_ConfidenceOpt = Annotated[
    float, typer.Option("--confidence", min=0.5, max=0.99, help="Two-sided confidence of the interval shown (from "
                        "the model's out-of-sample error, flopex calibrate report --cross-validate).")
]  # fmt: skip


def _within(band: Band | None, value: float, confidence: float) -> str:
    if band is None:
        return ""
    low, high = band.interval(value, confidence)
    return f" ({confidence:.0%}: {low:,.0f}-{high:,.0f}, from {band.rows} out-of-sample {band.regime} rows)"


def video(
    model: Annotated[str, typer.Option("--model", help="Video model id (see `flopex models list`) or generic.")],
    accelerator: _AcceleratorOpt,
    count: _CountOpt = 1,
    width: Annotated[int | None, typer.Option("--width", min=1, help="Pixels (default: the model's).")] = None,
    height: Annotated[int | None, typer.Option("--height", min=1, help="Pixels (default: the model's).")] = None,
    frames: Annotated[int | None, typer.Option("--frames", min=1, help="Frames (default: the model's).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Denoising steps (default: 50).")] = None,
    fps: Annotated[float | None, typer.Option("--fps", help="Output frame rate (default: the model's).")] = None,
    precision: Annotated[str, typer.Option("--precision", help="bf16 (default), fp16 or fp8.")] = "bf16",
    sequence_parallel: Annotated[
        int | None, typer.Option("--sequence-parallel", min=1, help="Accelerators per video (default: fastest).")
    ] = None,
    params_b: Annotated[float | None, typer.Option("--params-b", help="Generic DiT: billions of parameters.")] = None,
    layers: Annotated[int | None, typer.Option("--layers", min=1, help="Generic DiT: transformer blocks.")] = None,
    hidden_size: Annotated[int | None, typer.Option("--hidden-size", min=1, help="Generic DiT: width.")] = None,
    offer: _OfferOpt = None,
    confidence: _ConfidenceOpt = 0.8,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
) -> None:
    """Seconds per video, accelerator-seconds and compute per second of output video for a DiT video model."""
    eff = efficiency_for(calibration)
    try:
        m = _video_model(model, params_b, layers, hidden_size)
        catalog = catalog_for(None, quiet=True)
        q = VideoQuery(
            m,
            catalog.accelerators.resolve(accelerator),
            count,
            width or m.width,
            height or m.height,
            frames or m.frames,
            steps or m.steps,
            _precision(precision),
            sequence_parallel,
            fps,
        )
        p = predict_video(q, eff)
    except FlopexError as exc:
        fail(str(exc))
    chosen = _offer(catalog, accelerator, offer)
    price = _price_json(chosen, p.accelerator_seconds_per_video, "video")
    band = load_bands()["video"]
    if json:
        intervals = {} if band is None else {"seconds_per_video": band.described(p.seconds_per_video, confidence)}
        print_json({**p.to_json(), "price": price, "intervals": {"confidence": confidence, **intervals}})
        return
    rows = _video_rows(p)
    if band is not None:
        rows.insert(1, ("interval", "seconds per video" + _within(band, p.seconds_per_video, confidence)))
    if price is not None:
        per_minute = price["usd_per_video"] * 60 / p.video_seconds
        rows.append(
            (
                "cost",
                f"${price['usd_per_video']:,.2f} per video, ${per_minute:,.2f} per minute of video "
                f"({price['offer']}, ${price['usd_per_accelerator_hour']:,.2f}/accelerator-hour)",
            )
        )
    title = f"{m.id} on {count} x {q.accelerator.id}: {q.width}x{q.height}, {q.frames} frames, {q.steps} steps"
    out_console().print(_kv(title, rows))


def video_realtime(
    model: Annotated[str, typer.Option("--model", help="Video model id.")] = "wan2.1-t2v-14b",
    width: Annotated[int, typer.Option("--width", min=1)] = 1920,
    height: Annotated[int, typer.Option("--height", min=1)] = 1080,
    fps: Annotated[float, typer.Option("--fps", min=1.0)] = 30.0,
    rate: Annotated[float, typer.Option("--rate", help="Seconds of video to generate per wall-clock second.")] = 1.0,
    accelerator: Annotated[
        list[str] | None, typer.Option("--accelerator", help="Accelerators to compare (default: every one).")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Denoising steps (default: the model's).")] = None,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
) -> None:
    """How many accelerators of each kind generate RATE seconds of video per second at a resolution and rate."""
    eff = efficiency_for(calibration)
    catalog = catalog_for(None, quiet=True)
    try:
        m = resolve_video_model(model)
        accs = (
            [catalog.accelerators.resolve(a) for a in accelerator]
            if accelerator
            else list(catalog.accelerators.values())
        )
    except FlopexError as exc:
        fail(str(exc))
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    for acc in accs:
        try:
            need = realtime_fleet(m, acc, width, height, fps, rate, eff, steps=steps)
        except FlopexError as exc:
            skipped.append(f"{acc.id}: {exc}")
            continue
        row = need.to_json()
        row["price"] = _price_json(_offer(catalog, acc.id, None), need.accelerators * 3600, "hour")
        results.append(row)
    results.sort(key=lambda r: r["accelerators"])
    if json:
        print_json(
            {
                "model": m.id,
                "width": width,
                "height": height,
                "fps": fps,
                "rate": rate,
                "fleets": results,
                "skipped": skipped,
            }
        )
        return
    first = results[0] if results else None
    clip = f"clips of {first['clip_frames']} frames ({first['clip_seconds']:.1f} s)" if first else "no accelerator fits"
    table = Table(title=f"{m.id}: {rate:g} s of {width}x{height}@{fps:g} video per second, {clip}", header_style="bold")
    for col in ("accelerator", "accelerators", "acc-s per video-s", "clip latency", "SP", "fleet $/hour"):
        table.add_column(col, justify="left" if col == "accelerator" else "right")
    for r in results:
        price = r["price"]
        table.add_row(
            r["accelerator"],
            f"{r['accelerators']:,}",
            f"{r['compute_seconds_per_video_second']:,.0f}",
            f"{r['clip_latency_s']:,.0f} s",
            str(r["sequence_parallel"]),
            f"${price['usd_per_hour']:,.0f}" if price else "no offer",
        )
    out_console().print(table)
    for line in skipped:
        err_console().print(f"skipped {line}", highlight=False)


def training(
    model: Annotated[str, typer.Option("--model", help="Model id (see `flopex models list`) or a config.json path.")],
    accelerator: _AcceleratorOpt,
    count: _CountOpt,
    tokens: Annotated[float, typer.Option("--tokens", help="Training tokens, e.g. 2e12.")],
    precision: Annotated[str, typer.Option("--precision", help="bf16 (default), fp16 or fp8.")] = "bf16",
    sequence_length: Annotated[int, typer.Option("--sequence-length", min=1)] = 4096,
    global_batch_tokens: Annotated[
        float | None, typer.Option("--global-batch-tokens", help="Tokens per optimizer step (default 4M).")
    ] = None,
    offer: _OfferOpt = None,
    confidence: _ConfidenceOpt = 0.8,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
) -> None:
    """Accelerator-hours, wall-clock days, the MFU used and the energy of a pre-training run."""
    eff = efficiency_for(calibration)
    catalog = catalog_for(None, quiet=True)
    try:
        q = TrainingQuery(
            resolve_model(model),
            catalog.accelerators.resolve(accelerator),
            count,
            tokens,
            _precision(precision),
            sequence_length,
            global_batch_tokens,
        )
        p = predict_training(q, eff)
    except FlopexError as exc:
        fail(str(exc))
    price = _price_json(_offer(catalog, accelerator, offer), p.accelerator_hours * 3600, "run")
    band = load_bands()["training"]
    if json:
        intervals = {} if band is None else {"accelerator_hours": band.described(p.accelerator_hours, confidence)}
        print_json({**p.to_json(), "price": price, "intervals": {"confidence": confidence, **intervals}})
        return
    j = p.to_json()
    energy = "unknown (no TDP in the catalog)" if j["energy_kwh"] is None else f"{j['energy_kwh'] / 1e3:,.1f} MWh"
    rows = [
        ("accelerator-hours", f"{j['accelerator_hours']:,.0f}" + _within(band, j["accelerator_hours"], confidence)),
        ("wall-clock", f"{j['wall_days']:,.1f} days on {count} x {q.accelerator.id}"),
        ("model FLOPs", f"{j['flops']:.3g} (6 x active parameters + attention, per token)"),
        (
            "utilisation",
            f"MFU {j['mfu']:.1%} of the dense 16-bit peak x {j['precision_speedup']:g} for {q.precision}, "
            f"goodput {j['goodput']:.0%}",
        ),
        (
            "layout",
            f"TP{j['tensor_parallel']} x PP{j['pipeline_parallel']} x DP{j['data_parallel']}, {j['steps']:,.0f} steps",
        ),
        (
            "step",
            f"compute {j['step_s']['compute']:,.2f} s, gradient reduction {j['step_s']['network']:,.2f} s"
            + (" (network-bound)" if j["network_bound"] else " (hidden behind compute)"),
        ),
        (
            "memory per accelerator",
            f"{j['memory_gb']['usable']:,.1f} GB usable: sharded state {j['memory_gb']['state']:,.1f}, "
            f"activations {j['memory_gb']['activations']:,.1f}; at least {j['min_count']} accelerators",
        ),
        ("energy", f"{energy} (accelerators at TDP; host and PUE not included)"),
    ]
    if price is not None:
        rows.append(
            ("cost", f"${price['usd_per_run']:,.0f} ({price['offer']}, ${price['usd_per_accelerator_hour']:,.2f}/h)")
        )
    out_console().print(_kv(f"Training {q.model.id} on {q.tokens:.3g} tokens", rows))


def agent(
    model: Annotated[str, typer.Option("--model", help="Model id or a config.json path.")],
    accelerator: _AcceleratorOpt,
    precision: Annotated[str, typer.Option("--precision", help=f"Weight precision: {', '.join(PRECISIONS)}.")],
    turns_per_hour: Annotated[float, typer.Option("--turns-per-hour", help="Turns in one session-hour.")],
    tokens_per_turn: Annotated[int, typer.Option("--tokens-per-turn", min=1, help="Tokens appended per turn.")],
    output_per_turn: Annotated[int, typer.Option("--output-per-turn", min=1, help="Tokens generated per turn.")],
    idle_s: Annotated[float, typer.Option("--idle-s", min=0.0, help="Idle seconds after each turn.")],
    count: _CountOpt = 1,
    retention: Annotated[
        str | None, typer.Option("--retention", help="hold, offload or recompute (default: the cheapest).")
    ] = None,
    initial_tokens: Annotated[
        int, typer.Option("--initial-tokens", min=0, help="System prompt and tool definitions.")
    ] = 0,
    hours: Annotated[float, typer.Option("--hours", help="Session length in hours.")] = 1.0,
    scenario: Annotated[str, typer.Option("--scenario", help="server (default) or interactive SLOs.")] = "server",
    offer: _OfferOpt = None,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
) -> None:
    """Accelerator-seconds, memory-seconds and cost per session-hour of an AI agent, per KV retention policy."""
    eff = efficiency_for(calibration)
    catalog = catalog_for(None, quiet=True)
    chosen_retention = None if retention is None else choose(retention, RETENTIONS, "--retention")
    try:
        q = AgentQuery(
            resolve_model(model),
            catalog.accelerators.resolve(accelerator),
            count,
            _precision(precision),
            turns_per_hour,
            tokens_per_turn,
            output_per_turn,
            idle_s,
            initial_tokens,
            hours,
            parse_scenario(scenario),
        )
        s = predict_agent(q, eff)
    except FlopexError as exc:
        fail(str(exc))
    chosen = _offer(catalog, accelerator, offer)
    if json:
        data = s.to_json(chosen_retention)
        data["price"] = _price_json(chosen, data["accelerator_seconds_per_session_hour"], "session_hour")
        print_json(data)
        return
    out_console().print(_agent_table(s, chosen, chosen_retention))


def _agent_table(s: AgentSession, offer: Offer | None, retention: str | None) -> Table:
    q = s.query
    title = (
        f"Agent on {q.model.id}, {q.count} x {q.accelerator.id} ({s.serving.layout}): {q.turns_per_hour:g} turns/h, "
        f"+{q.tokens_per_turn:,} in / {q.output_per_turn:,} out per turn, {q.idle_s:g} s idle; context reaches "
        f"{s.final_context:,} tokens"
    )
    table = Table(title=title, header_style="bold")
    for col in (
        "retention",
        "acc-s / session-h",
        "bound",
        "sessions/replica",
        "HBM GB-s",
        "host GB-s",
        "turn s",
        "$ / session-h",
    ):
        table.add_column(col, justify="left" if col in ("retention", "bound") else "right")
    for name, c in s.costs.items():
        cost = "-" if offer is None else f"${c.accelerator_seconds / 3600 * offer.price_per_accelerator_hour:,.3f}"
        marks = " (cheapest)" if name == s.cheapest else ""
        marks += " (chosen)" if name == retention else ""
        table.add_row(
            name + marks,
            f"{c.accelerator_seconds:,.0f}",
            c.bound,
            f"{c.sessions_per_replica:,.1f}",
            f"{c.hbm_gb_seconds:,.0f}",
            f"{c.host_gb_seconds:,.0f}",
            f"{c.mean_turn_s:,.1f}",
            cost,
        )
    table.caption = f"KV pool {s.serving.memory.kv_bytes / 1e9:,.1f} GB" + (
        "" if offer is None else f"; priced on {offer.id} at ${offer.price_per_accelerator_hour:,.2f}/accelerator-hour"
    )
    return table


def modalities(
    accelerator: Annotated[str, typer.Option("--accelerator", help="One accelerator for all three.")] = "H100-SXM",
    offer: _OfferOpt = None,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
) -> None:
    """Cost on one offer of 1M chat output tokens (70B), one minute of 1080p30 video (14B DiT) and one
    agent session-hour (70B), with every assumption printed."""
    eff = efficiency_for(calibration)
    catalog = catalog_for(None, quiet=True)
    try:
        acc = catalog.accelerators.resolve(accelerator)
        chosen = _offer(catalog, acc.id, offer)
        if chosen is None:
            fail(f"no on-demand offer for {acc.id} in the catalog. To fix: pass --offer ID or add one to the catalog.")
        llm_model, video_model = resolve_model("llama-3.1-70b"), resolve_video_model("wan2.1-t2v-14b")
        precision: Precision = "fp8" if acc.runs("fp8") else "bf16"
        count = acc.scale_up_domain or 8
        chat = predict_llm(LLMQuery(llm_model, acc, count, precision, 1000, 1000, parse_scenario("server")), eff)
        clip = realtime_fleet(video_model, acc, 1920, 1080, 30, 1.0, eff).prediction
        session = predict_agent(
            AgentQuery(llm_model, acc, count, precision, 30, 2000, 300, 30, initial_tokens=4000), eff
        )
    except FlopexError as exc:
        fail(str(exc))
    price = chosen.price_per_accelerator_hour
    chat_acc_s = count / chat.output_tokens_per_s * 1e6
    video_acc_s = clip.compute_seconds_per_video_second * 60
    agent_acc_s = session.costs[session.cheapest].accelerator_seconds
    rows: list[dict[str, Any]] = [
        {
            "workload": "1M chat output tokens",
            "accelerator_hours": chat_acc_s / 3600,
            "usd": chat_acc_s / 3600 * price,
            "assumptions": (
                f"{llm_model.id} {precision} on {count} x {acc.id} ({chat.layout}), 1,000 tokens in and 1,000 out "
                f"per request, server SLOs (p99 TTFT 2 s, TPOT 0.2 s): {chat.output_tokens_per_s:,.0f} tokens/s, "
                "input tokens included in the work"
            ),
        },
        {
            "workload": "1 minute of 1080p30 video",
            "accelerator_hours": video_acc_s / 3600,
            "usd": video_acc_s / 3600 * price,
            "assumptions": (
                f"{video_model.id} bf16, 1920x1080 at 30 fps in clips of {clip.query.frames} frames "
                f"({clip.video_seconds:.1f} s), {clip.query.steps} steps with classifier-free guidance, "
                f"{clip.sequence:,} tokens per clip, {clip.seconds_per_video:,.0f} s per clip on "
                f"{clip.sequence_parallel} accelerator(s)"
            ),
        },
        {
            "workload": "1 agent session-hour",
            "accelerator_hours": agent_acc_s / 3600,
            "usd": agent_acc_s / 3600 * price,
            "assumptions": (
                f"{llm_model.id} {precision} on {count} x {acc.id}, 30 turns/hour, 4,000-token system prompt, "
                f"+2,000 tokens in and 300 out per turn, 30 s idle; context reaches {session.final_context:,}; "
                f"KV {session.cheapest} (cheapest of hold/offload/recompute)"
            ),
        },
    ]
    if json:
        print_json({"offer": chosen.id, "usd_per_accelerator_hour": price, "workloads": rows})
        return
    table = Table(
        title=f"One offer, three workloads: {chosen.id} at ${price:,.2f}/accelerator-hour", header_style="bold"
    )
    table.add_column("workload")
    table.add_column("accelerator-hours", justify="right")
    table.add_column("cost", justify="right")
    table.add_column("assumptions")
    for r in rows:
        table.add_row(r["workload"], f"{r['accelerator_hours']:,.2f}", f"${r['usd']:,.2f}", r["assumptions"])
    out_console().print(table)


def register(app: typer.Typer) -> None:
    app.command("modalities")(modalities)
    app.command("video")(video)
    app.command("video-realtime")(video_realtime)
    app.command("training")(training)
    app.command("agent")(agent)
