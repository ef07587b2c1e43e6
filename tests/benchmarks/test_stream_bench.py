"""Smoke test of the stream benchmark: a quick baseline-only run against the session broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks._stream_report import render_markdown

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "stream.py"

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def quick_report(kafka_bootstrap: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--bootstrap", kafka_bootstrap, "--quick", "--format", "json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def test_quick_run_reports_baseline(quick_report: dict[str, Any]) -> None:
    report = quick_report
    baseline = report["baseline"]
    latency = baseline["latency_ms"]

    assert report["settings"]["events"] == 2000
    assert report["settings"]["repeats"] == 1
    assert report["worker"] is None
    assert "targets" not in report
    assert len(baseline["events_per_second"]["runs"]) == 1
    assert baseline["events_per_second"]["median"] > 50.0
    # 2 s at 200 events/s: every paced event is consumed and timed.
    assert latency["events_per_run"] == [400]
    assert 0.0 < latency["p50"] <= latency["p99"]
    assert latency["p99"] < 30_000.0


def test_quick_run_names_environment(quick_report: dict[str, Any]) -> None:
    report = quick_report

    assert report["versions"]["kafka broker"] == "4.2.2"
    assert report["versions"]["faust-streaming"] != "not installed"
    assert report["versions"]["aiokafka"] != "not installed"
    assert report["machine"]["nproc"] >= 1
    assert "benchmarks/stream.py" in report["command"]


def test_quick_run_renders_markdown(quick_report: dict[str, Any]) -> None:
    text = render_markdown(quick_report)
    baseline_row = next(line for line in text.splitlines() if line.startswith("| aiokafka getmany loop |"))
    cells = [cell.strip() for cell in baseline_row.strip("|").split("|")]
    rate = quick_report["baseline"]["events_per_second"]["median"]

    assert cells[1].startswith(f"{rate:,.0f} (")
    assert float(cells[2]) == round(quick_report["baseline"]["latency_ms"]["p50"])
    assert "| dynamic-rlhf worker | not run |" in text
