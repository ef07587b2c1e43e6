"""Checks of the Kubernetes manifests: schema validation and cross-references between them."""

from __future__ import annotations

import re
import subprocess
from decimal import Decimal
from typing import Any

import pytest

from deploy_support import DEPLOY_DIR, REPO_ROOT, find_tool, load_yaml, load_yaml_documents, parse_dockerfile, settings_env_names

K8S_DIR = DEPLOY_DIR / "k8s"
KUBERNETES_VERSION = "1.30.0"
MANIFESTS = sorted(path for path in K8S_DIR.glob("*.yaml") if path.name != "kustomization.yaml")
QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
UNITS = {None: 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
         "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def resources() -> dict[str, dict[str, Any]]:
    found = {}
    for path in MANIFESTS:
        for document in load_yaml_documents(path):
            found[document["kind"]] = document
    return found


def pod_spec() -> dict[str, Any]:
    return resources()["Deployment"]["spec"]["template"]["spec"]


def worker_container() -> dict[str, Any]:
    return next(container for container in pod_spec()["containers"] if container["name"] == "worker")


def quantity(text: str | int) -> Decimal:
    match = QUANTITY.match(str(text))
    assert match, f"invalid quantity {text!r}"
    return Decimal(match.group(1)) * Decimal(UNITS[match.group(2)])


def test_manifests_validate_against_kubernetes_schema() -> None:
    validator = find_tool("kubernetes-validate")
    if validator is None:
        pytest.skip("kubernetes-validate is not installed; install the test extras")

    # --strict rejects unknown fields; the schemas are bundled with the package.
    result = subprocess.run(
        [validator, "--kubernetes-version", KUBERNETES_VERSION, "--strict", *map(str, MANIFESTS)],
        capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == 4
    assert "ERROR" not in result.stdout + result.stderr


def test_validator_rejects_misspelled_field(tmp_path: Any) -> None:
    validator = find_tool("kubernetes-validate")
    if validator is None:
        pytest.skip("kubernetes-validate is not installed; install the test extras")
    broken = tmp_path / "deployment.yaml"
    text = (K8S_DIR / "deployment.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"), encoding="utf-8")

    result = subprocess.run(
        [validator, "--kubernetes-version", KUBERNETES_VERSION, "--strict", str(broken)],
        capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 1
    assert "readOnlyRootFileSystem" in result.stdout + result.stderr


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")

    assert sorted(kustomization["resources"]) == sorted(path.name for path in MANIFESTS)
    assert set(resources()) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}


def test_probes_use_health_endpoints() -> None:
    container = worker_container()
    port = next(port for port in container["ports"] if port["name"] == "http")
    config = resources()["ConfigMap"]["data"]

    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert port["containerPort"] == int(config["DRLHF_WEB_PORT"])
    assert config["DRLHF_WEB_HOST"] == "0.0.0.0"


def test_scrape_annotations_match_port() -> None:
    annotations = resources()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    config = resources()["ConfigMap"]["data"]

    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == config["DRLHF_WEB_PORT"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_resource_requests_within_limits() -> None:
    limits = worker_container()["resources"]

    for name in ("cpu", "memory"):
        assert quantity(limits["requests"][name]) > 0
        assert quantity(limits["requests"][name]) <= quantity(limits["limits"][name])
    assert quantity(limits["requests"]["memory"]) == 512 * 2**20


def test_security_context_non_root_read_only() -> None:
    pod = pod_spec()
    container = worker_container()["securityContext"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}


def test_writable_mounts_cover_workdir() -> None:
    # With a read-only root file system, Faust's data directory under the image's
    # WORKDIR and /tmp must be volumes.
    instructions = parse_dockerfile(REPO_ROOT / "Dockerfile")
    last_stage = max(item.stage for item in instructions)
    workdir = [item.arguments for item in instructions if item.stage == last_stage and item.keyword == "WORKDIR"][-1]
    mounts = {mount["mountPath"]: mount["name"] for mount in worker_container()["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}

    assert set(mounts) == {workdir, "/tmp"}
    for name in mounts.values():
        assert "emptyDir" in volumes[name]


def test_selectors_match_pod_labels() -> None:
    found = resources()
    labels = found["Deployment"]["spec"]["template"]["metadata"]["labels"]

    assert found["Deployment"]["spec"]["selector"]["matchLabels"] == labels
    assert found["Service"]["spec"]["selector"] == labels
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert found["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert found["Deployment"]["spec"]["replicas"] == 2


def test_env_sources_reference_manifests() -> None:
    sources = worker_container()["envFrom"]

    assert sources[0] == {"configMapRef": {"name": resources()["ConfigMap"]["metadata"]["name"]}}
    assert sources[1] == {"secretRef": {"name": "dynamic-rlhf-kafka", "optional": True}}


def test_configmap_variables_are_known_settings() -> None:
    settings_module = pytest.importorskip("service.settings")
    data = resources()["ConfigMap"]["data"]
    known = settings_env_names()

    assert set(data) <= known, f"unknown variables: {sorted(set(data) - known)}"
    assert all(isinstance(value, str) for value in data.values())
    settings = settings_module.Settings.from_env(data)
    assert settings.web_port == 6066
    assert settings.partitions >= resources()["Deployment"]["spec"]["replicas"]
    # Secrets belong in the Secret, never in the ConfigMap.
    assert "KAFKA_SASL_PASSWORD" not in data


def test_configmap_variables_documented() -> None:
    doc = REPO_ROOT / "docs" / "service.md"
    if not doc.exists():
        pytest.skip("docs/service.md does not exist yet")
    documented = set(re.findall(r"^\|\s*`([A-Z0-9_]+)`", doc.read_text(encoding="utf-8"), re.M))

    missing = set(resources()["ConfigMap"]["data"]) - documented
    assert not missing, f"ConfigMap variables missing from the docs/service.md table: {sorted(missing)}"
