"""Prompt and completion values: plain text or chat message lists.

A *text* is either a ``str`` or a sequence of chat messages
``{"role": str, "content": str}`` as in the OpenAI and TRL conversational
formats. Chats are copied into a tuple of fresh dicts, so later changes to
the caller's list cannot alter a validated example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from dynamic_rlhf.errors import FeedbackError

Message: TypeAlias = Mapping[str, str]
Chat: TypeAlias = tuple[dict[str, str], ...]
Text: TypeAlias = str | Sequence[Mapping[str, str]]
NormalText: TypeAlias = str | Chat

_CHAT_EXPECTED = 'a string or a non-empty list of {"role": str, "content": str} messages'


def normalise_text(value: Any, field: str) -> NormalText:
    """Validate *value* as a text and return its immutable form.

    Strings are returned unchanged (the empty string is valid). A chat is
    returned as a tuple of new ``{"role", "content"}`` dicts.

    Raises
    ------
    FeedbackError
        When *value* is neither a string nor a well-formed message list.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) or not isinstance(value, Sequence) or isinstance(value, bytes):
        raise FeedbackError(field, value, _CHAT_EXPECTED)
    if len(value) == 0:
        raise FeedbackError(field, value, _CHAT_EXPECTED)

    messages = []
    for position, message in enumerate(value):
        messages.append(_normalise_message(message, f"{field}[{position}]"))
    return tuple(messages)


def _normalise_message(message: Any, field: str) -> dict[str, str]:
    if not isinstance(message, Mapping):
        raise FeedbackError(field, message, 'a {"role": str, "content": str} message')

    role = message.get("role")
    if not isinstance(role, str) or not role:
        raise FeedbackError(f"{field}.role", role, "a non-empty string such as 'user'")

    content = message.get("content")
    if not isinstance(content, str):
        raise FeedbackError(f"{field}.content", content, "a string (may be empty)")
    return {"role": role, "content": content}


def render_text(value: Text) -> str:
    """Return the plain text used for featurisation.

    Chat messages contribute their contents, one per line. Roles are left out
    so that a chat completion and the same plain-text completion score alike.
    """
    if isinstance(value, str):
        return value
    return "\n".join(message["content"] for message in value)


def canonical_text(value: Text) -> str | list[list[str]]:
    """Return a msgpack/JSON-friendly form of *value* for hashing."""
    if isinstance(value, str):
        return value
    return [[message["role"], message["content"]] for message in value]


def as_messages(value: Text, role: str) -> list[dict[str, str]]:
    """Return *value* as a list of message dicts, wrapping plain text in *role*."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return [dict(message) for message in value]
