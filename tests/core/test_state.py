"""Serialisation round trips, format versioning and replay determinism."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from dynamic_rlhf import DynamicRLHFModel, ModelConfig, PreferenceExample, RankingExample, RatingExample, StateError
from dynamic_rlhf.state import FORMAT_VERSION
from dynamic_rlhf.synthetic import SyntheticPreferences

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Compare the answers"


def mixed_stream() -> list:
    examples: list = SyntheticPreferences(seed=11).examples(150)
    examples.append(PreferenceExample(PROMPT, "tied one", "tied two", label="tie", annotator_id="annotator-1"))
    examples.append(PreferenceExample(PROMPT, "dull", "duller", label="tie_bad"))
    examples.append(RankingExample(PROMPT, ["first place", "second place", "third place"]))
    examples.append(RatingExample(PROMPT, ["rated high", "rated low"], [5.0, 1.0]))
    examples.append(PreferenceExample([{"role": "user", "content": PROMPT}], "chat answer", "", example_id=None))
    return examples


def trained_model() -> DynamicRLHFModel:
    model = DynamicRLHFModel(ModelConfig(dim=2**16, n_heads=4), model_id="tenant-a")
    model.learn_many(mixed_stream())
    return model


def test_round_trip_is_exact() -> None:
    model = trained_model()
    data = model.to_bytes()

    restored = DynamicRLHFModel.from_bytes(data)

    assert restored.to_bytes() == data
    assert restored.model_id == "tenant-a"
    assert restored.config == model.config
    assert restored.stats() == model.stats()
    texts = ["first place", "chat answer", "never seen before", ""]
    assert restored.score(PROMPT, texts) == model.score(PROMPT, texts)


def test_restored_model_keeps_learning_identically() -> None:
    model = trained_model()
    restored = DynamicRLHFModel.from_bytes(model.to_bytes())
    more = SyntheticPreferences(seed=12).examples(40)

    model.learn_many(more)
    restored.learn_many(more)

    assert restored.to_bytes() == model.to_bytes()


def test_state_stores_only_touched_buckets() -> None:
    model = trained_model()
    state = msgpack.unpackb(model.to_bytes())
    touched = len(model.optimiser.touched())

    assert state["format_version"] == FORMAT_VERSION
    assert len(state["coordinates"]) == 4 * touched
    assert len(state["weights"]) == 4 * 5 * touched
    assert len(model.to_bytes()) < 50 * touched + 2_000


def test_empty_model_round_trip() -> None:
    data = DynamicRLHFModel().to_bytes()

    assert DynamicRLHFModel.from_bytes(data).to_bytes() == data
    assert len(data) < 1_000


def test_future_version_is_rejected() -> None:
    state = msgpack.unpackb(DynamicRLHFModel().to_bytes())
    state["format_version"] = FORMAT_VERSION + 1

    with pytest.raises(StateError, match="newer than this library supports"):
        DynamicRLHFModel.from_bytes(msgpack.packb(state))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc1not msgpack", "not msgpack"),
        (msgpack.packb({"hello": 1}), "missing format marker"),
        (msgpack.packb([1, 2]), "missing format marker"),
        ("text", "expected bytes"),
    ],
)
def test_invalid_state_is_rejected(data, message: str) -> None:
    with pytest.raises(StateError, match=message):
        DynamicRLHFModel.from_bytes(data)


def test_truncated_arrays_are_rejected() -> None:
    state = msgpack.unpackb(trained_model().to_bytes())
    state["weights"] = state["weights"][:-4]

    with pytest.raises(StateError, match="array sizes"):
        DynamicRLHFModel.from_bytes(msgpack.packb(state))


def test_same_events_give_identical_bytes() -> None:
    assert trained_model().to_bytes() == trained_model().to_bytes()


REPLAY_SCRIPT = """
import hashlib, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from test_state import trained_model
print(hashlib.sha256(trained_model().to_bytes()).hexdigest())
"""


def test_replay_is_identical_across_processes() -> None:
    digests = []
    for seed in ("1", "987654"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run(
            [sys.executable, "-c", REPLAY_SCRIPT, str(REPO_ROOT), str(Path(__file__).parent)],
            env=env, capture_output=True, text=True, check=True, timeout=120,
        )
        digests.append(result.stdout.strip())

    assert digests[0] == digests[1]
    assert digests[0] == __import__("hashlib").sha256(trained_model().to_bytes()).hexdigest()
