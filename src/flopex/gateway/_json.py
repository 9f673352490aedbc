"""JSON on the gateway's hot path: orjson (several times faster than the standard library, which matters on
every answer the gateway labels), and the standard library where orjson refuses: lone surrogates and integers
past 64 bits when writing (surrogates escaped as `\\udXXX`, still valid JSON), NaN and infinities when reading
an upstream's answer. Requests are read by the standard library (`_app._parse`), so that a client's integers
keep every digit."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps", "loads"]


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; a NaN or infinity (which strict JSON cannot write) becomes null."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # a lone surrogate, an integer past 64 bits
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")


def loads(data: bytes) -> Any:
    """An upstream's answer as JSON, NaN and infinities included (integers past 64 bits are read as floats).
    Raises ValueError where it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
