"""Environment facts and Markdown rendering for benchmark results."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._data import REPO_ROOT

PACKAGES = ("numpy", "scipy", "river", "vowpalwabbit", "scikit-learn", "dynamic-rlhf")


def git_commit(repo: Path = REPO_ROOT) -> str:
    """Return the HEAD commit of ``repo``, suffixed with ``+dirty`` when the tree has edits."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "dynamic_rlhf"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (git not available)"
    return f"{commit}+dirty" if status else commit


def cpu_model() -> str:
    """Return the first ``model name`` of /proc/cpuinfo, or the platform's processor name."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(argv: list[str]) -> dict[str, Any]:
    """Collect the command line, machine and package versions of this run."""
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["dynamic_rlhf commit"] = git_commit()

    # Show the script relative to the repository root so the command can be pasted there.
    script = Path(argv[0]).resolve()
    if script.is_relative_to(REPO_ROOT):
        argv = [str(script.relative_to(REPO_ROOT)), *argv[1:]]
    return {
        "command": shlex.join([Path(sys.executable).name, *argv]),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu_model(),
            "platform": platform.platform(),
        },
        "versions": versions,
    }


def _format_rate(value: float) -> str:
    return f"{value:,.0f}"


def _render_stream(stream: dict[str, Any]) -> list[str]:
    lines = [
        f"### Stream: {stream['name']}",
        "",
        f"{stream['pairs']:,} pairs from {stream['source']}, {stream['repeats']} repetition(s).",
        "",
        "| learner | pairs/s (median) | pairs/s (min-max) | seconds (median) | progressive accuracy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for contender in stream["contenders"]:
        if "error" in contender:
            lines.append(f"| {contender['name']} | unavailable: {contender['error']} | | | |")
            continue
        rate = contender["pairs_per_second"]
        lines.append(
            f"| {contender['name']} | {_format_rate(rate['median'])} "
            f"| {_format_rate(rate['min'])}-{_format_rate(rate['max'])} "
            f"| {contender['seconds_median']:.2f} | {contender['accuracy']:.4f} |"
        )
    lines.append("")
    if "bayes_accuracy" in stream:
        lines += [f"Bayes-optimal accuracy of this stream: {stream['bayes_accuracy']:.4f}.", ""]
    for name, ratio in stream["ratios"].items():
        lines.append(f"- {name}: {ratio:.2f}x")
    for target in stream["targets"]:
        verdict = "met" if target["met"] else "NOT met"
        lines.append(f"- target {target['name']}: **{verdict}** ({target['detail']})")
    lines.append("")
    return lines


def _render_batch(batch: dict[str, Any]) -> list[str]:
    lines = [
        "### Batch reference on HH-RLHF",
        "",
        f"{batch['pairs']:,} pairs, {batch['features']:,} non-empty hashed columns, "
        f"{batch['folds']}-fold GroupKFold (both signs of a pair in the same fold).",
        "",
        f"Features: {batch['featuriser']}.",
        "",
        "| C | mean accuracy | std |",
        "| ---: | ---: | ---: |",
    ]
    for c, (mean, std) in batch["accuracy_by_c"].items():
        lines.append(f"| {c:g} | {mean:.4f} | {std:.4f} |")
    held_out = batch["held_out"]
    lines += [
        "",
        f"Held-out split: {held_out['train_pairs']} train / {held_out['test_pairs']} test "
        f"pairs (seed {held_out['seed']}).",
        "",
        f"- batch optimum (C={held_out['batch_c']:g}): {held_out['batch_accuracy']:.4f}",
    ]
    for epoch in held_out["online_by_epoch"]:
        lines.append(
            f"- dynamic_rlhf after {epoch['epochs']} optimise_reward epoch(s): "
            f"{epoch['accuracy']:.4f}"
        )
    verdict = "met" if held_out["gap_met"] else "NOT met"
    lines += [
        f"- gap (batch - online): {held_out['gap_points']:.2f} points; "
        f"target within 1 point: **{verdict}**",
        "",
    ]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """Render a benchmark report dictionary as Markdown."""
    machine = report["machine"]
    lines = [
        "## Learner benchmark result",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {machine['nproc']} CPUs, {machine['cpu']}, {machine['platform']}",
        "",
        "Versions: "
        + ", ".join(f"{name} {version}" for name, version in report["versions"].items()),
        "",
    ]
    for stream in report["streams"]:
        lines += _render_stream(stream)
    for note in report["notes"]:
        lines += [f"Note: {note}", ""]
    if report.get("batch"):
        lines += _render_batch(report["batch"])
    return "\n".join(lines)
