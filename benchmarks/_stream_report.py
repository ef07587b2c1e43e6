"""Environment facts, medians and rendering of the stream benchmark report."""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import os
import platform
import re
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any, Final

from benchmarks._report import cpu_model, git_commit

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
PACKAGES: Final = ("faust-streaming", "aiokafka", "jsonschema-rs", "numpy")
TARGET_EVENTS_PER_SECOND: Final = 10_000
TARGET_RATIO: Final = 0.70


def kafka_version(pom: Path = REPO_ROOT / "deploy" / "local-kafka" / "pom.xml") -> str:
    """Return the ``kafka.version`` property of the local broker's pom.xml."""
    try:
        match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom.read_text(encoding="utf-8"))
    except OSError:
        return "unknown (pom.xml not found)"
    return match.group(1) if match else "unknown"


def environment(argv: list[str]) -> dict[str, Any]:
    versions = {"python": platform.python_version(), "kafka broker": kafka_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["commit"] = git_commit()

    script = Path(argv[0]).resolve()
    if script.is_relative_to(REPO_ROOT):
        argv = [str(script.relative_to(REPO_ROOT)), *argv[1:]]
    return {
        "command": shlex.join([Path(sys.executable).name, *argv]),
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform(),
                    "load_average": [round(value, 2) for value in os.getloadavg()]},
        "versions": versions,
    }


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of `values` (fraction in 0..1)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def histogram_quantile(before: dict[float, float], after: dict[float, float], fraction: float) -> float | None:
    """Return a quantile of the observations between two scrapes of a cumulative histogram.

    It interpolates linearly inside the bucket that contains the quantile, as Prometheus's
    ``histogram_quantile`` does. It returns None when no observation fell between the
    scrapes or when the quantile lies in the ``+Inf`` bucket.
    """
    bounds = sorted(after)
    counts = [after[bound] - before.get(bound, 0.0) for bound in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = fraction * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts):
        if cumulative >= rank:
            if bound == float("inf"):
                return None
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return None


def _summary(repetitions: list[dict[str, Any]], side: str) -> dict[str, Any] | None:
    runs = [repetition[side] for repetition in repetitions if side in repetition]
    if not runs:
        return None

    rates = [run["events_per_second"] for run in runs]
    summary: dict[str, Any] = {"events_per_second": {"median": statistics.median(rates), "runs": rates}}
    latencies = [run["latency_ms"] for run in runs if run.get("latency_ms")]
    if latencies:
        summary["latency_ms"] = {
            "p50": statistics.median(percentile(values, 0.50) for values in latencies),
            "p99": statistics.median(percentile(values, 0.99) for values in latencies),
            "events_per_run": [len(values) for values in latencies],
        }
    delays = [run["delay_ms"] for run in runs if run.get("delay_ms")]
    if delays:
        summary["delay_ms"] = {
            quantile: statistics.median(delay[quantile] for delay in delays) for quantile in ("p50", "p99")
        }
    return summary


def build_report(args: argparse.Namespace, argv: list[str], repetitions: list[dict[str, Any]]) -> dict[str, Any]:
    """Collect settings, environment, per-side medians and target checks into one JSON-ready dict."""
    report: dict[str, Any] = {
        **environment(argv),
        "settings": {"events": args.events, "models": args.models, "repeats": args.repeats,
                     "latency_rate": args.latency_rate, "latency_seconds": args.latency_seconds},
        "baseline": _summary(repetitions, "baseline"),
        "worker": _summary(repetitions, "worker"),
    }
    if report["worker"] and report["baseline"]:
        worker_rate = report["worker"]["events_per_second"]["median"]
        ratio = worker_rate / report["baseline"]["events_per_second"]["median"]
        report["targets"] = {
            "worker_over_baseline": ratio,
            "worker_over_baseline_met": ratio >= TARGET_RATIO,
            "worker_events_per_second_met": worker_rate >= TARGET_EVENTS_PER_SECOND,
        }
    return report


def repetition_line(result: dict[str, Any]) -> str:
    parts = [f"repetition {result['repetition']}:"]
    for side in ("baseline", "worker"):
        if side in result:
            parts.append(f"{side} {result[side]['events_per_second']:,.0f} events/s")
    return " ".join(parts)


def top_functions(paths: list[Path], n: int = 12) -> dict[str, list[tuple[str, float]]]:
    """Return the `n` functions with the largest share of py-spy samples, by self and by inclusive time."""
    self_samples: collections.Counter[str] = collections.Counter()
    inclusive_samples: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            # Group a function's lines together: "step (dynamic_rlhf/optim.py:77)" -> "step (dynamic_rlhf/optim.py)".
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            self_samples[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive_samples[frame] += int(count)
            total += int(count)
    if not total:
        return {"self": [], "inclusive": []}
    return {
        "self": [(frame, samples / total) for frame, samples in self_samples.most_common(n)],
        "inclusive": [(frame, samples / total) for frame, samples in inclusive_samples.most_common(3 * n)],
    }


def _side_rows(name: str, summary: dict[str, Any] | None) -> list[str]:
    if summary is None:
        return [f"| {name} | not run | | |"]
    rate = summary["events_per_second"]
    runs = ", ".join(f"{value:,.0f}" for value in rate["runs"])
    latency = summary.get("latency_ms")
    p50 = f"{latency['p50']:.0f}" if latency else "-"
    p99 = f"{latency['p99']:.0f}" if latency else "-"
    rows = [f"| {name} | {rate['median']:,.0f} ({runs}) | {p50} | {p99} |"]
    delay = summary.get("delay_ms")
    if delay:
        rows.append(f"| {name}, event delay histogram | | {delay['p50']:.1f} | {delay['p99']:.1f} |")
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    machine = report["machine"]
    lines = [
        "## Stream benchmark",
        "",
        f"- Command: `{report['command']}`",
        f"- Machine: {machine['nproc']} CPUs, {machine['cpu']}, {machine['platform']}, "
        f"load average {machine['load_average']}",
        "- Versions: " + ", ".join(f"{name} {version}" for name, version in report["versions"].items()),
        f"- Workload: {settings['events']:,} synthetic events over {settings['models']} model ids, "
        f"{settings['repeats']} repetitions; latency from {settings['latency_rate']:g} events/s "
        f"for {settings['latency_seconds']:g} s",
        "",
        "| consumer | events/s, median (runs) | latency p50 ms | latency p99 ms |",
        "| --- | --- | --- | --- |",
        *_side_rows("aiokafka getmany loop", report["baseline"]),
        *_side_rows("dynamic-rlhf worker", report["worker"]),
    ]
    targets = report.get("targets")
    if targets:
        lines += [
            "",
            f"- worker / baseline: {targets['worker_over_baseline']:.0%} "
            f"(target >= {TARGET_RATIO:.0%}: {'met' if targets['worker_over_baseline_met'] else 'NOT met'})",
            f"- worker events/s target >= {TARGET_EVENTS_PER_SECOND:,}: "
            f"{'met' if targets['worker_events_per_second_met'] else 'NOT met'}",
        ]
    profile = report.get("worker_profile_top")
    if profile and profile["self"]:
        for kind in ("self", "inclusive"):
            lines += ["", f"Worker profile (py-spy samples of the throughput phase, {kind} time):", ""]
            lines += [f"- {share:.1%} {frame}" for frame, share in profile[kind]]
    return "\n".join(lines)
