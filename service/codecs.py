"""Decoding and encoding of Kafka message values (JSON and MessagePack).

Only data codecs are used: JSON through the standard library and MessagePack with
extension types rejected, so a message can never run code while it is decoded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import msgpack

from service.errors import InvalidInput, preview
from service.limits import Limits

logger = logging.getLogger(__name__)

JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"
ContentType = Literal["application/json", "application/msgpack"]

CONTENT_TYPE_HEADER: Final = "content-type"
_CONTENT_TYPES: Final[dict[str, ContentType]] = {
    "application/json": JSON,
    "text/json": JSON,
    "application/msgpack": MSGPACK,
    "application/x-msgpack": MSGPACK,
    "application/vnd.msgpack": MSGPACK,
}
_JSON_FIRST_BYTES: Final = frozenset(b'{["-0123456789tfn')

Headers = Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None


def decode_payload(value: bytes | None, headers: Headers, limits: Limits) -> tuple[dict[str, Any], ContentType]:
    """Decode one message value into a dict.

    The ``content-type`` header selects the codec. Without the header, a value whose
    first non-blank byte is ``{`` (or another byte that can start JSON) is read as
    JSON and anything else as MessagePack.

    Returns
    -------
    (object, content_type)
        The decoded top-level map and ``"application/json"`` or ``"application/msgpack"``.

    Raises
    ------
    InvalidInput
        With reason ``empty_payload``, ``too_large``, ``unsupported_content_type``,
        ``invalid_json``, ``invalid_msgpack`` or ``not_an_object``.
    """
    if not value:
        raise InvalidInput("empty_payload", "message value is empty; expected a JSON or MessagePack object")

    if len(value) > limits.max_event_bytes:
        raise InvalidInput(
            "too_large",
            f"message value is {len(value)} bytes; expected at most max_event_bytes={limits.max_event_bytes}",
        )

    content_type = content_type_from_headers(headers) or detect_content_type(value)

    obj = _decode_json(value) if content_type == JSON else _decode_msgpack(value, limits)

    if not isinstance(obj, dict):
        raise InvalidInput(
            "not_an_object",
            f"top-level value has type {_type_name(obj)}; expected an object (map)",
        )

    _check_tree(obj, content_type, limits)
    return obj, content_type


def content_type_from_headers(headers: Headers) -> ContentType | None:
    """Return the codec named by the ``content-type`` header, or None when the header is absent.

    Header names compare case-insensitively and parameters such as ``; charset=utf-8`` are ignored.
    """
    raw = _find_header(headers, CONTENT_TYPE_HEADER)
    if raw is None:
        return None

    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes | bytearray) else str(raw)
    media_type = text.split(";", 1)[0].strip().lower()
    if media_type in _CONTENT_TYPES:
        return _CONTENT_TYPES[media_type]

    raise InvalidInput(
        "unsupported_content_type",
        f"content-type header is {preview(text)}; expected application/json or application/msgpack",
    )


def detect_content_type(value: bytes) -> ContentType:
    """Guess the codec of a value sent without a ``content-type`` header."""
    stripped = value.lstrip(b" \t\r\n")
    if stripped and stripped[0] in _JSON_FIRST_BYTES:
        return JSON
    return MSGPACK


def encode_json(obj: Any) -> bytes:
    """Encode `obj` as compact UTF-8 JSON; NaN and infinities are rejected with ValueError."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def encode_msgpack(obj: Any) -> bytes:
    """Encode `obj` as MessagePack with str values as msgpack strings, never bin."""
    return msgpack.packb(obj, use_bin_type=True)


def encode(obj: Any, content_type: ContentType) -> bytes:
    """Encode `obj` with the codec named by `content_type`."""
    return encode_json(obj) if content_type == JSON else encode_msgpack(obj)


def _find_header(headers: Headers, name: str) -> bytes | str | None:
    if not headers:
        return None

    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, raw in items:
        key_text = key.decode("latin-1") if isinstance(key, bytes | bytearray) else str(key)
        if key_text.lower() == name:
            return raw
    return None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid JSON number")


# One decoder for every message: json.loads with parse_constant builds a new decoder per call.
_JSON_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def _decode_json(value: bytes) -> Any:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("invalid_json", f"value is not valid UTF-8 at byte {exc.start}; expected UTF-8 JSON") from None

    try:
        if text.startswith("\ufeff"):
            # The check json.loads makes before it decodes a str.
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _JSON_DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput("invalid_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        # ValueError: NaN/Infinity or an integer with too many digits; RecursionError: deep nesting.
        raise InvalidInput("invalid_json", f"{type(exc).__name__}: {preview(str(exc))}") from None


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"MessagePack extension type {code} ({len(data)} bytes) is not allowed")


def _decode_msgpack(value: bytes, limits: Limits) -> Any:
    try:
        return msgpack.unpackb(
            value,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_reject_ext,
            max_str_len=limits.max_event_bytes,
            max_bin_len=limits.max_event_bytes,
            max_array_len=max(limits.max_completions, limits.max_messages, limits.max_tags) * 4,
            max_map_len=256,
            max_ext_len=limits.max_event_bytes,
        )
    except msgpack.ExtraData:
        raise InvalidInput("invalid_msgpack", "extra bytes after the first MessagePack object") from None
    except (ValueError, msgpack.UnpackException, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput("invalid_msgpack", f"{type(exc).__name__}: {preview(str(exc))}") from None


_SCALAR_TYPES: Final = frozenset({str, int, float, bool, type(None)})


def _check_tree(obj: Any, content_type: ContentType, limits: Limits) -> None:
    """Reject values JSON cannot carry (bytes, non-string keys) and nesting beyond `limits.max_depth`."""
    if _is_plain_tree(obj, 0, limits.max_depth):
        return

    # Walk the tree again, building JSON paths, to name the first offending value.
    _find_tree_error(obj, content_type, limits)


def _is_plain_tree(node: Any, depth: int, max_depth: int) -> bool:
    """Return True when `node` contains only JSON values with string keys, nested at most `max_depth` deep.

    This fast check builds no paths. It returns False on anything unusual (including
    subclasses of the JSON types), and `_find_tree_error` then decides.
    """
    if depth > max_depth:
        return False

    node_type = type(node)
    if node_type in _SCALAR_TYPES:
        return True
    if node_type is dict:
        for key, child in node.items():
            if type(key) is not str:
                return False
            if type(child) is str and depth < max_depth:
                continue
            if not _is_plain_tree(child, depth + 1, max_depth):
                return False
        return True
    if node_type is list:
        for child in node:
            if type(child) is str and depth < max_depth:
                continue
            if not _is_plain_tree(child, depth + 1, max_depth):
                return False
        return True
    return False


def _find_tree_error(obj: Any, content_type: ContentType, limits: Limits) -> None:
    reason = "invalid_json" if content_type == JSON else "invalid_msgpack"
    stack: list[tuple[Any, str, int]] = [(obj, "", 0)]

    while stack:
        node, path, depth = stack.pop()
        if depth > limits.max_depth:
            raise InvalidInput(reason, f"{path or '/'}: nesting deeper than max_depth={limits.max_depth}")

        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise InvalidInput(reason, f"{path or '/'}: map key {preview(key)} is not a string")
                stack.append((child, f"{path}/{key}", depth + 1))
        elif isinstance(node, list):
            stack.extend((child, f"{path}/{i}", depth + 1) for i, child in enumerate(node))
        elif not isinstance(node, str | int | float | bool | type(None)):
            raise InvalidInput(
                reason, f"{path}: values of type {_type_name(node)} are not allowed; expected JSON-compatible values"
            )


def _type_name(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null", bytes: "binary"}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return names.get(type(value), type(value).__name__)
