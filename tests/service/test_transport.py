"""Tests of the worker's Kafka transport: the fetch long-poll of its aiokafka consumer and how
it resumes input partitions after a rebalance."""

from __future__ import annotations

import asyncio
from typing import cast

import faust
import pytest
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from service.app import create_app
from service.settings import Settings
from service.tables import declare_model_table
from service.transport import (
    FETCH_MAX_WAIT_MS,
    Consumer,
    ConsumerThread,
    Transport,
    install_transport,
    rewind_targets,
    set_resume_offsets,
)

SETTINGS = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "DRLHF_APP_ID": "transport-test"})
PREFS_0 = TP("dynamic-rlhf.preferences", 0)
PREFS_1 = TP("dynamic-rlhf.preferences", 1)
CANDIDATES_0 = TP("dynamic-rlhf.candidates", 0)
CHANGELOG_0 = TP("transport-test-models-changelog", 0)


def test_app_consumes_through_service_transport() -> None:
    app = create_app(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}))

    assert type(app.transport) is Transport
    assert app.transport.url == app.conf.broker_consumer


def test_worker_consumer_fetch_max_wait() -> None:
    async def create_consumer_fetch_wait() -> int:
        app = create_app(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}))
        thread = cast(aiokafka_driver.Consumer, app.consumer)._thread
        assert type(thread) is ConsumerThread

        # Built but never started, so it opens no connection.
        consumer = thread._create_worker_consumer(cast(aiokafka_driver.Transport, app.transport))
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert asyncio.run(create_consumer_fetch_wait()) == FETCH_MAX_WAIT_MS == 100


def test_install_transport_after_creation_raises() -> None:
    app = faust.App("drlhf-transport-test", broker="kafka://127.0.0.1:9092", autodiscover=False)
    _ = app.transport

    with pytest.raises(RuntimeError, match="before the app creates its transport"):
        install_transport(app)


def _consumer_with_assignment(assigned: set[TP]) -> tuple[faust.App, Consumer]:
    """Return an app with the model table and its consumer, which reports `assigned` as its assignment."""
    app = create_app(SETTINGS)
    declare_model_table(app, SETTINGS)
    consumer = cast(Consumer, app.consumer)
    consumer.assignment = lambda: set(assigned)  # type: ignore[method-assign]
    consumer.pause_partitions(assigned)
    return app, consumer


def test_rewind_targets_only_move_back() -> None:
    positions = {"a": 637, "b": 100, "c": 42, "d": None, "e": 5}
    resume = {"a": 600, "b": 120, "c": 42, "d": 3}

    assert rewind_targets(positions, resume) == {"a": 600}


def test_input_partitions_held_during_rebalance() -> None:
    async def scenario() -> None:
        assigned = {PREFS_0, CANDIDATES_0, CHANGELOG_0}
        app, consumer = _consumer_with_assignment(assigned)
        app.rebalancing = True

        consumer.resume_partitions(assigned)

        assert consumer._active_partitions == {CHANGELOG_0}
        assert consumer._paused_partitions == {PREFS_0, CANDIDATES_0}

        consumer.resume_flow()

        assert consumer._active_partitions == assigned
        assert consumer._paused_partitions == set()
        assert consumer._held_partitions == set()

    asyncio.run(scenario())


def test_input_partitions_resume_at_once_outside_rebalance() -> None:
    async def scenario() -> None:
        app, consumer = _consumer_with_assignment({PREFS_0, CHANGELOG_0})
        app.rebalancing = False

        consumer.resume_partitions({PREFS_0})

        assert consumer._active_partitions == {PREFS_0}
        assert consumer._held_partitions == set()

    asyncio.run(scenario())


def test_held_partition_revoked_is_not_resumed() -> None:
    async def scenario() -> None:
        app, consumer = _consumer_with_assignment({PREFS_0, PREFS_1})
        app.rebalancing = True
        consumer.resume_partitions({PREFS_0, PREFS_1})

        # The next assignment no longer contains partition 1.
        consumer.assignment = lambda: {PREFS_0}  # type: ignore[method-assign]
        consumer.resume_flow()

        assert consumer._active_partitions == {PREFS_0}

    asyncio.run(scenario())


def test_perform_seek_moves_back_to_resume_offsets() -> None:
    async def scenario() -> tuple[dict[TP, int], set[TP], dict[TP, int | None], bool]:
        app, consumer = _consumer_with_assignment({PREFS_0, PREFS_1, CANDIDATES_0, CHANGELOG_0})
        seeks: dict[TP, int] = {}
        requested: set[TP] = set()

        async def seek_to_committed() -> dict[TP, int | None]:
            return {PREFS_0: 637, PREFS_1: 100, CANDIDATES_0: 50, CHANGELOG_0: None}

        async def seek_wait(partitions: dict[TP, int]) -> None:
            seeks.update(partitions)
            consumer._read_offset.update(partitions)

        def resume_offsets(partitions: set[TP]) -> dict[TP, int]:
            requested.update(partitions)
            return {PREFS_0: 600, PREFS_1: 120}

        consumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
        consumer.seek_wait = seek_wait  # type: ignore[method-assign]
        set_resume_offsets(app, resume_offsets)
        # Left by an earlier read of the partition: Faust would count 601-636 as processed.
        consumer._gap[PREFS_0].addi(601, 637)

        await consumer.perform_seek()

        read = {tp: consumer._read_offset.get(tp) for tp in (PREFS_0, PREFS_1, CANDIDATES_0)}
        return seeks, requested, read, PREFS_0 in consumer._gap

    seeks, requested, read, gap_left = asyncio.run(scenario())

    assert seeks == {PREFS_0: 600}
    assert requested == {PREFS_0, PREFS_1, CANDIDATES_0}
    assert read == {PREFS_0: 600, PREFS_1: 100, CANDIDATES_0: 50}
    assert not gap_left


def test_fetch_uses_copy_of_active_partitions() -> None:
    async def scenario() -> tuple[list[set[TP] | None], bool, dict[TP, list[object]]]:
        _, consumer = _consumer_with_assignment({PREFS_0, CHANGELOG_0})
        received: list[set[TP] | None] = []

        async def thread_getmany(active_partitions: set[TP] | None, timeout: float) -> dict[TP, list[object]]:
            received.append(active_partitions)
            return {}

        consumer._thread.getmany = thread_getmany  # type: ignore[method-assign]
        live = {CHANGELOG_0}
        await consumer._getmany(live, timeout=0.01)
        # Recovery pauses the changelog partition while aiokafka still waits for records.
        live.clear()

        empty = await consumer._getmany(set(), timeout=0.01)
        await consumer._getmany(None, timeout=0.01)
        return received, received[0] is live, empty

    received, shared, empty = asyncio.run(scenario())

    assert received == [{CHANGELOG_0}, None]
    assert not shared
    assert empty == {}


def test_set_resume_offsets_requires_service_transport() -> None:
    app = faust.App("drlhf-transport-test", broker="kafka://127.0.0.1:9092", autodiscover=False)
    _ = app.transport

    with pytest.raises(RuntimeError, match="install_transport"):
        set_resume_offsets(app, lambda partitions: {})
