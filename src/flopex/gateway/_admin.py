"""What operators call on the gateway: /metrics, the backends' state and books, drain and undrain, and the
tenants' admin API; each behind the admin token or an admin key (with tenancy on there is no open admin API)."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from flopex.gateway._errors import JSONResponse, error_response
from flopex.gateway._tenant_api import tenant_routes

if TYPE_CHECKING:
    from flopex.gateway._app import Gateway

__all__ = ["operator_routes"]


def operator_routes(gw: Gateway, admin_token: str | None) -> list[BaseRoute]:
    tenancy, config = gw.tenancy, gw.config

    async def authorised(request: Request) -> bool:
        """The admin token, or an admin key; with tenancy on there is no open admin API."""
        header = request.headers.get("authorization", "")
        if admin_token is not None and hmac.compare_digest(header.encode(), f"Bearer {admin_token}".encode()):
            return True
        if tenancy is not None:
            key = await tenancy.key_for(request)
            return key is not None and key.admin
        return admin_token is None

    async def metrics(request: Request) -> Response:
        if tenancy is not None and not config.metrics_public and not await authorised(request):
            return error_response(401, "with tenants on, /metrics needs the admin token or an admin key (or "
                                  "`metrics_public: true`)", "unauthorised")  # fmt: skip
        return Response(gw.metrics.exposition(), media_type="text/plain; version=0.0.4")

    async def backends_view(request: Request) -> Response:
        if not await authorised(request):
            return error_response(401, "admin endpoints need the admin token", "unauthorised")
        now = gw.clock.now()
        data = [
            {"id": s.spec.id, "model": s.spec.model, "in_flight": s.in_flight, "available": s.available(now),
             "draining": s.draining, "ttft_s": s.ttft, "tpot_s": s.tpot, "served": s.served, "errors": s.errors,
             "usd_per_token_now": s.usd_per_token(), "books": gw.metering.view(s.spec.id)}
            for pool in gw.pools.values() for s in pool.states
        ]  # fmt: skip
        shared = gw.shared is not None and gw.shared.connected
        return JSONResponse({"backends": data, "health_shared": shared})

    async def drain(request: Request) -> Response:
        if not await authorised(request):
            return error_response(401, "admin endpoints need the admin token", "unauthorised")
        state = gw.state(request.path_params["backend"])
        if state is None:
            return error_response(404, f"no backend {request.path_params['backend']!r}", "backend_not_found")
        state.draining = request.url.path.endswith("/drain")
        return JSONResponse({"id": state.spec.id, "draining": state.draining, "in_flight": state.in_flight})

    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/backends", backends_view, methods=["GET"]),
        *tenant_routes(tenancy, set(gw.pools), authorised),
        Route("/admin/backends/{backend}/drain", drain, methods=["POST"]),
        Route("/admin/backends/{backend}/undrain", drain, methods=["POST"]),
    ]
