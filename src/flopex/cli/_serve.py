"""`flopex serve` (the gateway) and `flopex emulate` (an emulated backend)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from flopex.catalog import PRECISIONS
from flopex.cli._common import (
    CalibrationOption,
    CatalogOption,
    catalog_for,
    choose,
    data_dir,
    efficiency_for,
    err_console,
    fail,
)
from flopex.economics import load_energy_table
from flopex.errors import FlopexError
from flopex.gateway import (
    EmulatorFaults,
    Tenancy,
    create_app,
    create_emulator,
    load_gateway_config,
    resolve_backends,
    server_settings,
)
from flopex.ledger import build_ledger, default_url
from flopex.models import resolve_model
from flopex.perf import LLMQuery, Scenario, predict_llm, replica_for

__all__ = ["emulate_command", "serve_command"]


def serve_command(
    config: Annotated[Path | None, typer.Option("--config", help="Gateway YAML (see examples/gateway.yaml).")] = None,
    plan: Annotated[
        Path | None, typer.Option("--plan", help="A plan document (`flopex plan --json`): its deployments as backends.")
    ] = None,
    endpoint: Annotated[
        list[str] | None,
        typer.Option("--endpoint", help="DEPLOYMENT_OR_OFFER=URL for a plan's deployment; repeatable."),
    ] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes (one per core).")] = 1,
    catalog: CatalogOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """The OpenAI-compatible gateway: routes, fails over and labels every answer with cost, energy and carbon."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config is None and plan is None:
        fail("give --config GATEWAY.yaml, or --plan PLAN.json with an --endpoint DEPLOYMENT=URL per deployment.")
    endpoints = {}
    for item in endpoint or []:
        key, sep, url = item.partition("=")
        if not sep or not key or not url:
            fail(f"--endpoint {item!r}: write DEPLOYMENT=URL, e.g. --endpoint 'chat|aws/...|fp8|x1=http://10.0.0.5:8000/v1'.")
        endpoints[key] = url
    try:
        cfg = load_gateway_config(config, plan=plan, endpoints=endpoints)
        backends = resolve_backends(
            cfg, catalog_for(catalog, quiet=True), efficiency_for(calibration), load_energy_table()
        )
    except FlopexError as exc:
        fail(str(exc))
    import os

    token = os.environ.get(cfg.admin_token_env) if cfg.admin_token_env else None
    tenancy = None
    if cfg.tenants is not None and cfg.tenants.enabled:
        t = cfg.tenants
        url = t.database_url or os.environ.get("FLOPEX_DATABASE_URL") or default_url(data_dir())
        journal = Path(t.journal_dir) if t.journal_dir else data_dir() / "journal"
        try:
            parts = build_ledger(url, journal, t.redis_url or os.environ.get("FLOPEX_REDIS_URL"), t.write_interval_s)
        except FlopexError as exc:
            fail(str(exc))
        tenancy = Tenancy(parts, t.default_max_tokens)
        shared = "Redis" if parts.redis is not None else ("the database" if parts.store.dialect != "sqlite" else None)
        err_console().print(
            f"tenants on: ledger at {parts.store.safe_url}, journal in {journal}; budgets and rate limits "
            + (f"shared through {shared}" if shared else "kept in this process")
        )
    app = create_app(cfg, backends, admin_token=token, tenancy=tenancy)
    count = sum(len(b) for b in backends.values())
    err_console().print(f"flopex gateway on http://{host}:{port}/v1: {len(backends)} model(s), {count} backend(s)")
    if workers > 1:
        err_console().print("note: each worker keeps its own backend health and counters; shared state needs Redis.")
    uvicorn.run(app, host=host, port=port, workers=1, loop="uvloop", log_level="warning",
                timeout_graceful_shutdown=30, access_log=False, **server_settings(cfg.limits))  # fmt: skip


def emulate_command(
    model: Annotated[str, typer.Option("--model", help="Model id the backend serves.")],
    accelerator: Annotated[str, typer.Option("--accelerator", help="Accelerator it emulates, e.g. H100-SXM.")],
    precision: Annotated[str, typer.Option("--precision")] = "fp8",
    count: Annotated[int, typer.Option("--count", min=1)] = 1,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 9000,
    time_scale: Annotated[
        float, typer.Option("--time-scale", min=0.0, help="Multiply every delay (0 = instant).")
    ] = 1.0,
    max_queue: Annotated[int, typer.Option("--max-queue", min=0, help="Waiting requests before 429.")] = 256,
    error_rate: Annotated[float, typer.Option("--error-rate", min=0.0, max=1.0)] = 0.0,
    hang: Annotated[bool, typer.Option("--hang", help="Accept requests and never answer.")] = False,
    slow: Annotated[float, typer.Option("--slow", min=0.0, help="Multiply every delay by this.")] = 1.0,
    die_after: Annotated[int, typer.Option("--die-after", min=0, help="Exit after this many requests.")] = 0,
    drop_rate: Annotated[float, typer.Option("--drop-rate", min=0.0, max=1.0, help="Drop streams mid-answer.")] = 0.0,
    calibration: CalibrationOption = None,
) -> None:
    """An OpenAI-compatible backend whose timing follows the performance model for that hardware."""
    p = choose(precision, PRECISIONS, "--precision")
    eff = efficiency_for(calibration)
    try:
        from flopex.catalog import load_accelerators

        query = LLMQuery(resolve_model(model), load_accelerators().resolve(accelerator), count, p, 1000, 200,
                         Scenario("server", 0, 2.0, 0.2))  # fmt: skip
        replica = replica_for(predict_llm(query, eff), eff)
    except FlopexError as exc:
        fail(str(exc))
    faults = EmulatorFaults(error_rate=error_rate, hang=hang, slow=slow, die_after=die_after, drop_rate=drop_rate)
    app = create_emulator(model, replica, time_scale=time_scale, max_queue=max_queue, faults=faults)
    err_console().print(f"emulated {model} on {count} x {accelerator} ({p}) at http://{host}:{port}/v1")
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False)
