"""JSON on the gateway's hot path: orjson (several times faster than the standard library, which matters on
every answer the gateway labels), and the standard library where orjson refuses: lone surrogates and integers
past 64 bits when writing (surrogates escaped as `\\udXXX`, still valid JSON), NaN and infinities when reading
an upstream's answer, and every request orjson refuses or that holds an integer past 64 bits (which orjson would
read as a float), so that the standard library's reading and its error messages decide."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["dumps", "loads", "parse_request"]

_LONG_NUMBER = re.compile(rb"\d{19}")  # 19 digits may be past 64 bits


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


def parse_request(body: bytes) -> Any:
    """A request body as JSON: strict JSON (no NaN or Infinity), nested at most as deep as Python's parser goes,
    text without lone surrogates (which no backend could be sent), integers with every digit. Raises ValueError
    saying why a body is not."""
    if _LONG_NUMBER.search(body) is None:
        try:
            return orjson.loads(body)  # strict JSON, surrogates paired, valid UTF-8: as the checks below
        except orjson.JSONDecodeError:
            pass  # the standard library decides, and says why
    try:
        payload = json.loads(body, parse_constant=_no_constant)
        if b"\\ud" in body.lower():  # a surrogate can only come from a \u escape: the common case skips this
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff without its pair)") from None
    return payload


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
