"""Static checks of the Grafana dashboard and its provisioning files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboard_queries import VARIABLE_VALUES, load_dashboard, panel_queries, panels
from deploy_support import DEPLOY_DIR, find_tool, load_yaml

GRAFANA_DIR = DEPLOY_DIR / "grafana"
METRIC_NAME = re.compile(r"\b(dynamic_rlhf_[a-z_]+)")
CONTRACT_SERIES = {
    "dynamic_rlhf_events_total", "dynamic_rlhf_pairs_trained_total", "dynamic_rlhf_progressive_loss",
    "dynamic_rlhf_progressive_accuracy", "dynamic_rlhf_model_version", "dynamic_rlhf_weight_norm",
    "dynamic_rlhf_reward_length_correlation", "dynamic_rlhf_candidates_scored_total",
    "dynamic_rlhf_records_published_total", "dynamic_rlhf_dead_letters_total",
    "dynamic_rlhf_event_processing_seconds_bucket", "dynamic_rlhf_event_delay_seconds_bucket",
    "dynamic_rlhf_checkpoint_bytes",
    "dynamic_rlhf_checkpoint_duration_seconds_bucket", "dynamic_rlhf_checkpoint_duration_seconds_sum",
    "dynamic_rlhf_checkpoint_duration_seconds_count", "dynamic_rlhf_checkpoints_total",
    "dynamic_rlhf_consumer_lag", "dynamic_rlhf_ready", "dynamic_rlhf_agent_alive",
}


def test_panel_ids_unique() -> None:
    dashboard = load_dashboard()
    ids = [panel["id"] for panel in dashboard["panels"]]

    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "dynamic-rlhf"


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in load_dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells.get((x, y))}"
                cells[(x, y)] = panel["title"]


def test_required_panels_present() -> None:
    dashboard = load_dashboard()
    by_title = {panel["title"]: panel for panel in panels(dashboard)}
    expressions: dict[str, str] = {}
    for query in panel_queries(dashboard):
        expressions[query.panel_title] = expressions.get(query.panel_title, "") + "\n" + query.expr

    assert "dynamic_rlhf_progressive_loss" in expressions["Progressive loss"]
    assert "dynamic_rlhf_progressive_accuracy" in expressions["Progressive accuracy"]
    assert "dynamic_rlhf_pairs_trained_total" in expressions["Training throughput"]
    assert "dynamic_rlhf_consumer_lag" in expressions["Consumer lag"]
    assert "dynamic_rlhf_dead_letters_total" in expressions["Dead letters"]
    assert "dynamic_rlhf_records_published_total" in expressions["Harvest rate"]
    assert "dynamic_rlhf_reward_length_correlation" in expressions["Reward-length correlation"]
    assert "dynamic_rlhf_checkpoint_bytes" in expressions["Checkpoint size"]
    assert "dynamic_rlhf_checkpoint_duration_seconds_bucket" in expressions["Checkpoint duration"]
    assert "dynamic_rlhf_event_delay_seconds_bucket" in expressions["Event delay quantiles"]

    heatmap = by_title["Processing time heatmap"]
    assert heatmap["type"] == "heatmap"
    assert heatmap["targets"][0]["format"] == "heatmap"
    assert "sum by (le)" in heatmap["targets"][0]["expr"]
    assert "dynamic_rlhf_event_processing_seconds_bucket" in heatmap["targets"][0]["expr"]


def test_panels_use_datasource_variable() -> None:
    dashboard = load_dashboard()
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_queries_use_contract_metrics() -> None:
    for query in panel_queries(load_dashboard()):
        names = set(METRIC_NAME.findall(query.expr))
        assert names <= CONTRACT_SERIES, f"{query.panel_title}: unknown {names - CONTRACT_SERIES}"
        assert names or 'up{job="dynamic-rlhf"' in query.expr, query.panel_title


def test_every_variable_has_a_test_value() -> None:
    for query in panel_queries(load_dashboard()):
        assert "$" not in query.expanded(), f"{query.panel_title}: {query.expanded()}"

    variables = {variable["name"]: variable for variable in load_dashboard()["templating"]["list"]}
    for name in ("model_id", "instance"):
        assert variables[name]["allValue"] == VARIABLE_VALUES["$" + name]


def test_queries_parse_with_promtool(tmp_path: Path) -> None:
    promtool = find_tool("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")

    # promtool has no PromQL-only check, so every query becomes a recording rule.
    queries = panel_queries(load_dashboard())
    rules = [{"record": f"dashboard:query_{index}", "expr": query.expanded()} for index, query in enumerate(queries)]
    rule_file = tmp_path / "dashboard.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")

    result = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_datasource_provisioning_matches_dashboard() -> None:
    provisioning = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    source = provisioning["datasources"][0]
    variables = {variable["name"]: variable for variable in load_dashboard()["templating"]["list"]}
    compose = load_yaml(DEPLOY_DIR / "compose.yaml")

    assert source["type"] == "prometheus"
    assert source["uid"] == variables["datasource"]["current"]["value"]
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]


def test_dashboard_provisioning_points_at_mount() -> None:
    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "dynamic-rlhf.yml")["providers"][0]
    grafana = load_yaml(DEPLOY_DIR / "compose.yaml")["services"]["grafana"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in grafana["volumes"] if volume.startswith("./"))

    assert provider["type"] == "file"
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert (GRAFANA_DIR / "dashboards" / "dynamic-rlhf.json").is_file()
