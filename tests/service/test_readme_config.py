"""The README's configuration table lists every setting the service reads."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def _variables(markdown: str) -> set[str]:
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", markdown, flags=re.MULTILINE))


def test_readme_lists_every_setting():
    expected = _variables(markdown_table())
    listed = _variables(README.read_text(encoding="utf-8"))

    assert len(expected) >= 60
    assert expected - listed == set()
    assert listed - expected == set()


def test_readme_table_matches_settings_rows():
    readme = README.read_text(encoding="utf-8")
    for row in markdown_table().splitlines()[2:]:
        assert row in readme, row
