"""Exceptions raised by the core library.

Every error derives from :class:`ValueError`, so callers that validate input
generically keep working, and each message names the field, shows the
offending value (truncated) and states what is expected.
"""

from __future__ import annotations

from typing import Any

#: Maximum length, in characters, of the excerpt of an offending value quoted in an error message.
MAX_QUOTED_CHARS = 60


def quote_value(value: Any, limit: int = MAX_QUOTED_CHARS) -> str:
    """Return a short ``repr`` of *value* for an error message.

    Long values (a whole prompt, a large list) are cut to *limit* characters
    and marked with the original length, so messages never echo full texts.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} chars)"


class FeedbackError(ValueError):
    """Malformed human feedback.

    Attributes
    ----------
    field:
        Name of the invalid field, e.g. ``"chosen"`` or ``"ratings[2]"``.
    value:
        Truncated ``repr`` of the received value.
    expected:
        What the field must contain.
    """

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        self.value = quote_value(value)
        self.expected = expected
        super().__init__(f"invalid {field}: got {self.value}, expected {expected}")


class ConfigError(ValueError):
    """An invalid model configuration or harvesting policy parameter."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        self.value = quote_value(value)
        self.expected = expected
        super().__init__(f"invalid {field}: got {self.value}, expected {expected}")


class StateError(ValueError):
    """A serialised model state that cannot be loaded."""
