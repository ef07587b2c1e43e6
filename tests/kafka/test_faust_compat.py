"""Faust (table + agent) against the session broker in both processing guarantees."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

APP_FILE = Path(__file__).with_name("faust_table_app.py")
EVENT_COUNT = 200
KEYS = ("a", "b", "c", "d")
TABLE_PARTITIONS = 2
WORKER_TIMEOUT_S = 120


async def _produce_events(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(EVENT_COUNT):
            await producer.send(topic, str(i).encode(), key=KEYS[i % len(KEYS)].encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _latest_committed_values(bootstrap: str, topic: str) -> dict[str, int]:
    """Read ``topic`` with read_committed and return the last value per key."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(TABLE_PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end_offsets = await consumer.end_offsets(partitions)

        latest: dict[str, int] = {}
        for _ in range(120):
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                for record in batch:
                    latest[json.loads(record.key)] = json.loads(record.value)
            positions = [await consumer.position(tp) for tp in partitions]
            if all(position >= end_offsets[tp] for position, tp in zip(positions, partitions)):
                return latest
        raise TimeoutError(f"changelog {topic} not read to its end offsets {end_offsets}")
    finally:
        await consumer.stop()


def _free_port() -> int:
    # The `faust worker` command starts its web server even with web_enabled=False.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_faust_table_counts_committed(
    guarantee: str, tmp_path: Path, kafka_bootstrap: str,
    kafka_topic_factory: Callable[..., str], kafka_admin: Any,
) -> None:
    topic = kafka_topic_factory(2, prefix="faust-input")
    app_id = f"faust-compat-{uuid.uuid4().hex[:8]}"
    changelog = f"{app_id}-counts-changelog"
    result_file = tmp_path / "table.json"
    asyncio.run(_produce_events(kafka_bootstrap, topic))

    env = {
        **os.environ,
        "FAUST_TEST_BROKER": kafka_bootstrap, "FAUST_TEST_APP_ID": app_id,
        "FAUST_TEST_TOPIC": topic, "FAUST_TEST_GUARANTEE": guarantee,
        "FAUST_TEST_EXPECTED": str(EVENT_COUNT), "FAUST_TEST_DATADIR": str(tmp_path / "faust"),
        "FAUST_TEST_RESULT": str(result_file), "FAUST_TEST_WEB_PORT": str(_free_port()),
    }
    try:
        worker = subprocess.run(
            [sys.executable, str(APP_FILE), "worker", "--loglevel", "warn"],
            capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=env, cwd=tmp_path,
        )
        assert worker.returncode == 0, worker.stderr[-3000:]
        assert result_file.is_file(), worker.stderr[-3000:]

        per_key = EVENT_COUNT // len(KEYS)
        assert json.loads(result_file.read_text()) == {key: per_key for key in KEYS}
        assert asyncio.run(_latest_committed_values(kafka_bootstrap, changelog)) == {key: per_key for key in KEYS}

        committed = kafka_admin.committed_offsets(app_id)
        assert sum(offset for (name, _), offset in committed.items() if name == topic) == EVENT_COUNT
    finally:
        internal = [name for name in kafka_admin.list_topics() if name.startswith(app_id)]
        kafka_admin.delete_topics(internal)
