"""Tests of message decoding: codec selection, safety and size limits."""

from __future__ import annotations

import json

import msgpack
import pytest

from service.codecs import (
    JSON,
    MSGPACK,
    content_type_from_headers,
    decode_payload,
    detect_content_type,
    encode_json,
    encode_msgpack,
)
from service.errors import REASONS, InvalidInput
from service.limits import Limits

LIMITS = Limits()
EVENT = {"event_id": "e-1", "kind": "pair", "prompt": "p", "chosen": "a", "rejected": "", "weight": 0.5}


def reject(value: bytes | None, headers=None, limits: Limits = LIMITS) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        decode_payload(value, headers, limits)
    return info.value


def test_json_round_trip_without_header():
    obj, content_type = decode_payload(encode_json(EVENT), None, LIMITS)
    assert obj == EVENT
    assert content_type == JSON


def test_msgpack_round_trip_without_header():
    obj, content_type = decode_payload(encode_msgpack(EVENT), None, LIMITS)
    assert obj == EVENT
    assert content_type == MSGPACK


def test_json_with_leading_whitespace_detected():
    assert detect_content_type(b"  \n{}") == JSON
    assert detect_content_type(b"\x81\xa1a\x01") == MSGPACK


@pytest.mark.parametrize(
    "headers",
    [
        [("content-type", b"application/msgpack")],
        [("Content-Type", b"application/x-msgpack")],
        {"content-type": b"application/vnd.msgpack"},
        [("other", b"x"), ("CONTENT-TYPE", b"application/msgpack; charset=binary")],
    ],
)
def test_msgpack_header_forms(headers):
    obj, content_type = decode_payload(encode_msgpack(EVENT), headers, LIMITS)
    assert content_type == MSGPACK
    assert obj["event_id"] == "e-1"


def test_header_overrides_detection():
    # A JSON body sent with a msgpack header is decoded as msgpack and fails.
    error = reject(encode_json(EVENT), [("content-type", b"application/msgpack")])
    assert error.reason == "invalid_msgpack"


def test_json_header_with_charset():
    obj, content_type = decode_payload(encode_json(EVENT), {"content-type": "application/json; charset=utf-8"}, LIMITS)
    assert content_type == JSON
    assert obj == EVENT


def test_unsupported_content_type():
    error = reject(encode_json(EVENT), [("content-type", b"application/x-python-pickle")])
    assert error.reason == "unsupported_content_type"
    assert "application/x-python-pickle" in error.detail


def test_no_content_type_header_returns_none():
    assert content_type_from_headers([("trace-id", b"1")]) is None
    assert content_type_from_headers(None) is None


@pytest.mark.parametrize("value", [None, b""])
def test_empty_payload(value):
    assert reject(value).reason == "empty_payload"


def test_size_limit_is_inclusive():
    body = encode_json({"event_id": "e", "pad": "x" * 100})
    decode_payload(body, None, Limits(max_event_bytes=len(body)))
    error = reject(body, limits=Limits(max_event_bytes=len(body) - 1))
    assert error.reason == "too_large"
    assert f"{len(body)} bytes" in error.detail


def test_size_limit_checked_before_decoding():
    assert reject(b"{" * 2_000_000).reason == "too_large"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (b'{"a": ', "Expecting value"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b'{"a": "\xff"}', "UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "RecursionError"),
    ],
)
def test_invalid_json(value, fragment):
    error = reject(value)
    assert error.reason == "invalid_json"
    assert fragment in error.detail


def test_msgpack_ext_type_rejected():
    packed = msgpack.packb({"event_id": "e", "x": msgpack.ExtType(7, b"\x00" * 4)})
    error = reject(packed)
    assert error.reason == "invalid_msgpack"
    assert "extension type 7" in error.detail


def test_msgpack_timestamp_ext_rejected():
    # Timestamps are ext type -1; they must not decode into datetime objects.
    packed = msgpack.packb({"event_id": "e", "t": msgpack.Timestamp(1, 0)})
    assert reject(packed).reason == "invalid_msgpack"


def test_msgpack_integer_map_key_rejected():
    packed = msgpack.packb({1: "x"})
    assert reject(packed).reason == "invalid_msgpack"


def test_msgpack_binary_value_rejected():
    packed = msgpack.packb({"event_id": "e", "prompt": b"\x00\x01"}, use_bin_type=True)
    error = reject(packed)
    assert error.reason == "invalid_msgpack"
    assert "/prompt" in error.detail


def test_msgpack_trailing_bytes_rejected():
    assert reject(encode_msgpack(EVENT) + b"\x00").reason == "invalid_msgpack"


def test_msgpack_invalid_utf8_rejected():
    # fixstr of length 2 holding invalid UTF-8, as a map value.
    assert reject(b"\x81\xa1a\xa2\xff\xfe").reason == "invalid_msgpack"


def test_msgpack_declared_array_longer_than_data():
    # array32 header claiming 2**31 items: rejected without allocating them.
    assert reject(b"\x81\xa1a\xdd\x80\x00\x00\x00").reason == "invalid_msgpack"


def test_nesting_depth_limit():
    nested: dict = {"event_id": "e"}
    node = nested
    for _ in range(20):
        node["child"] = {}
        node = node["child"]
    error = reject(encode_msgpack(nested), limits=Limits(max_depth=10))
    assert error.reason == "invalid_msgpack"
    assert "max_depth=10" in error.detail


@pytest.mark.parametrize("value", [b"[1, 2]", b'"text"', b"42", encode_msgpack([1, 2]), encode_msgpack("s")])
def test_not_an_object(value):
    assert reject(value).reason == "not_an_object"


def test_encode_json_rejects_nan():
    with pytest.raises(ValueError):
        encode_json({"x": float("nan")})


def test_encode_json_is_compact_utf8():
    assert encode_json({"a": "é"}) == '{"a":"é"}'.encode()
    assert json.loads(encode_json(EVENT)) == EVENT


def test_invalid_input_rejects_unknown_reason():
    with pytest.raises(ValueError):
        InvalidInput("bad_reason", "detail")
    assert "schema" in REASONS
