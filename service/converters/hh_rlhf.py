"""Anthropic HH-RLHF transcripts to preference events.

A record is ``{"chosen": transcript, "rejected": transcript}``, where a transcript is
a sequence of ``"\\n\\nHuman: ..."`` and ``"\\n\\nAssistant: ..."`` turns and the two
transcripts share every turn except the final assistant turn. The shared turns
become the prompt (chat messages with roles ``user`` and ``assistant``) and the final
answers become `chosen` and `rejected`.

A few transcripts contain two consecutive assistant turns at the end of only one
side. Then the shared prefix is shorter, and the answers are the remaining assistant
turns joined by a blank line.
"""

from __future__ import annotations

import re
from typing import Any, Final

from service.converters.base import text_field

_TURN: Final = re.compile(r"\n\n(Human|Assistant):")
_ROLES: Final = {"Human": "user", "Assistant": "assistant"}


def split_transcript(transcript: str) -> list[dict[str, str]]:
    """Split an HH-RLHF transcript into chat messages with stripped contents.

    Raises
    ------
    ValueError
        When text precedes the first turn marker or the transcript has no turns.
    """
    parts = _TURN.split(transcript)
    if parts[0].strip():
        raise ValueError(f"text before the first '\\n\\nHuman:' marker: {parts[0][:40]!r}")
    if len(parts) < 3:
        raise ValueError("no '\\n\\nHuman:' or '\\n\\nAssistant:' turns found")

    return [
        {"role": _ROLES[parts[i]], "content": parts[i + 1].strip()}
        for i in range(1, len(parts), 2)
    ]


def hh_record_to_event(record: dict[str, Any]) -> dict[str, Any]:
    """Convert one HH-RLHF record to a ``pair`` event without ``event_id`` and ``model_id``.

    Raises
    ------
    ValueError
        When a field is missing, a transcript does not end with an assistant turn, or
        the two transcripts share no prompt.
    """
    chosen_text = text_field(record, "chosen")
    rejected_text = text_field(record, "rejected")
    if not isinstance(chosen_text, str) or not isinstance(rejected_text, str):
        raise ValueError("expected string fields 'chosen' and 'rejected' holding HH-RLHF transcripts")

    chosen = split_transcript(chosen_text)
    rejected = split_transcript(rejected_text)
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1]["role"] != "assistant":
            raise ValueError(f"{name} transcript ends with a {turns[-1]['role']} turn; expected an assistant turn")

    shared = _shared_prefix_length(chosen, rejected)
    if shared == 0:
        raise ValueError("chosen and rejected transcripts share no turns; expected a common prompt")

    return {
        "kind": "pair",
        "prompt": chosen[:shared],
        "chosen": _answer(chosen[shared:]),
        "rejected": _answer(rejected[shared:]),
    }


def _shared_prefix_length(first: list[dict[str, str]], second: list[dict[str, str]]) -> int:
    # The final turn of each side is the answer, so it never joins the prompt.
    limit = min(len(first), len(second)) - 1
    length = 0
    while length < limit and first[length] == second[length]:
        length += 1
    return length


def _answer(turns: list[dict[str, str]]) -> str | list[dict[str, str]]:
    if all(turn["role"] == "assistant" for turn in turns):
        return "\n\n".join(turn["content"] for turn in turns)
    return turns
