"""`flopex serve` (the gateway) and `flopex emulate` (an emulated backend)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from starlette.applications import Starlette

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
    GatewayConfig,
    Tenancy,
    create_app,
    create_emulator,
    load_gateway_config,
    resolve_backends,
    server_settings,
)
from flopex.ledger import build_ledger, default_url, safe_url
from flopex.models import resolve_model
from flopex.perf import LLMQuery, Scenario, predict_llm, replica_for

__all__ = ["app_from_env", "emulate_command", "serve_command"]


_ARGS_ENV = "FLOPEX_SERVE_ARGS"  # how `flopex serve --workers N` hands its arguments to each worker process


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
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Processes sharing the port (up to one per core).")
    ] = 1,
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
            fail(
                f"--endpoint {item!r}: write DEPLOYMENT=URL, e.g. --endpoint 'chat|aws/...|fp8|x1=http://10.0.0.5:8000/v1'."
            )
        endpoints[key] = url
    args: dict[str, Any] = {
        "config": None if config is None else str(config.resolve()),
        "plan": None if plan is None else str(plan.resolve()),
        "endpoints": endpoints,
        "catalog": [str(p.resolve()) for p in catalog or []],
        "calibration": [str(p.resolve()) for p in calibration or []],
    }
    cfg, app, tenancy = _gateway(args, announce=True)
    pools = app.state.gateway.pools
    count = sum(len(pool.states) for pool in pools.values())
    err_console().print(f"flopex gateway on http://{host}:{port}/v1: {len(pools)} model(s), {count} backend(s)")
    target: Any = app
    if workers > 1:
        _check_shared(workers, cfg, tenancy)
        if tenancy is not None:
            tenancy.store.engine.dispose()  # this process only supervises; each worker builds its own gateway
        os.environ[_ARGS_ENV] = json.dumps(args)
        # prometheus_client's multiprocess mode: each worker writes its counters to files here, /metrics sums them
        metrics_dir = tempfile.mkdtemp(prefix="flopex-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        target = "flopex.cli._serve:app_from_env"
    try:
        uvicorn.run(target, factory=workers > 1, host=host, port=port, workers=workers, loop="uvloop",
                    log_level="warning", timeout_graceful_shutdown=30, access_log=False,
                    **server_settings(cfg.limits))  # fmt: skip
    finally:
        if workers > 1:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def app_from_env() -> Starlette:
    """The gateway in a worker process of `flopex serve --workers N` (uvicorn's app factory), built from the
    arguments the parent process put in FLOPEX_SERVE_ARGS."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raw = os.environ.get(_ARGS_ENV)
    if not raw:
        fail(f"{_ARGS_ENV} is not set: worker processes are started by `flopex serve --workers N`.")
    return _gateway(json.loads(raw), announce=False)[1]


def _gateway(args: dict[str, Any], *, announce: bool) -> tuple[GatewayConfig, Starlette, Tenancy | None]:
    """Load the configuration, resolve its backends, put the ledger together when tenants are on, and build the
    app; with `announce`, say where the ledger is."""
    config, plan = (None if args[k] is None else Path(args[k]) for k in ("config", "plan"))
    try:
        cfg = load_gateway_config(config, plan=plan, endpoints=args["endpoints"])
        backends = resolve_backends(
            cfg,
            catalog_for([Path(p) for p in args["catalog"]], quiet=True),
            efficiency_for([Path(p) for p in args["calibration"]]),
            load_energy_table(),
        )
    except FlopexError as exc:
        fail(str(exc))
    cfg = _share_health(cfg)
    if announce and cfg.health.redis_url:
        err_console().print(f"backend health and ejections shared through Redis at {safe_url(cfg.health.redis_url)}")
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
        if announce:
            err_console().print(
                f"tenants on: ledger at {parts.store.safe_url}, journal in {journal}; budgets and rate limits "
                + (f"shared through {shared}" if shared else "kept in this process")
            )
    return cfg, create_app(cfg, backends, admin_token=token, tenancy=tenancy), tenancy


def _share_health(cfg: GatewayConfig) -> GatewayConfig:
    """Backend health goes through the Redis the configuration names for it, else the tenants' Redis, else
    FLOPEX_REDIS_URL's."""
    if cfg.health.redis_url:
        return cfg
    tenants = cfg.tenants.redis_url if cfg.tenants is not None and cfg.tenants.enabled else None
    url = tenants or os.environ.get("FLOPEX_REDIS_URL")
    return cfg.model_copy(update={"health": cfg.health.model_copy(update={"redis_url": url})}) if url else cfg


def _check_shared(workers: int, cfg: GatewayConfig, tenancy: Tenancy | None) -> None:
    """Say what each worker keeps to itself; refuse budgets that each worker would enforce alone."""
    if tenancy is not None and tenancy.parts.redis is None and tenancy.store.dialect == "sqlite":
        fail(
            f"--workers {workers} with tenants on SQLite and no Redis: each worker would let a budget be spent in "
            "full, and a rate limit be used in full. Set tenants.redis_url (or FLOPEX_REDIS_URL), or run one worker."
        )
    shared = "budgets and rate limits are shared through Redis"
    if tenancy is None:
        shared = "tenants are off"
    elif tenancy.parts.redis is None:
        shared = "budgets are shared through the database, but each worker enforces rate limits alone (set Redis)"
    health = (
        "backend health and ejections are shared through Redis"
        if cfg.health.redis_url
        else "each keeps its own backend health and ejections (set health.redis_url or FLOPEX_REDIS_URL to share them)"
    )
    err_console().print(
        f"{workers} worker processes share the port; /metrics sums their counters. {health[0].upper()}{health[1:]}; "
        f"each keeps its own in-flight counts and limits and connection limit; {shared}."
    )


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
