"""Smoke test of the learner benchmark script: a quick synthetic run in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "learner.py"
CONTENDERS = ("dynamic_rlhf", "dynamic_rlhf_learn_one", "river", "vowpalwabbit")


def run_quick(output_format: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--skip-real", "--pairs", "1000",
         "--format", output_format],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_quick_json_reports_all_contenders() -> None:
    report = json.loads(run_quick("json"))
    stream = report["streams"][0]
    by_name = {contender["name"]: contender for contender in stream["contenders"]}

    assert stream["name"] == "synthetic"
    assert stream["pairs"] == 1000
    assert sorted(by_name) == sorted(CONTENDERS)
    for name in CONTENDERS:
        contender = by_name[name]
        assert "error" not in contender, contender
        assert contender["pairs_per_second"]["median"] > 0.0
        assert 0.0 <= contender["accuracy"] <= 1.0
        assert len(contender["seconds"]) == 1
    assert set(report["versions"]) >= {"python", "numpy", "river", "vowpalwabbit", "scikit-learn"}
    assert report["machine"]["nproc"] >= 1
    assert report["batch"] is None


def test_quick_markdown_has_numeric_rows() -> None:
    text = run_quick("markdown")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}

    for name in CONTENDERS:
        cells = [cell.strip() for cell in rows[name].split("|")[1:-1]]
        pairs_per_second = float(cells[1].replace(",", ""))
        accuracy = float(cells[4])
        assert pairs_per_second > 0.0
        assert 0.0 <= accuracy <= 1.0
    assert "benchmarks/learner.py --quick --skip-real --pairs 1000" in text
