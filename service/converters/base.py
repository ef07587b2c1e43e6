"""Shared pieces of the feedback-file converters: errors, line reading, event ids."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

MAX_FILE_ID_CHARS: Final = 180


class ConversionError(ValueError):
    """A line of a feedback file that cannot be converted to a preference event."""

    def __init__(self, path: Path | str, line: int, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        super().__init__(f"{self.path}:{line}: {problem}")


def read_json_lines(path: Path) -> Iterator[tuple[int, bytes, Any]]:
    """Yield ``(line_number, raw_line, parsed_or_error)`` for each non-blank line.

    Files ending in ``.gz`` are decompressed. A line that is not valid JSON yields a
    `ConversionError` in place of the parsed value, so callers decide whether to skip it.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                parsed: Any = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                parsed = ConversionError(path, number, f"invalid JSON ({exc}); expected one JSON object per line")
            yield number, line, parsed


def deterministic_event_id(path: Path, line: int, raw_line: bytes) -> str:
    """Build an event id from the file name, line number and a hash of the line.

    Converting the same file again gives the same ids, so the worker's duplicate
    detection and the model's seeded randomness see the same events.
    """
    digest = hashlib.sha256(raw_line).hexdigest()[:16]
    return f"{path.name[:MAX_FILE_ID_CHARS]}:{line}:{digest}"


def text_field(record: dict[str, Any], *names: str) -> Any:
    """Return the first of `names` present in `record`, or None."""
    for name in names:
        if name in record:
            return record[name]
    return None
