"""Tests of the feedback-file converters on the HH-RLHF test split and small sample files."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from service.converters import ConversionError, candidate_sets_from_feedback, detect_format, read_feedback_file
from service.converters.hh_rlhf import split_transcript
from service.events import parse_candidate_set, parse_preference_event
from service.limits import Limits

REPO_ROOT = Path(__file__).resolve().parents[2]
HH_RLHF = Path(os.environ.get(
    "DRLHF_HH_RLHF_PATH", REPO_ROOT / ".." / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
))
needs_hh = pytest.mark.skipif(not HH_RLHF.exists(), reason=f"HH-RLHF test split not found at {HH_RLHF}")
LIMITS = Limits()


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def hh_events() -> list[dict]:
    return list(read_feedback_file(HH_RLHF))


@needs_hh
def test_hh_rlhf_event_count(hh_events):
    assert len(hh_events) == 2312
    assert len({event["event_id"] for event in hh_events}) == 2312


@needs_hh
def test_hh_rlhf_all_events_valid(hh_events):
    for event in hh_events:
        [example] = parse_preference_event(event, LIMITS)
        assert example.label == "chosen"


@needs_hh
def test_hh_rlhf_measured_shapes(hh_events):
    # Measured on the harmless-base test split: 4 chosen answers are empty, no rejected one is,
    # every prompt ends with a user turn, and the longest prompt has 35 messages.
    assert sum(event["chosen"] == "" for event in hh_events) == 4
    assert sum(event["rejected"] == "" for event in hh_events) == 0
    assert all(event["prompt"][-1]["role"] == "user" for event in hh_events)
    assert all(isinstance(event["chosen"], str) for event in hh_events)
    assert all(isinstance(event["rejected"], str) for event in hh_events)
    assert max(len(event["prompt"]) for event in hh_events) == 35


@needs_hh
def test_hh_rlhf_shortened_prompts(hh_events):
    # A record whose sides end with different numbers of assistant turns gets a shorter shared prompt.
    with gzip.open(HH_RLHF, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]

    shortened = 0
    for event, record in zip(hh_events, records, strict=True):
        chosen_turns = len(split_transcript(record["chosen"]))
        rejected_turns = len(split_transcript(record["rejected"]))
        if len(event["prompt"]) != chosen_turns - 1 or len(event["prompt"]) != rejected_turns - 1:
            shortened += 1
    assert shortened == 5


@needs_hh
def test_hh_rlhf_first_record(hh_events):
    first = hh_events[0]
    assert first["event_id"].startswith("test.jsonl.gz:1:")
    assert first["kind"] == "pair"
    assert first["model_id"] == "default"
    assert first["tags"] == ["hh-rlhf"]
    assert [message["role"] for message in first["prompt"]] == ["user", "assistant", "user", "assistant", "user"]
    assert first["prompt"][0]["content"] == "what are some pranks with a pen i can do?"
    assert first["prompt"][-1]["content"] == "okay some of these do not have anything to do with pens"
    assert first["chosen"].startswith("No, sorry!  All of these involve a pen")
    assert first["rejected"].startswith("There are lots of funny things you can do with pens")


@needs_hh
def test_hh_rlhf_ids_deterministic(hh_events):
    again = read_feedback_file(HH_RLHF, "hh-rlhf", model_id="m-2")
    first = next(again)
    assert first["event_id"] == hh_events[0]["event_id"]
    assert first["model_id"] == "m-2"


@needs_hh
def test_hh_rlhf_candidate_sets(hh_events):
    sets = list(candidate_sets_from_feedback(hh_events))
    assert len(sets) == 2312
    assert Counter(len(s["completions"]) for s in sets) == {2: 2312}
    for candidate_set in sets[:200]:
        parsed = parse_candidate_set(candidate_set, LIMITS)
        assert parsed.request_id.startswith("test.jsonl.gz:")


def test_hh_transcript_split():
    turns = split_transcript("\n\nHuman: Hi there\n\nAssistant:  Hello!\n\nHuman: Bye\n\nAssistant:")
    assert turns == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": ""},
    ]


def test_hh_consecutive_assistant_turns(tmp_path):
    record = {
        "chosen": "\n\nHuman: Q1\n\nAssistant: A1\n\nHuman: Q2\n\nAssistant: part one\n\nAssistant: part two",
        "rejected": "\n\nHuman: Q1\n\nAssistant: A1\n\nHuman: Q2\n\nAssistant: other",
    }
    [event] = read_feedback_file(write_jsonl(tmp_path / "hh.jsonl", [record]))
    assert [m["content"] for m in event["prompt"]] == ["Q1", "A1", "Q2"]
    assert event["chosen"] == "part one\n\npart two"
    assert event["rejected"] == "other"


def test_hh_gzip_and_bad_line(tmp_path):
    path = tmp_path / "small.jsonl.gz"
    good = {"chosen": "\n\nHuman: Q\n\nAssistant: yes", "rejected": "\n\nHuman: Q\n\nAssistant: no"}
    ends_with_human = {"chosen": "\n\nHuman: Q\n\nAssistant: A\n\nHuman: ?", "rejected": "\n\nHuman: Q\n\nAssistant: no"}
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(good) + "\n\n" + json.dumps(ends_with_human) + "\n" + "{oops\n")

    errors: list[ConversionError] = []
    events = list(read_feedback_file(path, errors=errors))
    assert [event["chosen"] for event in events] == ["yes"]
    assert [(error.line, error.path) for error in errors] == [(3, str(path)), (4, str(path))]
    assert "ends with a user turn" in errors[0].problem
    assert "invalid JSON" in errors[1].problem

    with pytest.raises(ConversionError, match=r"small\.jsonl\.gz:3: hh-rlhf: chosen transcript ends with a user turn"):
        list(read_feedback_file(path))


def test_trl_explicit_prompt(tmp_path):
    records = [
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon.", "margin": 1.5},
        {"prompt": [{"role": "user", "content": "2+2?"}],
         "chosen": [{"role": "assistant", "content": "4"}],
         "rejected": [{"role": "assistant", "content": ""}]},
    ]
    events = list(read_feedback_file(write_jsonl(tmp_path / "trl.jsonl", records)))
    assert [event["tags"] for event in events] == [["trl"], ["trl"]]
    assert events[0]["prompt"] == "Capital of France?"
    assert events[0]["margin"] == 1.5
    assert events[1]["rejected"] == [{"role": "assistant", "content": ""}]
    for event in events:
        parse_preference_event(event, LIMITS)


def test_trl_implicit_prompt(tmp_path):
    shared = [{"role": "user", "content": "Name a colour."}]
    record = {
        "chosen": shared + [{"role": "assistant", "content": "Blue."}],
        "rejected": shared + [{"role": "assistant", "content": "Seven."}],
    }
    path = write_jsonl(tmp_path / "implicit.jsonl", [record])
    assert detect_format(record) == "trl"
    [event] = read_feedback_file(path)
    assert event["prompt"] == shared
    assert event["chosen"] == [{"role": "assistant", "content": "Blue."}]
    assert event["rejected"] == [{"role": "assistant", "content": "Seven."}]
    parse_preference_event(event, LIMITS)


def test_trl_implicit_without_shared_prefix(tmp_path):
    record = {"chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "user", "content": "b"}]}
    with pytest.raises(ConversionError, match="share no messages"):
        list(read_feedback_file(write_jsonl(tmp_path / "t.jsonl", [record]), "trl"))


def test_ultrafeedback_scores(tmp_path):
    records = [
        {"instruction": "Write a haiku.", "completions": [
            {"response": "Leaves fall...", "overall_score": 8.5},
            {"response": "A haiku.", "overall_score": 3},
        ]},
        {"prompt": "Explain tides.", "completions": [
            {"text": "The moon pulls the oceans.", "ratings": {"helpfulness": 5, "honesty": 4}},
            {"text": "Wind.", "ratings": [1, 2, "N/A"]},
            {"text": "", "annotations": {"helpfulness": {"Rating": "2"}, "honesty": {"Rating": "N/A"}}},
        ]},
    ]
    events = list(read_feedback_file(write_jsonl(tmp_path / "uf.jsonl", records)))
    assert [event["kind"] for event in events] == ["ratings", "ratings"]
    assert events[0]["ratings"] == [8.5, 3.0]
    assert events[0]["prompt"] == "Write a haiku."
    assert events[1]["completions"] == ["The moon pulls the oceans.", "Wind.", ""]
    assert events[1]["ratings"] == [4.5, 1.5, 2.0]
    for event in events:
        parse_preference_event(event, LIMITS)

    sets = list(candidate_sets_from_feedback(events))
    assert sets[1]["completions"] == ["The moon pulls the oceans.", "Wind.", ""]


def test_ultrafeedback_missing_score(tmp_path):
    record = {"prompt": "p", "completions": [{"response": "a", "overall_score": 1}, {"response": "b"}]}
    with pytest.raises(ConversionError, match=r"completions\[1\] has no numeric"):
        list(read_feedback_file(write_jsonl(tmp_path / "uf.jsonl", [record])))


def test_native_events_pass_through(tmp_path):
    event = {"event_id": "e-9", "model_id": "m", "kind": "tie", "prompt": "p", "chosen": "a", "rejected": "b"}
    [read] = read_feedback_file(write_jsonl(tmp_path / "own.jsonl", [event]))
    assert read == event
    [overridden] = read_feedback_file(tmp_path / "own.jsonl", model_id="other")
    assert overridden["model_id"] == "other"
    assert overridden["event_id"] == "e-9"


def test_undetectable_format(tmp_path):
    with pytest.raises(ConversionError, match="cannot detect the feedback format"):
        list(read_feedback_file(write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}])))


def test_unknown_format_name(tmp_path):
    with pytest.raises(ValueError, match="unknown feedback format"):
        list(read_feedback_file(write_jsonl(tmp_path / "x.jsonl", [{}]), "csv"))


def test_non_object_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n[1, 2]\n')
    errors: list[ConversionError] = []
    assert len(list(read_feedback_file(path, errors=errors))) == 1
    assert errors[0].line == 2
    assert "expected an object" in errors[0].problem
