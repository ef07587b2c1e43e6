"""Tests of the JSON Schemas and their example messages.

Invalid example files are named ``<reason>__<case>.json`` (or ``.bin`` for raw
payloads); the prefix is the reason the service must reject them with.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from service.codecs import decode_payload
from service.dead_letters import build_dead_letter, encode_dead_letter, original_bytes
from service.errors import REASONS, InvalidInput
from service.events import SCHEMA_DIR, parse_candidate_set, parse_preference_event, schema_validator
from service.limits import Limits

EXAMPLES = SCHEMA_DIR / "examples"
LIMITS = Limits()
PARSERS = {"preference_event": parse_preference_event, "candidate_set": parse_candidate_set}


def example_files(name: str, folder: str) -> list[Path]:
    return sorted((EXAMPLES / name / folder).glob("*"))


def expected_reason(path: Path) -> str:
    return path.name.split("__", 1)[0]


def test_every_schema_is_valid_draft_2020_12():
    names = sorted(path.name for path in SCHEMA_DIR.glob("*.schema.json"))
    assert names == [
        "candidate_set.schema.json",
        "dead_letter.schema.json",
        "fine_tune_record.schema.json",
        "preference_event.schema.json",
    ]
    for name in names:
        Draft202012Validator.check_schema(json.loads((SCHEMA_DIR / name).read_text()))


@pytest.mark.parametrize("name", ["preference_event", "candidate_set", "dead_letter", "fine_tune_record"])
def test_examples_present(name):
    assert len(example_files(name, "valid")) >= 2
    assert len(example_files(name, "invalid")) >= 3


def test_example_counts():
    assert len(example_files("preference_event", "valid")) == 10
    assert len(example_files("preference_event", "invalid")) == 27
    assert len(example_files("preference_event", "invalid_raw")) == 13


@pytest.mark.parametrize("name", ["preference_event", "candidate_set", "dead_letter", "fine_tune_record"])
def test_valid_examples_match_schema(name):
    validator = schema_validator(name)
    for path in example_files(name, "valid"):
        errors = [error.message for error in validator.iter_errors(json.loads(path.read_text()))]
        assert errors == [], path.name


@pytest.mark.parametrize("name", ["candidate_set", "dead_letter", "fine_tune_record"])
def test_invalid_examples_fail_schema(name):
    validator = schema_validator(name)
    for path in example_files(name, "invalid"):
        if expected_reason(path) != "schema" and name != "dead_letter" and name != "fine_tune_record":
            continue
        assert not validator.is_valid(json.loads(path.read_text())), path.name


@pytest.mark.parametrize("path", example_files("preference_event", "valid"), ids=lambda p: p.name)
def test_valid_preference_event_parses(path):
    obj, _ = decode_payload(path.read_bytes(), None, LIMITS)
    examples = parse_preference_event(obj, LIMITS)
    assert len(examples) == 1
    assert examples[0].example_id == obj["event_id"]
    assert examples[0].model_id == obj.get("model_id", "default")


@pytest.mark.parametrize(
    "path",
    example_files("preference_event", "invalid") + example_files("preference_event", "invalid_raw"),
    ids=lambda p: p.name,
)
def test_invalid_preference_event_rejected(path):
    reason = expected_reason(path)
    assert reason in REASONS

    with pytest.raises(InvalidInput) as info:
        obj, _ = decode_payload(path.read_bytes(), None, LIMITS)
        parse_preference_event(obj, LIMITS)
    assert info.value.reason == reason
    assert info.value.detail


@pytest.mark.parametrize("path", example_files("candidate_set", "valid"), ids=lambda p: p.name)
def test_valid_candidate_set_parses(path):
    obj, _ = decode_payload(path.read_bytes(), None, LIMITS)
    candidate_set = parse_candidate_set(obj, LIMITS)
    assert candidate_set.request_id == obj["request_id"]
    assert list(candidate_set.completions) == obj["completions"]


@pytest.mark.parametrize("path", example_files("candidate_set", "invalid"), ids=lambda p: p.name)
def test_invalid_candidate_set_rejected(path):
    obj, _ = decode_payload(path.read_bytes(), None, LIMITS)
    with pytest.raises(InvalidInput) as info:
        parse_candidate_set(obj, LIMITS)
    assert info.value.reason == expected_reason(path)


def test_raw_examples_cover_both_codecs():
    reasons = {expected_reason(path) for path in example_files("preference_event", "invalid_raw")}
    assert {"invalid_json", "invalid_msgpack", "not_an_object", "empty_payload", "invalid_feedback"} <= reasons


def test_dead_letter_matches_schema():
    letter = build_dead_letter(
        original=b'{"kind": "pair"}', reason="schema", detail="/: 'event_id' is a required property",
        topic="drlhf.preferences", partition=3, offset=17, timestamp_ms=1_796_385_600_000,
        content_type="application/json",
    )
    assert schema_validator("dead_letter").is_valid(letter)
    assert original_bytes(letter) == b'{"kind": "pair"}'
    assert letter["original_size"] == 16
    assert letter["original_truncated"] is False
    assert json.loads(encode_dead_letter(letter)) == letter


def test_dead_letter_for_null_value():
    letter = build_dead_letter(
        original=None, reason="empty_payload", detail="empty", topic="t", partition=0, offset=0,
        timestamp_ms=None, content_type=None,
    )
    assert schema_validator("dead_letter").is_valid(letter)
    assert letter["original_base64"] is None
    assert original_bytes(letter) is None


def test_dead_letter_truncates_large_original():
    original = b"x" * 1000
    letter = build_dead_letter(
        original=original, reason="too_large", detail="big", topic="t", partition=0, offset=5,
        timestamp_ms=None, content_type=None, max_original_bytes=100,
    )
    assert original_bytes(letter) == b"x" * 100
    assert letter["original_size"] == 1000
    assert letter["original_truncated"] is True


def test_dead_letter_rejects_unknown_reason():
    with pytest.raises(ValueError):
        build_dead_letter(original=b"", reason="oops", detail="", topic="t", partition=0, offset=0,
                          timestamp_ms=None, content_type=None)


def test_core_records_match_schema():
    from dynamic_rlhf import DynamicRLHFModel, HarvestPolicy

    from service.demo_stream import synthetic_candidate_sets, synthetic_preference_events

    model = DynamicRLHFModel(model_id="m-schema")
    for event in synthetic_preference_events(300, seed=5, model_id="m-schema"):
        for example in parse_preference_event(event, LIMITS):
            model.learn_one(example)

    validator = schema_validator("fine_tune_record")
    policy = HarvestPolicy(name="schema-test", top_k=2)
    chat_prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write something."}]
    kinds: Counter[str] = Counter()
    for obj in synthetic_candidate_sets(20, seed=6, model_id="m-schema"):
        candidate_set = parse_candidate_set(obj, LIMITS)
        for prompt in (candidate_set.prompt, chat_prompt):
            records = model.build_fine_tune_records(
                prompt, list(candidate_set.completions), candidate_set.source, policy=policy,
                tags=candidate_set.tags, request_id=candidate_set.request_id,
            )
            for record in records:
                errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(record)]
                assert errors == []
                kinds[(record["kind"], isinstance(record["prompt"], str))] += 1
    assert kinds[("sft", True)] == 40
    assert kinds[("sft", False)] == 40
    assert kinds[("preference", True)] == 20
    assert kinds[("preference", False)] == 20
