"""Size limits applied to every incoming message before it reaches the model."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Upper bounds on one decoded message.

    Attributes
    ----------
    max_event_bytes:
        Encoded message size in bytes (Kafka's default ``message.max.bytes`` is about 1 MiB).
    max_text_chars:
        Characters in one text: a prompt string, a completion string or one message's content.
    max_completions:
        Completions in one ranking, ratings event or candidate set.
    max_messages:
        Chat messages in one prompt or one completion.
    max_tags:
        Tags on one event or candidate set.
    max_depth:
        Nesting depth of the decoded object (maps and arrays).
    """

    max_event_bytes: int = 1_048_576
    max_text_chars: int = 32_768
    max_completions: int = 16
    max_messages: int = 64
    max_tags: int = 32
    max_depth: int = 16
