"""The core library type-checks cleanly with mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_core_library_passes_mypy(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    completed = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), "dynamic_rlhf"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    assert completed.stdout.startswith("Success: no issues found")
