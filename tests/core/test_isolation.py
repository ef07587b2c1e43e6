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
# numba is optional: dynamic_rlhf.kernels runs uncompiled without it.
ALLOWED_TOP_LEVEL = {"numpy", "msgpack", "numba", "dynamic_rlhf", "__future__"} | set(sys.stdlib_module_names)

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


MIXED_STREAM = """
import hashlib, sys
if sys.argv[2] == "without-numba":
    sys.modules["numba"] = None
sys.path.insert(0, sys.argv[1])
from dynamic_rlhf import DynamicRLHFModel, ModelConfig, PreferenceExample, RankingExample, kernels
from dynamic_rlhf.synthetic import SyntheticPreferences
examples = list(SyntheticPreferences(seed=3).examples(60))
examples[10] = PreferenceExample("Q", "same words", "other words", label="tie")
examples[20] = RankingExample("Q", ["best answer", "fine answer", "poor"])
model = DynamicRLHFModel(ModelConfig(dim=2**12, n_heads=3))
model.learn_many(examples[:30])
for example in examples[30:]:
    model.learn_one(example)
print(kernels.COMPILED, hashlib.sha256(model.to_bytes()).hexdigest())
"""


def test_kernels_same_bits_without_numba() -> None:
    runs = [subprocess.run([sys.executable, "-c", MIXED_STREAM, str(PACKAGE_DIR.parent), mode],
                           capture_output=True, text=True, timeout=300) for mode in ("with-numba", "without-numba")]

    for run in runs:
        assert run.returncode == 0, run.stderr
    (compiled, digest), (plain, plain_digest) = (run.stdout.split() for run in runs)
    assert (compiled, plain) == ("True", "False")
    assert digest == plain_digest


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
