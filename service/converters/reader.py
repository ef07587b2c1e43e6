"""Reading feedback files of several formats as preference events."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final, Literal

from service.converters.base import ConversionError, deterministic_event_id, read_json_lines
from service.converters.hh_rlhf import hh_record_to_event
from service.converters.trl import trl_record_to_event
from service.converters.ultrafeedback import ultrafeedback_record_to_event

logger = logging.getLogger(__name__)

Format = Literal["auto", "drlhf", "trl", "hh-rlhf", "ultrafeedback"]
FORMATS: Final[tuple[str, ...]] = ("auto", "drlhf", "trl", "hh-rlhf", "ultrafeedback")
DEFAULT_MODEL_ID: Final = "default"

_CONVERTERS: Final[dict[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "trl": trl_record_to_event,
    "hh-rlhf": hh_record_to_event,
    "ultrafeedback": ultrafeedback_record_to_event,
}


def read_feedback_file(
    path: str | Path,
    fmt: Format | str = "auto",
    *,
    model_id: str | None = None,
    errors: list[ConversionError] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield preference events (dicts in the ``preference_event`` schema) from a JSONL file.

    Parameters
    ----------
    path:
        JSONL file, gzip-compressed when the name ends in ``.gz``.
    fmt:
        One of `FORMATS`; ``auto`` detects the format from the first record.
    model_id:
        Model id set on every event; by default events in our own format keep theirs
        and converted events get ``"default"``.
    errors:
        When given, lines that cannot be converted are appended here and skipped.
        When None, the first such line raises `ConversionError`.

    Events converted from other formats get a deterministic ``event_id`` built from
    the file name, the line number and a hash of the line. Events are not validated
    against the schema here: `service.events.parse_preference_event` does that.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown feedback format {fmt!r}; expected one of {', '.join(FORMATS)}")

    detected: str | None = None if fmt == "auto" else fmt
    for line, raw, record in read_json_lines(path):
        try:
            if isinstance(record, ConversionError):
                raise record
            if not isinstance(record, dict):
                raise ConversionError(path, line, f"line contains a JSON {type(record).__name__}; expected an object")
            if detected is None:
                detected = _detect(record, path, line)
            yield _convert(record, detected, path, line, raw, model_id)
        except ConversionError as exc:
            if errors is None:
                raise
            errors.append(exc)


def detect_format(record: dict[str, Any]) -> str:
    """Return the format name of `record`, the first record of a file.

    Raises
    ------
    ValueError
        When the fields match no supported format.
    """
    if "kind" in record and "event_id" in record:
        return "drlhf"

    completions = record.get("completions")
    if isinstance(completions, list) and completions and all(isinstance(c, dict) for c in completions):
        return "ultrafeedback"

    if "chosen" in record and "rejected" in record:
        if "prompt" in record or isinstance(record["chosen"], list):
            return "trl"
        if isinstance(record["chosen"], str) and "\n\nHuman:" in record["chosen"]:
            return "hh-rlhf"

    raise ValueError(
        f"cannot detect the feedback format from fields {sorted(record)[:10]}; pass one of {', '.join(FORMATS[1:])}"
    )


def candidate_sets_from_feedback(events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Yield a candidate set per event: its prompt with the distinct completions it compares.

    The request id is the event id, so harvested records can be traced back to the feedback.
    """
    for event in events:
        if "completions" in event:
            completions = list(event["completions"])
        else:
            completions = [event["chosen"], event["rejected"]]

        distinct: list[Any] = []
        for completion in completions:
            if completion not in distinct:
                distinct.append(completion)

        candidate_set: dict[str, Any] = {
            "request_id": event["event_id"],
            "model_id": event.get("model_id", DEFAULT_MODEL_ID),
            "prompt": event["prompt"],
            "completions": distinct,
            "source": "feedback",
        }
        if event.get("tags"):
            candidate_set["tags"] = list(event["tags"])
        yield candidate_set


def _detect(record: dict[str, Any], path: Path, line: int) -> str:
    try:
        detected = detect_format(record)
    except ValueError as exc:
        raise ConversionError(path, line, str(exc)) from None
    logger.info("%s: detected format %s", path, detected)
    return detected


def _convert(
    record: dict[str, Any], fmt: str, path: Path, line: int, raw: bytes, model_id: str | None
) -> dict[str, Any]:
    if fmt == "drlhf":
        event = dict(record)
        if model_id is not None:
            event["model_id"] = model_id
        return event

    try:
        event = _CONVERTERS[fmt](record)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConversionError(path, line, f"{fmt}: {exc}") from None

    return {
        "event_id": deterministic_event_id(path, line, raw),
        "model_id": model_id or DEFAULT_MODEL_ID,
        **event,
        "tags": [fmt],
    }
