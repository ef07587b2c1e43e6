"""Smoke tests of the session broker with aiokafka: keyed volume, group rebalancing, transactions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

pytestmark = pytest.mark.kafka

TopicFactory = Callable[..., str]

MESSAGE_COUNT = 10_000
DEADLINE_S = 60.0
LARGE_RECORD_BYTES = 12 * 1024 * 1024
LARGE_LIMIT_BYTES = 16 * 1024 * 1024


def _group_id(label: str) -> str:
    return f"smoke-{label}-{uuid.uuid4().hex[:8]}"


async def _drain(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> list[ConsumerRecord]:
    """Read until the consumer's position reaches the end offset of every partition.

    For a read_committed consumer ``end_offsets`` returns the last stable offset, so the
    loop stops after the last committed transaction.
    """
    partitions = list(partitions)
    end_offsets = await consumer.end_offsets(partitions)
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + DEADLINE_S

    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for batch in batches.values():
            records.extend(batch)
        positions = {tp: await consumer.position(tp) for tp in consumer.assignment()}
        if set(positions) == set(partitions) and all(positions[tp] >= end_offsets[tp] for tp in partitions):
            return records
    raise TimeoutError(f"consumer did not reach end offsets {end_offsets} within {DEADLINE_S:.0f} s")


def test_keyed_messages_consumed_and_committed(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory, kafka_admin: Any
) -> None:
    topic = kafka_topic_factory(4, prefix="smoke-keyed")
    keys = [f"key-{i:05d}" for i in range(MESSAGE_COUNT)]
    group_id = _group_id("keyed")

    async def produce() -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            pending = [await producer.send(topic, key.encode(), key=key.encode()) for key in keys]
            await producer.flush()
            return [(await future).partition for future in pending]
        finally:
            await producer.stop()

    async def consume() -> list[ConsumerRecord]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, group_id=group_id,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )
        await consumer.start()
        try:
            records = await _drain(consumer, [TopicPartition(topic, p) for p in range(4)])
            await consumer.commit()
            return records
        finally:
            await consumer.stop()

    produced_partitions = asyncio.run(produce())
    records = asyncio.run(consume())

    consumed_keys = [record.key.decode() for record in records]
    assert len(records) == MESSAGE_COUNT
    assert sorted(consumed_keys) == keys
    assert all(record.value == record.key for record in records)
    # The default partitioner spreads 10,000 distinct keys over all four partitions.
    assert set(produced_partitions) == {0, 1, 2, 3}

    committed = kafka_admin.committed_offsets(group_id)
    assert set(committed) == {(topic, p) for p in range(4)}
    assert sum(committed.values()) == MESSAGE_COUNT
    for partition in range(4):
        assert committed[(topic, partition)] == produced_partitions.count(partition)


def test_second_member_splits_partitions(kafka_bootstrap: str, kafka_topic_factory: TopicFactory) -> None:
    topic = kafka_topic_factory(4, prefix="smoke-group")
    group_id = _group_id("split")

    def make_consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, group_id=group_id,
            auto_offset_reset="earliest", heartbeat_interval_ms=500, session_timeout_ms=10_000,
        )

    async def poll_until(consumers: list[AIOKafkaConsumer], sizes: list[int]) -> list[set[TopicPartition]]:
        # Polling keeps every member's heartbeat and rejoin logic running during the rebalance.
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            await asyncio.gather(*(consumer.getmany(timeout_ms=200) for consumer in consumers))
            assignments = [set(consumer.assignment()) for consumer in consumers]
            if [len(assignment) for assignment in assignments] == sizes:
                return assignments
        raise TimeoutError(f"assignment sizes did not become {sizes} within {DEADLINE_S:.0f} s")

    async def scenario() -> tuple[set[TopicPartition], list[set[TopicPartition]]]:
        first = make_consumer()
        second = make_consumer()
        await first.start()
        try:
            (alone,) = await poll_until([first], [4])
            await second.start()
            try:
                split = await poll_until([first, second], [2, 2])
            finally:
                await second.stop()
        finally:
            await first.stop()
        return alone, split

    alone, (first_half, second_half) = asyncio.run(scenario())

    all_partitions = {TopicPartition(topic, p) for p in range(4)}
    assert alone == all_partitions
    assert len(first_half) == 2
    assert len(second_half) == 2
    assert first_half.isdisjoint(second_half)
    assert first_half | second_half == all_partitions


def test_aborted_transaction_invisible_to_read_committed(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    topic = kafka_topic_factory(1, prefix="smoke-txn")
    partition = TopicPartition(topic, 0)
    committed_values = [f"committed-{i}".encode() for i in range(10)]
    aborted_values = [f"aborted-{i}".encode() for i in range(5)]

    async def produce() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, transactional_id=f"smoke-txn-{uuid.uuid4().hex[:8]}"
        )
        await producer.start()
        try:
            # committed, aborted, committed: the aborted batch sits between visible records.
            for values, commit in ((committed_values[:5], True), (aborted_values, False),
                                   (committed_values[5:], True)):
                await producer.begin_transaction()
                for value in values:
                    await producer.send(topic, value, key=b"txn")
                if commit:
                    await producer.commit_transaction()
                else:
                    await producer.abort_transaction()
        finally:
            await producer.stop()

    async def read(isolation_level: str) -> list[bytes]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level=isolation_level,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            return [record.value for record in await _drain(consumer, [partition])]
        finally:
            await consumer.stop()

    asyncio.run(produce())
    visible = asyncio.run(read("read_committed"))
    everything = asyncio.run(read("read_uncommitted"))

    assert visible == committed_values
    assert everything == committed_values[:5] + aborted_values + committed_values[5:]


def test_twelve_mib_record_round_trip(kafka_bootstrap: str, kafka_topic_factory: TopicFactory) -> None:
    # The broker accepts records up to 16 MiB so a model checkpoint fits in one record.
    topic = kafka_topic_factory(1, prefix="smoke-large")
    payload = bytes(range(256)) * (LARGE_RECORD_BYTES // 256)

    async def round_trip() -> bytes:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=LARGE_LIMIT_BYTES)
        await producer.start()
        try:
            await producer.send_and_wait(topic, payload, key=b"checkpoint")
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False,
                                    max_partition_fetch_bytes=LARGE_LIMIT_BYTES,
                                    fetch_max_bytes=LARGE_LIMIT_BYTES)
        await consumer.start()
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            (record,) = await _drain(consumer, [partition])
            return record.value
        finally:
            await consumer.stop()

    received = asyncio.run(round_trip())

    assert len(received) == LARGE_RECORD_BYTES
    assert received == payload
