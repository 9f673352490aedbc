"""What the gateway checks of an OpenAI request before routing it: the input a path needs, and the types and ranges
of the fields a backend reads. A request that fails a check is the client's fault: it is answered 400 in OpenAI's
shape, naming the field, and never reaches a backend (where it could fail, and count against the backend).
Fields the gateway does not know pass unchecked; the backend judges them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from flopex.gateway._errors import JSONResponse

__all__ = ["Problem", "request_problem"]

_Check = Callable[[Any], bool]


def _whole(lo: int, hi: int | None = None) -> _Check:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v and (hi is None or v <= hi)


def _number(lo: float, hi: float) -> _Check:
    return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and lo <= v <= hi


def _text_or_list(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and len(v) > 0)


def _messages(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in v)


def _stop(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))


_FIELDS: dict[str, tuple[_Check, str]] = {  # optional fields (null is their default): check, what it must be
    "max_tokens": (_whole(1), "a whole number of at least 1"),
    "max_completion_tokens": (_whole(1), "a whole number of at least 1"),
    "n": (_whole(1, 128), "a whole number from 1 to 128"),
    "temperature": (_number(0, 2), "a number from 0 to 2"),
    "top_p": (_number(0, 1), "a number from 0 to 1"),
    "presence_penalty": (_number(-2, 2), "a number from -2 to 2"),
    "frequency_penalty": (_number(-2, 2), "a number from -2 to 2"),
    "seed": (_whole(-(2**63)), "a whole number"),
    "stream": (lambda v: isinstance(v, bool), "true or false"),
    "stream_options": (lambda v: isinstance(v, dict), "an object"),
    "stop": (_stop, "a string or a list of strings"),
}

_INPUTS: dict[str, tuple[str, _Check, str]] = {  # path -> its required input: field, check, what it must be
    "chat/completions": ("messages", _messages, "a non-empty list of messages, each an object with a `role`"),
    "completions": ("prompt", _text_or_list, "a string or a non-empty list"),
    "embeddings": ("input", _text_or_list, "a string or a non-empty list"),
}


@dataclass(frozen=True)
class Problem:
    """What is wrong with a request: the field, and a message that says what it must be."""

    param: str
    message: str
    code: str  # "missing_required_parameter" or "invalid_value", as OpenAI's API names them

    def response(self, request_id: str | None) -> Response:
        error = {"message": self.message, "type": "invalid_request_error", "param": self.param, "code": self.code}
        return JSONResponse({"error": error}, 400, headers={"x-request-id": request_id} if request_id else None)


def request_problem(path: str, payload: dict[str, Any]) -> Problem | None:
    """The first problem with the request to `path` (as `chat/completions`), or None."""
    if path in _INPUTS:
        field, check, what = _INPUTS[path]
        if field not in payload:
            return Problem(field, f"`{field}` is required: {what}", "missing_required_parameter")
        if not check(payload[field]):
            return _invalid(field, what, payload[field])
    for field, (check, what) in _FIELDS.items():
        value = payload.get(field)
        if value is not None and not check(value):
            return _invalid(field, what, value)
    return None


def _invalid(field: str, what: str, value: Any) -> Problem:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return Problem(field, f"`{field}` must be {what}, not {shown}", "invalid_value")
