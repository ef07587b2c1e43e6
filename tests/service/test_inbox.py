"""Tests of the learn agent's inbox: routing by the conductor, batches, tracking and acks.

The app is built but never started, so nothing connects to a broker.
"""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types import TP, ConsumerMessage

from service.app import create_app
from service.inbox import Inbox, InboxConductor, install_inbox
from service.settings import Settings
from service.topics import declare_topics

SETTINGS = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "DRLHF_APP_ID": "inbox-test"})
PREFS_0 = TP(SETTINGS.topic_preferences, 0)
CANDIDATES_0 = TP(SETTINGS.topic_candidates, 0)


def message(app: faust.App, offset: int, *, generation_id: int | None = None, tp: TP = PREFS_0) -> ConsumerMessage:
    generation = app.consumer_generation_id if generation_id is None else generation_id
    return ConsumerMessage(tp.topic, tp.partition, offset, 0.0, 0, [], b"model-a", b"{}", None, 7, 2, tp,
                           generation_id=generation)


def inbox_app() -> tuple[faust.App, Inbox]:
    app = create_app(SETTINGS)
    topics = declare_topics(app, SETTINGS)
    inbox = install_inbox(app, topics.preferences, maxsize=100)
    app.flow_control.resume()
    return app, inbox


async def take(inbox: Inbox, max_messages: int, batches: int) -> list[list[int]]:
    offsets = []
    iterator = inbox.batches(max_messages)
    for _ in range(batches):
        batch = await asyncio.wait_for(iterator.__anext__(), timeout=5)
        offsets.append([m.offset for m in batch])
    return offsets


def test_conductor_routes_inbox_topic() -> None:
    app, inbox = inbox_app()
    conductor = app.topics

    assert isinstance(conductor, InboxConductor)
    assert conductor.inboxes == {SETTINGS.topic_preferences: inbox}
    assert inbox.topic in conductor
    assert conductor._build_handler(PREFS_0, set()).__qualname__ == "Inbox.handler.<locals>.on_message"
    assert "Inbox" not in getattr(conductor._build_handler(CANDIDATES_0, set()), "__qualname__", "")


def test_inbox_needs_service_conductor() -> None:
    app = faust.App("inbox-test-plain", broker="kafka://127.0.0.1:9092", autodiscover=False)
    topic = app.topic("plain", value_type=bytes)

    with pytest.raises(RuntimeError, match="install_transport"):
        install_inbox(app, topic)


def test_batches_take_buffered_up_to_limit() -> None:
    async def scenario() -> tuple[list[list[int]], int]:
        app, inbox = inbox_app()
        # The consumer tracks pending messages in a WeakSet, so the test keeps them alive.
        delivered = [message(app, offset) for offset in range(7)]
        for item in delivered:
            inbox.deliver(item)
        offsets = await take(inbox, 3, 3)
        return offsets, len(app.consumer._unacked_messages)

    offsets, unacked = asyncio.run(scenario())

    assert offsets == [[0, 1, 2], [3, 4, 5], [6]]
    assert unacked == 7


def test_older_generation_dropped_untracked() -> None:
    async def scenario() -> tuple[list[list[int]], list[int]]:
        app, inbox = inbox_app()
        delivered = [message(app, 0, generation_id=app.consumer_generation_id - 1), message(app, 1)]
        for item in delivered:
            inbox.deliver(item)
        offsets = await take(inbox, 10, 1)
        return offsets, sorted(m.offset for m in app.consumer._unacked_messages)

    offsets, unacked = asyncio.run(scenario())

    assert offsets == [[1]]
    assert unacked == [1]


def test_suspended_flow_drops_taken_messages() -> None:
    async def scenario() -> tuple[list[list[int]], int]:
        app, inbox = inbox_app()
        delivered = [message(app, 0), message(app, 1)]
        inbox.deliver(delivered[0])
        app.flow_control.suspend()
        iterator = inbox.batches(10)
        pending = asyncio.ensure_future(iterator.__anext__())
        await asyncio.sleep(0.05)
        app.flow_control.resume()
        # Resuming empties the queue, as it empties stream buffers. The next message is handed out.
        inbox.deliver(delivered[1])
        batch = await asyncio.wait_for(pending, timeout=5)
        return [[m.offset for m in batch]], len(app.consumer._unacked_messages)

    offsets, unacked = asyncio.run(scenario())

    assert offsets == [[1]]
    assert unacked == 1


def test_ack_releases_messages_for_commit() -> None:
    async def scenario() -> tuple[list[int], int, bool]:
        app, inbox = inbox_app()
        await app.topics._update_indices()
        for offset in range(3):
            inbox.deliver(message(app, offset))
        (batch,) = [b async for b in _first(inbox.batches(10))]
        inbox.ack(batch)
        return list(app.consumer._acked[PREFS_0]), len(app.consumer._unacked_messages), all(m.acked for m in batch)

    acked, unacked, all_acked = asyncio.run(scenario())

    assert acked == [0, 1, 2]
    assert unacked == 0
    assert all_acked


def test_full_queue_pauses_partition_fetch() -> None:
    async def scenario() -> tuple[bool, bool]:
        app, inbox = inbox_app()
        consumer = app.consumer
        consumer._active_partitions = {PREFS_0}
        # Faust's high-pressure mark is maxsize / 1.25 = 80 messages.
        for offset in range(81):
            inbox.deliver(message(app, offset))
        paused = PREFS_0 not in consumer._get_active_partitions()
        async for _ in _first(inbox.batches(1000)):
            pass
        # The next read of an empty queue signals the pressure drop.
        inbox.deliver(message(app, 81))
        async for _ in _first(inbox.batches(1000)):
            pass
        return paused, PREFS_0 in consumer._get_active_partitions()

    paused, resumed = asyncio.run(scenario())

    assert paused
    assert resumed


async def _first(iterator):  # type: ignore[no-untyped-def]
    yield await asyncio.wait_for(iterator.__anext__(), timeout=5)
