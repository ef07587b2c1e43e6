"""Round trips through a real broker: produce events and records, consume and export them."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from service.codecs import MSGPACK, decode_payload
from service.converters import read_feedback_file
from service.demo_stream import synthetic_preference_events
from service.events import SCHEMA_DIR, parse_preference_event, schema_validator
from service.export import export_records, register as register_export, topic_partitions
from service.limits import Limits
from service.produce import produce_events, register as register_produce

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

LIMITS = Limits()
RECORD_EXAMPLES = sorted((SCHEMA_DIR / "examples" / "fine_tune_record" / "valid").glob("*.json"))


async def _consume_all(bootstrap: str, topic: str) -> list[Any]:
    partitions = await topic_partitions(bootstrap, topic, {})
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        messages = []
        remaining = [tp for tp in partitions if end[tp] > 0]
        while remaining:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                messages.extend(batch)
            remaining = [tp for tp in remaining if await consumer.position(tp) < end[tp]]
        return messages
    finally:
        await consumer.stop()


def test_produce_synthetic_msgpack(kafka_bootstrap, kafka_topic_factory):
    topic = kafka_topic_factory(3, prefix="test-io")
    events = list(synthetic_preference_events(400, seed=11, model_id="m-a"))
    events += list(synthetic_preference_events(100, seed=12, model_id="m-b"))

    summary = asyncio.run(produce_events(kafka_bootstrap, topic, events, content_type=MSGPACK))
    assert summary.produced == 500
    assert summary.per_kind == Counter(event["kind"] for event in events)

    messages = asyncio.run(_consume_all(kafka_bootstrap, topic))
    assert len(messages) == 500
    by_id = {}
    for message in messages:
        assert dict(message.headers) == {"content-type": b"application/msgpack"}
        obj, content_type = decode_payload(message.value, message.headers, LIMITS)
        assert content_type == MSGPACK
        [example] = parse_preference_event(obj, LIMITS)
        assert message.key == example.model_id.encode()
        by_id[obj["event_id"]] = (obj, message.partition)
    assert {event_id: obj for event_id, (obj, _) in by_id.items()} == {event["event_id"]: event for event in events}

    # One key per model id, so each model's events share a partition.
    assert len({partition for obj, partition in by_id.values() if obj["model_id"] == "m-a"}) == 1
    assert len({partition for obj, partition in by_id.values() if obj["model_id"] == "m-b"}) == 1


def test_produce_raw_bytes_unchanged(kafka_bootstrap, kafka_topic_factory):
    topic = kafka_topic_factory(1, prefix="test-io")
    raw_files = sorted((SCHEMA_DIR / "examples" / "preference_event" / "invalid_raw").glob("*.bin"))
    payloads = [path.read_bytes() for path in raw_files]

    summary = asyncio.run(produce_events(kafka_bootstrap, topic, payloads))
    assert summary.per_kind == {"raw": len(payloads)}

    messages = asyncio.run(_consume_all(kafka_bootstrap, topic))
    assert [message.value for message in messages] == payloads
    assert all(message.headers == () for message in messages)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynamic-rlhf")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register_produce(subparsers)
    register_export(subparsers)
    return parser


def test_produce_command_skips_bad_lines(kafka_bootstrap, kafka_topic_factory, tmp_path, capsys):
    topic = kafka_topic_factory(3, prefix="test-io")
    path = tmp_path / "trl.jsonl"
    lines = [
        json.dumps({"prompt": "Q1", "chosen": "good", "rejected": "bad"}),
        "{not json",
        json.dumps({"prompt": "Q2", "chosen": "x" * 40_000, "rejected": "bad"}),
        json.dumps({"prompt": [{"role": "user", "content": "Q3"}], "chosen": "", "rejected": "no"}),
    ]
    path.write_text("\n".join(lines) + "\n")

    args = _parser().parse_args(["produce", str(path), "--topic", topic, "--bootstrap", kafka_bootstrap,
                                 "--model-id", "m-cli", "--no-progress"])
    assert args.handler(args) == 0

    out = capsys.readouterr()
    assert f"produced 2 messages to {topic}" in out.out
    assert "skipped 2 lines (" in out.out
    assert "conversion=1" in out.out
    assert "too_large=1" in out.out
    assert "trl.jsonl:2: invalid JSON" in out.err

    messages = asyncio.run(_consume_all(kafka_bootstrap, topic))
    objs = sorted((json.loads(m.value) for m in messages), key=lambda obj: obj["event_id"])
    assert [obj["event_id"].split(":")[1] for obj in objs] == ["1", "4"]
    assert {m.key for m in messages} == {b"m-cli"}


def test_produce_command_candidates(kafka_bootstrap, kafka_topic_factory, tmp_path, capsys):
    topic = kafka_topic_factory(3, prefix="test-io")
    path = tmp_path / "uf.jsonl"
    record = {"prompt": "Explain tides.", "completions": [
        {"response": "Moon.", "overall_score": 7}, {"response": "Wind.", "overall_score": 2},
        {"response": "Moon.", "overall_score": 6},
    ]}
    path.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n")

    args = _parser().parse_args(["produce", str(path), "--candidates", "--topic", topic, "--bootstrap",
                                 kafka_bootstrap, "--content-type", "msgpack", "--limit", "1", "--no-progress"])
    assert args.handler(args) == 0
    assert "produced 1 messages" in capsys.readouterr().out

    [message] = asyncio.run(_consume_all(kafka_bootstrap, topic))
    obj, _ = decode_payload(message.value, message.headers, LIMITS)
    assert obj["completions"] == ["Moon.", "Wind."]
    assert obj["request_id"] == obj["request_id"].split(":")[0] + ":1:" + obj["request_id"].split(":")[2]
    assert schema_validator("candidate_set").is_valid(obj)


def _records() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in RECORD_EXAMPLES]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_deduplicates_and_writes_formats(kafka_bootstrap, kafka_topic_factory, tmp_path):
    topic = kafka_topic_factory(3, prefix="test-io")
    records = _records()
    # Every record twice (at-least-once delivery) plus one undecodable message.
    asyncio.run(produce_events(kafka_bootstrap, topic, records + records[::-1] + [b"{broken"]))

    summary = asyncio.run(export_records(kafka_bootstrap, topic, tmp_path, ["sft", "dpo", "chat", "raw"]))
    assert summary.caught_up
    assert summary.records_read == 2 * len(records) + 1
    assert summary.duplicates == len(records)
    assert summary.invalid == 1
    assert summary.per_kind == Counter(record["kind"] for record in records)

    sft = [r for r in records if r["kind"] == "sft"]
    preference = [r for r in records if r["kind"] == "preference"]
    key = lambda row: json.dumps(row, sort_keys=True)  # noqa: E731
    assert sorted(_read_jsonl(tmp_path / "sft.jsonl"), key=key) == sorted(
        ({"prompt": r["prompt"], "completion": r["completion"]} for r in sft), key=key)
    assert sorted(_read_jsonl(tmp_path / "dpo.jsonl"), key=key) == sorted(
        ({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in preference), key=key)
    assert sorted(_read_jsonl(tmp_path / "records.jsonl"), key=key) == sorted(records, key=key)

    chats = _read_jsonl(tmp_path / "chat.jsonl")
    assert len(chats) == len(sft)
    for row in chats:
        assert set(row) == {"messages"}
        assert row["messages"][-1]["role"] == "assistant"
    assert {"messages": [{"role": "user", "content": "How do I boil an egg?"},
                         {"role": "assistant", "content": "Boil it for 9 minutes, then cool it in cold water."}]} in chats


def test_export_filters_model_ids(kafka_bootstrap, kafka_topic_factory, tmp_path):
    topic = kafka_topic_factory(2, prefix="test-io")
    records = _records()
    other = [dict(record, model_id="other-model", record_id=record["record_id"][::-1]) for record in records]
    asyncio.run(produce_events(kafka_bootstrap, topic, records + other))
    kept_model = records[0]["model_id"]

    summary = asyncio.run(export_records(kafka_bootstrap, topic, tmp_path, ["raw"], model_ids=[kept_model]))

    kept = [record for record in records if record["model_id"] == kept_model]
    assert summary.records_read == 2 * len(records)
    assert summary.other_models == 2 * len(records) - len(kept)
    assert sorted(r["record_id"] for r in _read_jsonl(tmp_path / "records.jsonl")) == sorted(
        r["record_id"] for r in kept)
    assert "left out" in summary.lines()[1]


def test_export_group_continues(kafka_bootstrap, kafka_topic_factory, tmp_path):
    topic = kafka_topic_factory(2, prefix="test-io")
    records = _records()
    group = f"test-export-{uuid.uuid4().hex[:8]}"
    asyncio.run(produce_events(kafka_bootstrap, topic, records[:2]))

    first = asyncio.run(export_records(kafka_bootstrap, topic, tmp_path, ["raw"], group_id=group))
    assert first.records_read == 2

    asyncio.run(produce_events(kafka_bootstrap, topic, records[2:]))
    second = asyncio.run(export_records(kafka_bootstrap, topic, tmp_path, ["raw"], group_id=group))
    assert second.records_read == len(records) - 2
    assert len(_read_jsonl(tmp_path / "records.jsonl")) == len(records)


def test_export_empty_topic(kafka_bootstrap, kafka_topic_factory, tmp_path):
    topic = kafka_topic_factory(3, prefix="test-io")
    summary = asyncio.run(export_records(kafka_bootstrap, topic, tmp_path))
    assert summary.records_read == 0
    assert summary.caught_up
    assert (tmp_path / "sft.jsonl").read_text() == ""


def test_export_command_missing_topic(kafka_bootstrap, tmp_path, capsys):
    args = _parser().parse_args(["export", str(tmp_path), "--topic", f"absent-{uuid.uuid4().hex[:8]}",
                                 "--bootstrap", kafka_bootstrap, "--no-progress"])
    assert args.handler(args) == 2
    assert "not found on the broker" in capsys.readouterr().err


@pytest.mark.skipif(
    not (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz").exists()
    and not os.environ.get("DRLHF_HH_RLHF_PATH"),
    reason="HH-RLHF test split not found",
)
def test_produce_hh_rlhf_file(kafka_bootstrap, kafka_topic_factory):
    path = Path(os.environ.get("DRLHF_HH_RLHF_PATH", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
                               / "hh-rlhf-harmless-base" / "test.jsonl.gz"))
    topic = kafka_topic_factory(3, prefix="test-io")
    events = list(read_feedback_file(path))
    summary = asyncio.run(produce_events(kafka_bootstrap, topic, events))
    assert summary.produced == 2312
    assert summary.per_kind == {"pair": 2312}

    messages = asyncio.run(_consume_all(kafka_bootstrap, topic))
    assert len(messages) == 2312
    assert len({json.loads(m.value)["event_id"] for m in messages}) == 2312


def test_produce_command_missing_topic(kafka_bootstrap, tmp_path, capsys):
    path = tmp_path / "trl.jsonl"
    path.write_text(json.dumps({"prompt": "Q", "chosen": "a", "rejected": "b"}) + "\n")
    missing = f"absent-{uuid.uuid4().hex[:8]}"

    args = _parser().parse_args(["produce", str(path), "--topic", missing, "--bootstrap", kafka_bootstrap,
                                 "--no-progress"])
    assert args.handler(args) == 2
    assert f"topic '{missing}' not found on the broker" in capsys.readouterr().err
