"""Tests of the demo command's display helpers."""

from __future__ import annotations

from service.demo_cmd import shorten_text


def test_shorten_text_cuts_strings_and_chats() -> None:
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x" * 100}]

    assert shorten_text("short") == "short"
    assert shorten_text("y" * 100) == "y" * 80 + "..."
    assert shorten_text(chat) == ["(1 earlier message)", {"role": "assistant", "content": "x" * 80 + "..."}]
    assert shorten_text([{"role": "user", "content": "only"}]) == [{"role": "user", "content": "only"}]
    assert shorten_text(0.5) == 0.5
