"""Errors raised while decoding and validating incoming Kafka messages.

Every rejected message ends up on the dead-letter topic with one of the codes in
`REASONS`. The same code labels the ``dynamic_rlhf_dead_letters_total`` metric, so
the set is small and fixed.
"""

from __future__ import annotations

from typing import Final

REASONS: Final[frozenset[str]] = frozenset(
    {
        "empty_payload",
        "too_large",
        "invalid_json",
        "invalid_msgpack",
        "unsupported_content_type",
        "not_an_object",
        "schema",
        "invalid_feedback",
        # Raised by the worker, not by decoding: an event keyed so that it reached a
        # partition other than its model's, and an unexpected error while processing.
        "wrong_partition",
        "internal_error",
    }
)

DETAIL_VALUE_CHARS: Final[int] = 80


class InvalidInput(Exception):
    """A message that cannot be turned into feedback or a candidate set.

    Attributes
    ----------
    reason:
        Short snake_case code from `REASONS`, used as the dead-letter reason and the
        metric label.
    detail:
        Human-readable explanation naming the field, the (truncated) value and what
        was expected.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown InvalidInput reason {reason!r}; expected one of {sorted(REASONS)}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def preview(value: object, max_chars: int = DETAIL_VALUE_CHARS) -> str:
    """Return ``repr(value)`` cut to `max_chars` so error details never carry full texts."""
    text = repr(value)
    if len(text) <= max_chars:
        return text
    return text[: max_chars - 3] + "..."
