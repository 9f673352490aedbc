"""A bare pass-through proxy: the Python ceiling the gateway benchmark measures flopex against.

Starlette, uvicorn (one worker, uvloop, httptools) and one pooled aiohttp session, and nothing else: no
routing, no validation, no labels, no metrics, no limits. The first path segment names an upstream
(`--upstream fast=http://127.0.0.1:9000`); the rest of the path, the body and the content type go to it
unchanged, and its status, content type and body come back. An event stream comes back chunk by chunk as it
arrives, anything else in one piece.

    python bench/bare_proxy.py --port 8100 --upstream fast=http://127.0.0.1:9000 --upstream slow=...
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["create_proxy"]


def create_proxy(upstreams: dict[str, str]) -> Starlette:
    """The proxy as an ASGI app: `/{name}/{path}` goes to `upstreams[name]` + `/{path}`."""
    sessions: list[aiohttp.ClientSession] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))
        yield
        await sessions[0].close()

    async def forward(request: Request) -> Response:
        base = upstreams.get(request.path_params["name"])
        if base is None:
            return PlainTextResponse("no such upstream", status_code=404)
        url = f"{base}/{request.path_params['path']}"
        headers = {"content-type": request.headers.get("content-type", "application/json")}
        upstream = await sessions[0].request(request.method, url, data=await request.body(), headers=headers)
        kind = upstream.headers.get("content-type", "application/octet-stream")
        if kind.startswith("text/event-stream"):
            return StreamingResponse(_chunks(upstream), status_code=upstream.status, media_type=kind)
        async with upstream:
            body = await upstream.read()
        return Response(body, status_code=upstream.status, media_type=kind)

    route = Route("/{name}/{path:path}", forward, methods=["GET", "POST"])
    return Starlette(routes=[route], lifespan=lifespan)


async def _chunks(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async with upstream:
        async for chunk in upstream.content.iter_any():
            yield chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="append", default=[], help="NAME=URL; repeatable")
    args = parser.parse_args()
    upstreams = {name: url for name, _, url in (item.partition("=") for item in args.upstream)}
    uvicorn.run(create_proxy(upstreams), host="127.0.0.1", port=args.port, workers=1, loop="uvloop",
                http="httptools", log_level="warning", access_log=False)  # fmt: skip


if __name__ == "__main__":
    main()
