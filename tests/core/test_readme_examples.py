"""The README's Python examples run as written, one after another in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)


def test_readme_examples_run() -> None:
    blocks = python_blocks()
    namespace: dict = {}

    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the project's own README

    assert len(blocks) == 2
    assert [entry.pairs for entry in namespace["stats"]] == [1, 1, 1]
    assert [record["kind"] for record in namespace["records"]] == ["sft", "preference"]
    # The first pair, learned once and in 3 more epochs, then 1 + 1 + 3 + 1 pairs from the four kinds of feedback.
    assert namespace["model"].pairs_trained == 10
    assert namespace["model"].examples_seen == 5
