"""Helpers shared by the deployment tests: repository paths, YAML loading, free ports."""

from __future__ import annotations

import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
VENV_BIN = REPO_ROOT / ".venv" / "bin"


def load_yaml(path: Path) -> Any:
    """Parse one YAML document."""
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_yaml_documents(path: Path) -> list[Any]:
    """Parse every non-empty YAML document in a file."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def find_tool(name: str) -> str | None:
    """Return the path of a command from the project virtualenv or PATH, or None."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_env_names() -> set[str]:
    """Return every environment variable that `service.settings.Settings.from_env` reads."""
    from service import settings

    names = {option.env for option in settings.OPTIONS}
    prefixed = (
        (settings.MODEL_PREFIX, settings.ModelConfig),
        (settings.POLICY_PREFIX, settings.HarvestPolicy),
        (settings.LIMIT_PREFIX, settings.Limits),
    )
    for prefix, cls in prefixed:
        for name, _ in settings.configurable_fields(cls):
            names.add(prefix + name.upper())
    return names


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction after line continuations are joined."""

    stage: int
    keyword: str
    arguments: str


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Split a Dockerfile into instructions; `stage` counts FROM lines (-1 before the first)."""
    logical_lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical_lines.append(pending + line)
        pending = ""

    instructions = []
    stage = -1
    for line in logical_lines:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, re.sub(r"\s+", " ", arguments).strip()))
    return instructions
