"""The tenants' HTTP API: `GET /v1/usage` (the caller's own tenant) and the admin endpoints for keys and
budgets (the admin token or an admin key)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flopex.errors import FlopexError, did_you_mean
from flopex.gateway._errors import error_response
from flopex.gateway._tenancy import Tenancy
from flopex.ledger import GROUP_BY

__all__ = ["tenant_routes"]


def tenant_routes(
    tenancy: Tenancy | None, models: Collection[str], authorised: Callable[[Request], Awaitable[bool]]
) -> list[Route]:
    """The routes; without tenancy they answer 404 and say how to turn tenants on."""

    async def usage(request: Request) -> Response:
        if tenancy is None:
            return error_response(404, "usage needs the ledger (run the gateway with tenants on)", "no_ledger")
        key = await tenancy.key_for(request)
        if key is None:
            return error_response(401, "Incorrect or missing API key.", "invalid_api_key")
        try:
            since = float(request.query_params.get("since", "0"))
            until = float(request.query_params.get("until", "inf"))
        except ValueError:
            return error_response(400, "`since` and `until` are Unix times in seconds", "invalid_time")
        group_by = request.query_params.get("group_by", "model")
        if group_by not in GROUP_BY:
            hint = did_you_mean(group_by, GROUP_BY)
            return error_response(400, f"`group_by` is {', '.join(GROUP_BY)}.{hint}", "invalid_group_by")
        # the caller's own tenant, whatever the query asks for
        rows = await asyncio.to_thread(tenancy.store.usage, key.tenant_id, since, group_by, until)
        return JSONResponse({"object": "list", "tenant": key.tenant_id, "group_by": group_by, "data": rows})

    async def admin_denied(request: Request) -> Response | None:
        """Why the caller may not use the keys and budgets API, if it may not."""
        if tenancy is None:
            return error_response(404, "keys and budgets need a `tenants:` section in the gateway's configuration",
                                  "no_ledger")  # fmt: skip
        if not await authorised(request):
            return error_response(401, "admin endpoints need the admin token or an admin key", "unauthorised")
        return None

    async def admin_keys(request: Request) -> Response:
        if (denied := await admin_denied(request)) is not None:
            return denied
        assert tenancy is not None
        if request.method == "GET":
            tenant = request.query_params.get("tenant")
            return JSONResponse({"data": await asyncio.to_thread(tenancy.store.list_keys, tenant)})
        try:
            spec = json.loads(await request.body())
            if not isinstance(spec, dict) or not isinstance(spec.get("tenant"), str):
                raise ValueError
        except ValueError:
            return error_response(400, 'the body is {"tenant": "...", "models": [...], "jurisdictions": [...], '
                                  '"tier": "interactive|batch", "rpm": n, "tpm": n, "name": "..."}',
                                  "invalid_key_spec")  # fmt: skip
        unknown = [m for m in spec.get("models") or () if m not in models]
        if unknown:
            hint = did_you_mean(str(unknown[0]), models)
            return error_response(400, f"models: this gateway serves no `{unknown[0]}`.{hint}", "model_not_found")
        try:
            key_id, token = await asyncio.to_thread(
                tenancy.store.create_key, spec["tenant"], models=spec.get("models") or (),
                jurisdictions=spec.get("jurisdictions") or (), rpm=spec.get("rpm"), tpm=spec.get("tpm"),
                tier=spec.get("tier", "interactive"), admin=bool(spec.get("admin", False)), name=spec.get("name"),
            )  # fmt: skip
        except (FlopexError, TypeError) as exc:
            return error_response(400, f"key: {exc}", "invalid_key_spec")
        body = {"id": key_id, "tenant": spec["tenant"], "key": token, "note": "shown once; store it now"}
        return JSONResponse(body, 201)

    async def admin_revoke(request: Request) -> Response:
        if (denied := await admin_denied(request)) is not None:
            return denied
        assert tenancy is not None
        key_id = request.path_params["key"]
        if not await asyncio.to_thread(tenancy.store.revoke, key_id):
            return error_response(404, f"no key with id {key_id!r} (`GET /admin/keys` lists them)", "key_not_found")
        tenancy.keys.clear()  # this replica forgets at once; others within the key cache's 10 s
        return JSONResponse({"id": key_id, "revoked": True})

    async def admin_budgets(request: Request) -> Response:
        if (denied := await admin_denied(request)) is not None:
            return denied
        assert tenancy is not None
        if request.method == "GET":
            tenant = request.query_params.get("tenant")
            return JSONResponse({"data": await asyncio.to_thread(tenancy.store.list_budgets, tenant)})
        try:
            b = json.loads(await request.body())
            budget_id = await asyncio.to_thread(tenancy.store.set_budget, b["scope"], b["scope_id"], b["period"],
                                                float(b["usd"]), bool(b.get("hard", True)))  # fmt: skip
        except (ValueError, KeyError, TypeError, FlopexError) as exc:
            example = '{"scope": "tenant", "scope_id": "acme", "period": "day", "usd": 50, "hard": true}'
            return error_response(400, f"budget: {exc}; the body is {example}", "invalid_budget")
        return JSONResponse({"id": budget_id}, 201)

    return [
        Route("/v1/usage", usage, methods=["GET"]),
        Route("/admin/keys", admin_keys, methods=["GET", "POST"]),
        Route("/admin/keys/{key}/revoke", admin_revoke, methods=["POST"]),
        Route("/admin/budgets", admin_budgets, methods=["GET", "POST"]),
    ]
