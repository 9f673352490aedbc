"""The OpenAPI description of the gateway's own surface (`GET /openapi.json`): the OpenAI-compatible endpoints
as the gateway checks them, its health, metrics and admin endpoints, and the error shape every one of them
answers with. Fuzzers (schemathesis in the tests) read it; so can client generators."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi"]

_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
}

_SAMPLING: dict[str, Any] = {
    "max_tokens": {"type": "integer", "minimum": 1},
    "max_completion_tokens": {"type": "integer", "minimum": 1},
    "stream": {"type": "boolean"},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "n": {"type": "integer", "minimum": 1, "maximum": 8},
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "an error", "content": {"application/json": {"schema": _ERROR}}} for c in codes}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _ok(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema}} if schema else {"application/json": {}}
    return {"200": {"description": "answered", "content": content}}


def _proxied(summary: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": _json(body),
            "responses": {**_ok(), **_errors(400, 401, 402, 403, 404, 413, 429, 499, 502, 503, 504)},
        }
    }


def openapi(models: list[str]) -> dict[str, Any]:
    """The description, with the model names this gateway serves."""
    model = {"type": "string", "enum": models} if models else {"type": "string"}
    chat = {"type": "object", "required": ["model", "messages"],
            "properties": {"model": model, "messages": {"type": "array", "items": _MESSAGE}, **_SAMPLING}}  # fmt: skip
    completion = {"type": "object", "required": ["model", "prompt"],
                  "properties": {"model": model, "prompt": {"type": "string"}, **_SAMPLING}}  # fmt: skip
    embedding = {"type": "object", "required": ["model", "input"],
                 "properties": {"model": model, "input": {"type": "string"}}}  # fmt: skip
    listing = {"type": "object", "required": ["object", "data"],
               "properties": {"object": {"const": "list"}, "data": {"type": "array"}}}  # fmt: skip
    backend = {"name": "backend", "in": "path", "required": True, "schema": {"type": "string"}}
    admin = {"post": {"summary": "drain or undrain a backend", "parameters": [backend],
                      "responses": {**_ok(), **_errors(401, 404)}}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "flopex gateway", "version": "1"},
        "paths": {
            "/v1/chat/completions": _proxied("a chat completion, routed and labelled", chat),
            "/v1/completions": _proxied("a text completion, routed and labelled", completion),
            "/v1/embeddings": _proxied("embeddings, routed and labelled", embedding),
            "/v1/models": {"get": {"summary": "the models served", "responses": {**_ok(listing), **_errors(401)}}},
            "/v1/models/{model}": {
                "get": {
                    "summary": "one model",
                    "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {**_ok(), **_errors(401, 404)},
                }
            },
            "/healthz": {"get": {"summary": "the process is up", "responses": _ok()}},
            "/readyz": {
                "get": {
                    "summary": "every model has a backend",
                    "responses": {**_ok(), "503": {"description": "not ready", "content": {"application/json": {}}}},
                }
            },  # fmt: skip
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}, **_errors(401)},
                }
            },  # fmt: skip
            "/admin/backends": {"get": {"summary": "backends and their books", "responses": {**_ok(), **_errors(401)}}},
            "/admin/backends/{backend}/drain": admin,
            "/admin/backends/{backend}/undrain": admin,
        },
    }
