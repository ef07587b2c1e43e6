"""The core imports without the service stack and its doctests pass."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import dynamic_rlhf

PACKAGE_DIR = Path(dynamic_rlhf.__file__).resolve().parent
ALLOWED_TOP_LEVEL = {"numpy", "msgpack", "dynamic_rlhf", "__future__"} | set(sys.stdlib_module_names)

BLOCKED_IMPORT = """
import sys
for name in ("faust", "aiokafka", "prometheus_client", "service", "mode"):
    sys.modules[name] = None
sys.path.insert(0, sys.argv[1])
import dynamic_rlhf, dynamic_rlhf.synthetic
model = dynamic_rlhf.DynamicRLHFModel()
model.learn_one(dynamic_rlhf.PreferenceExample("Q", "good", "bad"))
print(model.version, sorted(n for n in ("faust", "aiokafka", "prometheus_client") if sys.modules.get(n)))
"""


def test_core_imports_without_service_stack() -> None:
    result = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT, str(PACKAGE_DIR.parent)],
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 []"


def module_names() -> list[str]:
    return sorted(f"dynamic_rlhf.{m.name}" for m in pkgutil.iter_modules([str(PACKAGE_DIR)]))


@pytest.mark.parametrize("path", sorted(PACKAGE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_module_imports_only_allowed_packages(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])

    assert imported <= ALLOWED_TOP_LEVEL, imported - ALLOWED_TOP_LEVEL
    assert "logging" not in imported


@pytest.mark.parametrize("name", module_names() + ["dynamic_rlhf"])
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)

    assert result.failed == 0


def test_py_typed_marker_ships() -> None:
    assert (PACKAGE_DIR / "py.typed").exists()
