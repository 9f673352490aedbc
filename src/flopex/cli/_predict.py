"""`flopex predict`: what a model does on N accelerators, without running it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table

from flopex.catalog import PRECISIONS, HostedOffer, load_accelerators
from flopex.cli._common import (
    CalibrationOption,
    JsonOption,
    catalog_for,
    choose,
    efficiency_for,
    fail,
    out_console,
    print_json,
)
from flopex.cli._predict_workloads import register
from flopex.errors import FlopexError
from flopex.models import resolve_model
from flopex.perf import (
    ENGINES,
    HostedPrediction,
    LLMQuery,
    Prediction,
    load_bands,
    parse_scenario,
    predict_hosted,
    predict_llm,
)

__all__ = ["predict_app"]

predict_app = typer.Typer(help="Predict serving speed and latency from the performance model.", no_args_is_help=True)

_BOUND_TEXT = {
    "compute": "compute (matrix units are the bottleneck)",
    "memory": "memory bandwidth (weights and KV cache streaming)",
    "capacity": "KV-cache capacity (no room for a larger batch)",
    "slo": "the latency SLO (a larger batch would break it)",
}


def _intervals(j: dict[str, Any], confidence: float) -> dict[str, Any]:
    """Each headline figure's interval at `confidence`, from the model's out-of-sample error per regime."""
    bands = load_bands()
    out: dict[str, Any] = {"confidence": confidence}
    for key, regime in (("output_tokens_per_s", "LLM throughput"), ("ttft_s", "LLM TTFT"), ("tpot_s", "LLM TPOT")):
        band = bands[regime]
        if band is not None:
            out[key] = band.described(j[key], confidence)
    return out


def _table(p: Prediction, confidence: float) -> Table:
    j = p.to_json()
    iv = _intervals(j, confidence)
    bands = [load_bands()[r] for r in ("LLM throughput", "LLM TTFT", "LLM TPOT")]
    caption = ", ".join(f"{b.regime} sigma {b.sigma:.2f} over {b.rows} rows" for b in bands if b is not None)

    def within(key: str, scale: float, fmt: str) -> str:
        if key not in iv:
            return ""
        return f" ({confidence:.0%}: {iv[key]['low'] * scale:{fmt}}-{iv[key]['high'] * scale:{fmt}})"

    title = (
        f"{j['model']} on {j['count']} x {j['accelerator']} ({j['precision']}, KV {j['kv_precision']}, "
        f"{j['engine']}), {j['input_tokens']:,} in / {j['output_tokens']:,} out, {j['scenario']}"
    )
    table = Table(title=title, show_header=False, title_style="bold")
    table.caption = (
        f"{confidence:.0%} intervals from the model's out-of-sample log error ({caption}; "
        "flopex calibrate report --cross-validate)"
    )
    table.add_column("figure", style="bold")
    table.add_column("value")
    slo = ""
    if j["ttft_slo_s"] is not None:
        slo = (
            f" (SLO p99 TTFT {j['ttft_slo_s']:g} s, TPOT {j['tpot_slo_s']:g} s: {'met' if j['slo_met'] else 'NOT met'})"
        )
    mem = j["memory_gb"]
    step = j["step_s"]
    rows = [
        (
            "output throughput",
            f"{j['output_tokens_per_s']:,.0f} tokens/s{within('output_tokens_per_s', 1, ',.0f')}, "
            f"{j['requests_per_s']:,.2f} requests/s",
        ),
        (
            "TTFT mean / p99",
            f"{j['ttft_s'] * 1e3:,.1f} ms{within('ttft_s', 1e3, ',.1f')} / {j['ttft_p99_s'] * 1e3:,.1f} ms",
        ),
        (
            "TPOT mean / p99",
            f"{j['tpot_s'] * 1e3:,.2f} ms{within('tpot_s', 1e3, ',.2f')} / {j['tpot_p99_s'] * 1e3:,.2f} ms{slo}",
        ),
        ("batch per replica", f"{j['batch_size']:,.1f} sequences decoding"),
        (
            "layout",
            f"{p.layout} = tensor parallel {j['tensor_parallel']}, pipeline {j['pipeline_parallel']}, "
            f"{j['replicas']} replica(s)",
        ),
        (
            "memory per replica",
            f"{mem['usable']:,.1f} GB usable: weights {mem['weights']:,.1f}, workspace "
            f"{mem['workspace']:,.1f}, KV cache {mem['kv_cache']:,.1f} GB",
        ),
        (
            "KV cache",
            f"{j['kv_capacity_tokens']:,} tokens per replica ({mem['kv_bytes_per_token'] / 1024:,.0f} KiB/token)",
        ),
        (
            "step time",
            f"compute {step['compute'] * 1e3:,.1f} ms, memory {step['memory'] * 1e3:,.1f} ms, "
            f"communication {step['communication'] * 1e3:,.1f} ms, overhead {step['overhead'] * 1e3:,.1f} ms",
        ),
        (
            "utilisation",
            f"compute {j['compute_utilization']:.0%} of peak, memory bandwidth {j['memory_utilization']:.0%}",
        ),
        ("bound by", _BOUND_TEXT[j["bound"]]),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


@predict_app.command("llm")
def llm(
    model: Annotated[str, typer.Option("--model", help="Model id (see `flopex models list`) or a config.json path.")],
    accelerator: Annotated[str, typer.Option("--accelerator", help="Accelerator id or alias, e.g. H100-SXM.")],
    precision: Annotated[str, typer.Option("--precision", help=f"Weight precision: {', '.join(PRECISIONS)}.")],
    count: Annotated[int, typer.Option("--count", min=1, help="Accelerators in all.")] = 1,
    input_tokens: Annotated[int, typer.Option("--input-tokens", min=1, help="Prompt tokens per request.")] = 1000,
    output_tokens: Annotated[int, typer.Option("--output-tokens", min=1, help="Output tokens per request.")] = 1000,
    engine: Annotated[str | None, typer.Option("--engine", help=f"{', '.join(ENGINES)} (default per vendor).")] = None,
    tensor_parallel: Annotated[int | None, typer.Option("--tensor-parallel", min=1, help="Fix the TP degree.")] = None,
    pipeline_parallel: Annotated[
        int | None, typer.Option("--pipeline-parallel", min=1, help="Fix the pipeline stages.")
    ] = None,
    kv_precision: Annotated[str | None, typer.Option("--kv-precision", help="KV cache precision.")] = None,
    max_num_seqs: Annotated[
        int | None,
        typer.Option(
            "--max-num-seqs", min=1, help="The engine's limit on sequences in flight (default: the engine's)."
        ),
    ] = None,
    scenario: Annotated[
        str, typer.Option("--scenario", help="offline, server, interactive or concurrency:K.")
    ] = "offline",
    ttft_slo: Annotated[float | None, typer.Option("--ttft-slo", min=0.0, help="p99 TTFT limit, seconds.")] = None,
    tpot_slo: Annotated[float | None, typer.Option("--tpot-slo", min=0.0, help="p99 TPOT limit, seconds.")] = None,
    confidence: Annotated[
        float,
        typer.Option(
            "--confidence",
            min=0.5,
            max=0.99,
            help="Two-sided confidence of the intervals shown (from the "
            "model's out-of-sample error, flopex calibrate report --cross-validate).",
        ),
    ] = 0.8,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
) -> None:
    """Throughput, TTFT and TPOT of MODEL on COUNT accelerators, the layout chosen and what bounds it.

    A hosted provider (groq, cerebras, sambanova, ...) in place of an accelerator gives its published speed."""
    if load_accelerators().find(accelerator) is None:
        hosted = catalog_for(None, quiet=True).hosted
        if accelerator.lower() in {o.provider for o in hosted}:
            _hosted(hosted, accelerator, model, input_tokens, output_tokens, json)
            return
    p = choose(precision, PRECISIONS, "--precision")
    kv = None if kv_precision is None else choose(kv_precision, PRECISIONS, "--kv-precision")
    e = None if engine is None else choose(engine, ENGINES, "--engine")
    eff = efficiency_for(calibration)
    try:
        query = LLMQuery(
            model=resolve_model(model),
            accelerator=load_accelerators().resolve(accelerator),
            count=count,
            precision=p,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            scenario=parse_scenario(scenario, ttft_slo, tpot_slo),
            engine=e,
            tensor_parallel=tensor_parallel,
            pipeline_parallel=pipeline_parallel,
            kv_precision=kv,
            max_batch=max_num_seqs,
        )
        prediction = predict_llm(query, eff)
    except FlopexError as exc:
        fail(str(exc))
    if json:
        j = prediction.to_json()
        print_json({**j, "intervals": _intervals(j, confidence)})
    else:
        out_console().print(_table(prediction, confidence))


def _hosted(hosted: Sequence[HostedOffer], provider: str, model: str, i: int, o: int, json: bool) -> None:
    try:
        h: HostedPrediction = predict_hosted(hosted, provider, resolve_model(model).id, i, o)
    except FlopexError as exc:
        fail(str(exc))
    if json:
        print_json(h.to_json())
        return
    out_console().print(
        f"{h.offer.model} on {h.offer.provider} (hosted, priced per token): {h.tokens_per_s_per_user:,.0f} output "
        f"tokens/s per user (TPOT {h.tpot_s * 1e3:.2f} ms; {h.offer.speed_source}), "
        f"${h.cost_usd_per_request:.5f} per request ({h.offer.price_source})."
    )


register(predict_app)
