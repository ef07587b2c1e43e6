"""Unit tests of checkpoint envelopes and the checkpoint-before-ack rule of `ModelStore`."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

from dynamic_rlhf import DynamicRLHFModel, ModelConfig, PreferenceExample
from service.checkpoint import (
    Checkpoint,
    CheckpointError,
    ModelState,
    ModelStore,
    decode_checkpoint,
    encode_checkpoint,
    resume_offsets,
)


class FakeTable:
    """Records changelog sends; each send completes when the test resolves it."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.sent: list[tuple[int | None, bytes, bytes]] = []
        self.futures: list[asyncio.Future[None]] = []

    def send_changelog(self, partition: int | None, key: Any, value: Any) -> asyncio.Future[None]:
        self.sent.append((partition, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


class FakeEvent:
    def __init__(self) -> None:
        self.acked = False

    def ack(self) -> bool:
        self.acked = True
        return True


def _example(index: int) -> PreferenceExample:
    return PreferenceExample(f"prompt {index}", f"a helpful answer {index}", "no", model_id="m",
                             example_id=f"e{index}")


def test_envelope_round_trip() -> None:
    model = DynamicRLHFModel(model_id="m")
    model.learn_one(_example(0))
    checkpoint = Checkpoint("m", 3, {"prefs:3": 41}, model.to_bytes())

    decoded = decode_checkpoint(encode_checkpoint(checkpoint))

    assert decoded == checkpoint
    assert decoded.load_model().to_bytes() == model.to_bytes()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\xc1", "not MessagePack"),
        (msgpack.packb({"format": "other"}), "no format="),
        (msgpack.packb({"format": "dynamic-rlhf-checkpoint", "version": 99}), "version 99"),
    ],
)
def test_bad_envelope_rejected(value: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        decode_checkpoint(value)


def test_events_acked_only_after_broker_ack() -> None:
    async def scenario() -> None:
        table = FakeTable()
        store = ModelStore(table, ModelConfig(), every_events=2, interval_ms=60_000)
        state = store.get("m", 1)
        events = [FakeEvent(), FakeEvent()]
        for offset, event in enumerate(events):
            state.model.learn_one(_example(offset))
            state.mark_applied("prefs", 1, offset)
        store.defer_ack(events)

        assert store.checkpoint_due()
        round_task = asyncio.ensure_future(store.checkpoint())
        await asyncio.sleep(0)

        assert len(table.sent) == 1
        assert not any(event.acked for event in events)

        table.futures[0].set_result(None)
        written = await round_task

        assert written == 1
        assert all(event.acked for event in events)
        partition, key, value = table.sent[0]
        assert partition == 1
        assert key == b"m"
        assert decode_checkpoint(value).offsets == {"prefs:1": 1}
        assert table.data[b"m"] == value

    asyncio.run(scenario())


def test_failed_send_leaves_events_unacked() -> None:
    async def scenario() -> None:
        table = FakeTable()
        store = ModelStore(table, ModelConfig(), every_events=1, interval_ms=60_000)
        state = store.get("m", 0)
        event = FakeEvent()
        state.model.learn_one(_example(0))
        state.mark_applied("prefs", 0, 0)
        store.defer_ack([event])

        round_task = asyncio.ensure_future(store.checkpoint())
        await asyncio.sleep(0)
        table.futures[0].set_exception(RuntimeError("broker unavailable"))

        with pytest.raises(RuntimeError):
            await round_task
        assert not event.acked
        assert state.dirty
        assert store.checkpoint_due()

    asyncio.run(scenario())


def test_replayed_offset_detected_after_reload() -> None:
    async def scenario() -> None:
        table = FakeTable()
        store = ModelStore(table, ModelConfig(), every_events=1, interval_ms=60_000)
        state = store.get("m", 2)
        state.model.learn_one(_example(0))
        state.mark_applied("prefs", 2, 10)
        store.defer_ack([FakeEvent()])
        round_task = asyncio.ensure_future(store.checkpoint())
        await asyncio.sleep(0)
        table.futures[0].set_result(None)
        await round_task

        dropped = store.drop_partitions({2})
        reloaded = store.get("m", 2)

        assert dropped == ["m"]
        assert reloaded is not state
        assert reloaded.is_applied("prefs", 2, 10)
        assert not reloaded.is_applied("prefs", 2, 11)
        assert reloaded.model.to_bytes() == state.model.to_bytes()

    asyncio.run(scenario())


def test_checkpoint_without_changes_writes_nothing() -> None:
    async def scenario() -> None:
        table = FakeTable()
        store = ModelStore(table, ModelConfig(), every_events=1, interval_ms=60_000)
        store.get("m", 0)
        event = FakeEvent()
        store.defer_ack([event])  # an invalid event: acked with the next round, no model change

        written = await store.checkpoint()

        assert written == 0
        assert table.sent == []
        assert event.acked

    asyncio.run(scenario())


def test_resume_offsets_take_highest_per_partition() -> None:
    offset_maps = [
        {"prefs:0": 41, "other:0": 900},
        {"prefs:0": 17},
        {"prefs:3": 0},
        {"prefs:12": 99, "prefs:3": 5},
        {},
    ]

    assert resume_offsets(offset_maps, "prefs") == {0: 42, 3: 6, 12: 100}
    assert resume_offsets(offset_maps, "other") == {0: 901}
    assert resume_offsets(offset_maps, "missing") == {}


def test_resume_offsets_ignore_topic_prefix_match() -> None:
    # "prefs-v2:1" starts with "prefs" but belongs to another topic.
    assert resume_offsets([{"prefs-v2:1": 7, "prefs:1": 3}], "prefs") == {1: 4}


def test_store_resume_offsets_read_table_and_memory() -> None:
    table = FakeTable()
    table.data[b"a"] = encode_checkpoint(Checkpoint("a", 0, {"prefs:0": 10}, b""))
    table.data[b"b"] = encode_checkpoint(Checkpoint("b", 0, {"prefs:0": 25}, b""))
    table.data[b"c"] = encode_checkpoint(Checkpoint("c", 1, {"prefs:1": 7}, b""))
    table.data[b"not-a-checkpoint"] = b"\xc1"
    store = ModelStore(table, ModelConfig(dim=1024), every_events=1, interval_ms=60_000)

    # A model in memory that applied events after its last checkpoint.
    state = ModelState("c", 1, DynamicRLHFModel(ModelConfig(dim=1024), model_id="c"), {"prefs:1": 30})
    store.states["c"] = state

    assert store.resume_offsets("prefs") == {0: 26, 1: 31}
