"""TRL preference records to preference events.

TRL's preference format has ``prompt``, ``chosen`` and ``rejected`` fields, each a
string or a list of ``{"role", "content"}`` messages. In the implicit-prompt variant
``prompt`` is absent and ``chosen``/``rejected`` are whole conversations; the longest
common message prefix is then the prompt. Implicit-prompt strings are read as
HH-RLHF transcripts. An optional numeric ``margin`` is kept.
"""

from __future__ import annotations

from typing import Any

from service.converters.hh_rlhf import hh_record_to_event


def trl_record_to_event(record: dict[str, Any]) -> dict[str, Any]:
    """Convert one TRL preference record to a ``pair`` event without ``event_id`` and ``model_id``.

    Raises
    ------
    ValueError
        When ``chosen`` or ``rejected`` is missing, or an implicit prompt cannot be found.
    """
    if "chosen" not in record or "rejected" not in record:
        raise ValueError(f"fields {sorted(record)[:8]}; expected 'chosen' and 'rejected'")

    if "prompt" in record:
        event = {"kind": "pair", "prompt": record["prompt"], "chosen": record["chosen"], "rejected": record["rejected"]}
    else:
        event = _implicit_prompt_event(record["chosen"], record["rejected"])

    if "margin" in record:
        event["margin"] = record["margin"]
    return event


def _implicit_prompt_event(chosen: Any, rejected: Any) -> dict[str, Any]:
    if isinstance(chosen, str) and isinstance(rejected, str):
        return hh_record_to_event({"chosen": chosen, "rejected": rejected})

    if not isinstance(chosen, list) or not isinstance(rejected, list):
        raise ValueError("no 'prompt' field; expected chosen and rejected as two message lists or two transcripts")

    shared = 0
    limit = min(len(chosen), len(rejected)) - 1
    while shared < limit and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise ValueError("no 'prompt' field and the chosen and rejected conversations share no messages")

    return {"kind": "pair", "prompt": chosen[:shared], "chosen": chosen[shared:], "rejected": rejected[shared:]}
