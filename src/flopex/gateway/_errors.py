"""Errors in OpenAI's shape, as every gateway endpoint answers them."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse as _StarletteJSON

from flopex.gateway._json import dumps

__all__ = ["JSONResponse", "error_response"]


class JSONResponse(_StarletteJSON):
    """JSON as UTF-8 (so CJK text is not inflated into escapes), except where the content holds a lone
    surrogate (which UTF-8 cannot carry): then escaped as `\\udXXX`, still valid JSON. Never an error."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
    499: "client_closed_request", 500: "api_error", 502: "api_error", 503: "api_error", 504: "api_error",
}  # fmt: skip


def error_response(
    status: int, message: str, code: str | None = None, request_id: str | None = None, retry_after: float | None = None
) -> JSONResponse:
    """An error in OpenAI's shape, with `x-request-id` and `Retry-After` where it applies."""
    headers = {}
    if request_id:
        headers["x-request-id"] = request_id
    if retry_after is not None:
        headers["retry-after"] = str(max(1, round(retry_after)))
    body = {"error": {"message": message, "type": _ERROR_TYPES.get(status, "api_error"), "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)
