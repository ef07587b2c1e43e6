"""promtool checks of the Prometheus configuration, the alert rules and their unit tests."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from deploy_support import DEPLOY_DIR, find_tool, load_yaml

PROMETHEUS_DIR = DEPLOY_DIR / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
CONTRACT_METRICS = {
    "dynamic_rlhf_events_total", "dynamic_rlhf_pairs_trained_total", "dynamic_rlhf_progressive_loss",
    "dynamic_rlhf_progressive_accuracy", "dynamic_rlhf_model_version", "dynamic_rlhf_weight_norm",
    "dynamic_rlhf_reward_length_correlation", "dynamic_rlhf_candidates_scored_total",
    "dynamic_rlhf_records_published_total", "dynamic_rlhf_dead_letters_total",
    "dynamic_rlhf_event_processing_seconds", "dynamic_rlhf_event_delay_seconds_bucket", "dynamic_rlhf_checkpoint_bytes",
    "dynamic_rlhf_checkpoint_duration_seconds", "dynamic_rlhf_checkpoints_total", "dynamic_rlhf_consumer_lag",
    "dynamic_rlhf_ready", "dynamic_rlhf_agent_alive",
}
EXPECTED_ALERTS = {
    "DynamicRLHFWorkerDown", "DynamicRLHFWorkerNotReady", "DynamicRLHFAgentStopped",
    "DynamicRLHFConsumerLagGrowing", "DynamicRLHFDeadLetterRateHigh",
    "DynamicRLHFProgressiveAccuracyFalling", "DynamicRLHFCheckpointsFailing", "DynamicRLHFModelBehindFeedback",
}

pytestmark = pytest.mark.prometheus


def promtool() -> str:
    path = find_tool("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS_DIR)


def alert_rules() -> list[dict[str, object]]:
    rules = []
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def test_config_is_valid() -> None:
    result = run_promtool("check", "config", "prometheus.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_config_scrapes_each_worker_replica() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "dynamic-rlhf")
    compose = load_yaml(DEPLOY_DIR / "compose.yaml")
    workers = sorted(name for name in compose["services"] if name.startswith("worker-"))
    port = compose["services"][workers[0]]["environment"]["DRLHF_WEB_PORT"]

    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"{name}:{port}" for name in workers]
    assert config["rule_files"] == ["rules/*.yml"]


def test_rules_are_valid() -> None:
    result = run_promtool("check", "rules", *[str(path) for path in RULE_FILES])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", *[str(path) for path in RULE_TESTS])

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_expected_alerts_exist() -> None:
    names = {rule["alert"] for rule in alert_rules()}

    assert names == EXPECTED_ALERTS


def test_every_alert_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in load_yaml(path)["tests"]:
            for check in case["alert_rule_test"]:
                target = firing if check["exp_alerts"] else silent
                target.add(check["alertname"])

    assert firing == EXPECTED_ALERTS
    assert silent == EXPECTED_ALERTS


def test_alerts_use_contract_metrics() -> None:
    for rule in alert_rules():
        names = set(re.findall(r"\bdynamic_rlhf_[a-z_]+", str(rule["expr"])))
        if rule["alert"] == "DynamicRLHFWorkerDown":
            assert 'up{job="dynamic-rlhf"}' in str(rule["expr"])
            continue
        assert names, f"{rule['alert']} uses no dynamic_rlhf metric"
        assert names <= CONTRACT_METRICS, f"{rule['alert']} uses unknown metrics {names - CONTRACT_METRICS}"


def test_alerts_have_severity_and_summary() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_broken_rule_test_is_reported(tmp_path: Path) -> None:
    # The unit tests can fail: an expected alert that never fires is an error.
    broken = tmp_path / "broken.test.yml"
    broken.write_text(
        "rule_files:\n"
        f"  - {RULE_FILES[0]}\n"
        "tests:\n"
        "  - interval: 1m\n"
        "    input_series:\n"
        "      - series: 'up{job=\"dynamic-rlhf\", instance=\"w:6066\"}'\n"
        "        values: '1x10'\n"
        "    alert_rule_test:\n"
        "      - eval_time: 10m\n"
        "        alertname: DynamicRLHFWorkerDown\n"
        "        exp_alerts:\n"
        "          - exp_labels: {severity: critical, job: dynamic-rlhf, instance: 'w:6066'}\n",
        encoding="utf-8",
    )

    result = run_promtool("test", "rules", str(broken))

    assert result.returncode == 1
    assert "FAILED" in result.stdout + result.stderr
