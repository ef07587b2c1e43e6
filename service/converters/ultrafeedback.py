"""UltraFeedback-style rated completions to ``ratings`` events.

A record has the prompt in ``prompt`` or ``instruction`` and a list ``completions`` of
objects with the text in ``response`` or ``text``. The score of a completion is read
from ``overall_score``, from ``ratings`` (a number, a list of numbers, or an
aspect-to-number map), or from UltraFeedback's ``annotations`` (aspect to
``{"Rating": "4", ...}``). Several aspect scores are averaged, and non-numeric ratings
such as ``"N/A"`` are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from service.converters.base import text_field


def ultrafeedback_record_to_event(record: dict[str, Any]) -> dict[str, Any]:
    """Convert one record to a ``ratings`` event without ``event_id`` and ``model_id``.

    Raises
    ------
    ValueError
        When the prompt is missing, there are fewer than two completions, or a
        completion has no text or no numeric score.
    """
    prompt = text_field(record, "prompt", "instruction")
    if prompt is None:
        raise ValueError("missing 'prompt' or 'instruction'")

    completions = record.get("completions")
    if not isinstance(completions, list) or len(completions) < 2:
        raise ValueError("'completions' must be a list of at least two rated completions")

    texts: list[Any] = []
    ratings: list[float] = []
    for position, completion in enumerate(completions):
        if not isinstance(completion, dict):
            raise ValueError(f"completions[{position}] is a {type(completion).__name__}; expected an object")
        text = text_field(completion, "response", "text")
        if text is None:
            raise ValueError(f"completions[{position}] has no 'response' or 'text'")
        texts.append(text)
        ratings.append(_score(completion, position))

    return {"kind": "ratings", "prompt": prompt, "completions": texts, "ratings": ratings}


def _score(completion: dict[str, Any], position: int) -> float:
    if "overall_score" in completion:
        values = _numbers([completion["overall_score"]])
    elif "ratings" in completion:
        raw = completion["ratings"]
        if isinstance(raw, dict):
            values = _numbers(raw.values())
        elif isinstance(raw, list):
            values = _numbers(raw)
        else:
            values = _numbers([raw])
    elif isinstance(completion.get("annotations"), dict):
        values = _numbers(
            aspect.get("Rating") if isinstance(aspect, dict) else aspect for aspect in completion["annotations"].values()
        )
    else:
        values = []

    if not values:
        raise ValueError(
            f"completions[{position}] has no numeric 'overall_score', 'ratings' or 'annotations'; expected a score"
        )
    return sum(values) / len(values)


def _numbers(values: Iterable[Any]) -> list[float]:
    numbers = []
    for value in values:
        if isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            numbers.append(number)
    return numbers
