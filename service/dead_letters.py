"""Dead-letter records for input messages that failed decoding or validation.

A dead letter is JSON on the ``drlhf.dead-letters`` topic (schema:
``schemas/dead_letter.schema.json``). It keeps the original value as base64 so the
message can be inspected and replayed after a fix.
"""

from __future__ import annotations

import base64
from typing import Any, Final

from service.codecs import encode_json
from service.errors import REASONS

DEAD_LETTER_CONTENT_TYPE: Final = "application/json"

# Base64 grows data by a third, so a dead letter for a message near Kafka's default
# 1 MiB limit would itself be too large. Originals beyond this size are truncated.
MAX_ORIGINAL_BYTES: Final = 262_144


def build_dead_letter(
    *,
    original: bytes | None,
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    content_type: str | None,
    max_original_bytes: int = MAX_ORIGINAL_BYTES,
) -> dict[str, Any]:
    """Build the dead-letter dict for one rejected message.

    `reason` must be one of `service.errors.REASONS`. The original value is kept up to
    `max_original_bytes`; ``original_size`` and ``original_truncated`` record the cut.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}; expected one of {sorted(REASONS)}")

    size = len(original) if original is not None else 0
    kept = original[:max_original_bytes] if original is not None else None
    return {
        "reason": reason,
        "detail": detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp_ms": timestamp_ms,
        "content_type": content_type,
        "original_base64": base64.b64encode(kept).decode("ascii") if kept is not None else None,
        "original_size": size,
        "original_truncated": size > max_original_bytes,
    }


def encode_dead_letter(dead_letter: dict[str, Any]) -> bytes:
    """Encode a dead letter as compact UTF-8 JSON, the format of the dead-letter topic."""
    return encode_json(dead_letter)


def original_bytes(dead_letter: dict[str, Any]) -> bytes | None:
    """Return the original message value stored in `dead_letter` (truncated if it was cut)."""
    encoded = dead_letter.get("original_base64")
    return base64.b64decode(encoded) if encoded is not None else None
