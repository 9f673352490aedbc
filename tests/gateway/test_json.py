"""The gateway reads requests with orjson where it can and the standard library where it must: whatever the
path, a body means what the standard library says it means, or it is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flopex.gateway._json import dumps, parse_request

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _strict(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(body, parse_constant=refuse)


@given(values)
@example(2**70)
@example(-(2**63) - 1)
@example({"seed": 12345678901234567890123, "x": [1.5e300, -0.0]})
def test_any_json_value_reads_as_the_standard_library_reads_it(value: Any) -> None:
    for body in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()):
        got = parse_request(body)
        assert got == _strict(body) and type(got) is type(_strict(body))


@given(st.binary(max_size=64))
@example(b'{"a": NaN}')
@example(b'{"a": "\\ud800"}')
@example(b'{"a": 1e999}')
@example(b"\xef\xbb\xbf{}")
def test_any_bytes_are_read_as_the_standard_library_reads_them_or_refused(body: bytes) -> None:
    try:
        want = _strict(body)
    except (ValueError, RecursionError):
        with pytest.raises(ValueError):
            parse_request(body)
        return
    try:
        got = parse_request(body)
    except ValueError as exc:
        assert "surrogate" in str(exc)  # valid JSON whose text no backend can be sent
        return
    assert got == want


@pytest.mark.parametrize(
    ("body", "why"),
    [(b"[" * 5000 + b"]" * 5000, "nested too deeply"), (b'{"m": "\\udfff"}', "lone UTF-16 surrogate"),
     (b'{"t": Infinity}', "Infinity is not a JSON number")],
)  # fmt: skip
def test_a_refusal_says_why(body: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_request(body)


@given(values)
def test_written_json_reads_back_as_it_was(value: Any) -> None:
    assert json.loads(dumps(value)) == value


def test_what_orjson_cannot_write_is_still_written() -> None:
    assert json.loads(dumps({"big": 2**80, "lone": "\udc80"})) == {"big": 2**80, "lone": "\udc80"}
