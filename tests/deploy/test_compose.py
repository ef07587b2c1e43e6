"""Checks of deploy/compose.yaml: schema validation, docker compose config, services and env."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from deploy_support import DEPLOY_DIR, REPO_ROOT, find_tool, load_yaml, settings_env_names

COMPOSE_FILE = DEPLOY_DIR / "compose.yaml"
LAUNCHER_INIT = DEPLOY_DIR / "local-kafka" / "kafkalocal" / "__init__.py"
WORKERS = ("worker-1", "worker-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def test_compose_matches_compose_spec_schema() -> None:
    checker = find_tool("check-jsonschema")
    if checker is None:
        pytest.skip("check-jsonschema is not installed; install the test extras")

    # The Compose Specification schema ships inside check-jsonschema, so this needs no network.
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "validation done" in result.stdout


def test_docker_compose_config_accepts_file() -> None:
    docker = find_tool("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed, so `docker compose config` cannot run")

    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )

    assert result.returncode == 0, result.stderr


def test_kafka_version_matches_local_launcher(compose: dict[str, Any]) -> None:
    launcher_version = re.search(r'^KAFKA_VERSION\s*=\s*"([^"]+)"', LAUNCHER_INIT.read_text(encoding="utf-8"), re.M)
    image = compose["services"]["kafka"]["image"]

    assert launcher_version is not None
    assert image == f"apache/kafka:{launcher_version.group(1)}"
    assert launcher_version.group(1).startswith("4.")


def test_kafka_is_single_node_kraft(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]

    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert "kafka-broker-api-versions.sh" in kafka["healthcheck"]["test"][1]
    assert "kafka-data:/var/lib/kafka/data" in kafka["volumes"]
    # Checkpoint values may reach DRLHF_MAX_MODEL_BYTES (32 MiB by default).
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= 33554432


def test_two_worker_replicas(compose: dict[str, Any]) -> None:
    services = compose["services"]

    assert sorted(name for name in services if name.startswith("worker")) == list(WORKERS)
    for name in WORKERS:
        worker = services[name]
        assert worker["image"] == "dynamic-rlhf:local"
        assert worker["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert worker["depends_on"] == {"kafka": {"condition": "service_healthy"}}
        assert worker["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        # One app id puts both replicas in one consumer group.
        assert worker["environment"]["DRLHF_APP_ID"] == "dynamic-rlhf"
        assert worker["environment"]["DRLHF_WEB_HOST"] == "0.0.0.0"
        assert "/health/ready" in " ".join(worker["healthcheck"]["test"])
        assert f":{worker['environment']['DRLHF_WEB_PORT']}/" in " ".join(worker["healthcheck"]["test"])


def test_worker_env_is_valid_settings(compose: dict[str, Any]) -> None:
    settings_module = pytest.importorskip("service.settings")
    known = settings_env_names()

    for name in WORKERS:
        env = compose["services"][name]["environment"]
        assert set(env) <= known, f"{name}: unknown variables {set(env) - known}"
        settings = settings_module.Settings.from_env(env)
        assert settings.web_host == "0.0.0.0"
        assert settings.partitions >= len(WORKERS)


def test_every_service_has_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service["healthcheck"]["test"], name


def test_ports_bind_loopback_only(compose: dict[str, Any]) -> None:
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]

    assert len(published) == 5
    for port in published:
        assert str(port).startswith("127.0.0.1:"), port


def test_prometheus_and_grafana_mounts_exist(compose: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        for volume in compose["services"][name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (DEPLOY_DIR / source).exists(), f"{name}: {source} is missing"
    assert compose["services"]["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
