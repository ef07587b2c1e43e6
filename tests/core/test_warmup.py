"""The warm-up loads every compiled loop that a typical stream of feedback reaches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter, so nothing compiled by other tests hides a loop the warm-up missed.
SCRIPT = """
import importlib, json, pkgutil
import dynamic_rlhf
from dynamic_rlhf import DynamicRLHFModel, PreferenceExample, RankingExample, RatingExample
from dynamic_rlhf.synthetic import SyntheticPreferences
from dynamic_rlhf.warmup import warm_up

def signatures():
    counts = {}
    for info in pkgutil.iter_modules(dynamic_rlhf.__path__):
        module = importlib.import_module("dynamic_rlhf." + info.name)
        for name, obj in vars(module).items():
            if hasattr(obj, "signatures") and hasattr(obj, "py_func"):
                counts[info.name + "." + name] = len(obj.signatures)
    return counts

seconds = warm_up()
before = signatures()
model = DynamicRLHFModel(model_id="stream")
examples = SyntheticPreferences(seed=3).examples(300)
examples += [RankingExample("Pick one", ["first answer", "second", "third"], example_id="r1"),
             RatingExample("Rate", ["good answer here", "bad"], ratings=[5, 1], example_id="g1"),
             PreferenceExample("Q", "same length a", "same length b", label="tie", example_id="t1")]
model.learn_many(examples)
model.learn_one(examples[0])
model.build_fine_tune_records("Write about rivers", ["a calm river story", "river"], source="test")
DynamicRLHFModel.from_bytes(model.to_bytes()).stats()
print(json.dumps({"seconds": seconds, "before": before, "after": signatures()}))
"""


def test_warm_up_loads_every_compiled_loop() -> None:
    pytest.importorskip("numba")
    completed = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])

    # Helpers such as kernels._f32 run only inside other loops, so they have no signature of their own.
    entry_points = {"learn_loop.learn_examples", "kernels.block_rewards", "feature_kernels.hash_tokens",
                    "feature_kernels.emit_entries", "feature_kernels.build_blocks"}
    assert result["seconds"] > 0
    assert {name for name, count in result["before"].items() if count >= 1} >= entry_points
    assert result["after"] == result["before"]
