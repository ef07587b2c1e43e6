"""Crash-safe model state: checkpoint envelopes and the per-worker model store.

A checkpoint is one value of the Faust model table (key: model id as UTF-8 bytes). The
value is a MessagePack envelope holding the core model's ``to_bytes()`` and, for every
input partition that fed the model, the offset of the last event applied to it::

    {"format": "dynamic-rlhf-checkpoint", "version": 1, "model_id": str,
     "partition": int, "offsets": {"<topic>:<partition>": int}, "model": bytes}

Two rules make a restart after SIGKILL lose or repeat no event:

1. The learn agent skips an event whose offset is at or below the envelope's offset for
   its partition, so an event replayed from Kafka is applied at most once.
2. Input events are acknowledged to Faust only after the checkpoint that contains them
   has been acknowledged by the broker, so the committed consumer offset does not pass the
   last checkpointed offset, and every event after the checkpoint is consumed again.
   faust-streaming 0.15.3 can commit past unprocessed events during a rebalance;
   `service.transport` prevents that and seeks back to `resume_offsets` after a recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from dynamic_rlhf import DynamicRLHFModel, ModelConfig

logger = logging.getLogger(__name__)

ENVELOPE_FORMAT = "dynamic-rlhf-checkpoint"
ENVELOPE_VERSION = 1


class CheckpointError(ValueError):
    """A table value is not a checkpoint envelope this version can read."""


@dataclass(frozen=True)
class Checkpoint:
    """Decoded checkpoint envelope."""

    model_id: str
    partition: int
    offsets: dict[str, int]
    model_bytes: bytes

    def load_model(self) -> DynamicRLHFModel:
        """Rebuild the core model from the stored bytes."""
        return DynamicRLHFModel.from_bytes(self.model_bytes)


def offset_key(topic: str, partition: int) -> str:
    """Return the envelope key of an input partition."""
    return f"{topic}:{partition}"


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    """Serialise a checkpoint into its MessagePack envelope."""
    return msgpack.packb(
        {
            "format": ENVELOPE_FORMAT,
            "version": ENVELOPE_VERSION,
            "model_id": checkpoint.model_id,
            "partition": checkpoint.partition,
            "offsets": dict(checkpoint.offsets),
            "model": checkpoint.model_bytes,
        },
        use_bin_type=True,
    )


def decode_checkpoint(data: bytes) -> Checkpoint:
    """Parse a MessagePack envelope; raise `CheckpointError` when it is not one."""
    try:
        envelope = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CheckpointError(f"checkpoint value is not MessagePack: {exc}") from None

    if not isinstance(envelope, dict) or envelope.get("format") != ENVELOPE_FORMAT:
        raise CheckpointError(f"checkpoint value has no format={ENVELOPE_FORMAT!r} field")
    if envelope.get("version") != ENVELOPE_VERSION:
        raise CheckpointError(
            f"checkpoint version {envelope.get('version')!r} is not supported; expected {ENVELOPE_VERSION}"
        )
    return Checkpoint(
        model_id=str(envelope["model_id"]),
        partition=int(envelope["partition"]),
        offsets={str(k): int(v) for k, v in envelope["offsets"].items()},
        model_bytes=bytes(envelope["model"]),
    )


def resume_offsets(offset_maps: Iterable[Mapping[str, int]], topic: str) -> dict[int, int]:
    """Return, for each partition of `topic`, the offset after the highest applied event.

    `offset_maps` are the ``offsets`` of the checkpoints (``"<topic>:<partition>"`` to the last
    applied offset). The learn agent applies one partition's events in offset order, and a
    checkpoint round writes every changed model. So each event up to the highest offset that
    any model of the partition stores is in a checkpoint, unless it was rejected before it
    reached a model. Partitions that no map mentions are left out.
    """
    resume: dict[int, int] = {}
    prefix = f"{topic}:"
    for offsets in offset_maps:
        for key, offset in offsets.items():
            if not key.startswith(prefix):
                continue
            partition = int(key[len(prefix):])
            resume[partition] = max(resume.get(partition, 0), offset + 1)
    return resume


@dataclass
class ModelState:
    """A model held in memory by the worker that owns its partition."""

    model_id: str
    partition: int
    model: DynamicRLHFModel
    offsets: dict[str, int] = field(default_factory=dict)
    dirty: bool = False

    def is_applied(self, topic: str, partition: int, offset: int) -> bool:
        """Return True when the event at `offset` is already part of this state."""
        last = self.offsets.get(offset_key(topic, partition))
        return last is not None and offset <= last

    def mark_applied(self, topic: str, partition: int, offset: int) -> None:
        self.offsets[offset_key(topic, partition)] = offset
        self.dirty = True

    def snapshot(self) -> Checkpoint:
        return Checkpoint(self.model_id, self.partition, dict(self.offsets), self.model.to_bytes())


class ChangelogTable(Protocol):
    """The parts of a Faust table the store uses."""

    data: Any

    def send_changelog(self, partition: int | None, key: Any, value: Any) -> Awaitable[Any]: ...


class Acknowledgeable(Protocol):
    def ack(self) -> bool: ...


CheckpointObserver = Callable[[str, int], None]
"""Callback with the model id and the byte size of each checkpoint value written."""


class ModelStore:
    """Models of the partitions this worker owns, with checkpoint-before-ack bookkeeping."""

    def __init__(self, table: ChangelogTable, config: ModelConfig, *, every_events: int, interval_ms: int,
                 on_checkpoint: CheckpointObserver | None = None) -> None:
        self.table = table
        self.config = config
        self.every_events = every_events
        self.interval_s = interval_ms / 1000.0
        self.on_checkpoint = on_checkpoint
        self.states: dict[str, ModelState] = {}
        self._pending_events: list[Acknowledgeable] = []
        self._pending_sends: list[Awaitable[Any]] = []
        self._events_since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._lock = asyncio.Lock()

    def get(self, model_id: str, partition: int) -> ModelState:
        """Return the state of `model_id`, loading it from the table or creating a new model."""
        state = self.states.get(model_id)
        if state is not None:
            return state

        stored = self.table.data.get(model_id.encode("utf-8"))
        if stored is not None:
            checkpoint = decode_checkpoint(stored)
            state = ModelState(model_id, partition, checkpoint.load_model(), dict(checkpoint.offsets))
            logger.info("Loaded model %s (version %d) from the table, offsets %s",
                        model_id, state.model.version, checkpoint.offsets)
        else:
            state = ModelState(model_id, partition, DynamicRLHFModel(self.config, model_id=model_id))
            logger.info("Created model %s for partition %d", model_id, partition)
        self.states[model_id] = state
        return state

    def resume_offsets(self, topic: str) -> dict[int, int]:
        """Return the resume offset of each partition of `topic` (see `resume_offsets`).

        Reads every checkpoint in the table plus the models held in memory, which may have
        applied events that no checkpoint contains yet. A value that is not a checkpoint
        envelope is logged and ignored.
        """
        offset_maps: list[Mapping[str, int]] = [state.offsets for state in self.states.values()]
        for key, value in list(self.table.data.items()):
            if not isinstance(value, bytes):
                continue
            try:
                offset_maps.append(decode_checkpoint(value).offsets)
            except CheckpointError as exc:
                logger.warning("Ignoring table value of key %r when computing resume offsets: %s", key, exc)
        return resume_offsets(offset_maps, topic)

    def defer_ack(self, events: Iterable[Acknowledgeable], sends: Iterable[Awaitable[Any]] = (), *,
                  count: int | None = None) -> None:
        """Hold events (and output sends they caused) until the next checkpoint is durable.

        `count` is the number of input events the items stand for, when an item acks several
        (default: one per item).
        """
        before = len(self._pending_events)
        self._pending_events.extend(events)
        self._pending_sends.extend(sends)
        self._events_since_checkpoint += len(self._pending_events) - before if count is None else count

    def checkpoint_due(self) -> bool:
        """Return True when the event count or the interval since the last checkpoint is reached."""
        if not self._pending_events:
            return False
        if self._events_since_checkpoint >= self.every_events:
            return True
        return time.monotonic() - self._last_checkpoint >= self.interval_s

    async def checkpoint(self) -> int:
        """Write every changed model to the changelog, wait for the broker, then ack held events.

        Returns the number of models written.
        """
        async with self._lock:
            events, self._pending_events = self._pending_events, []
            sends, self._pending_sends = self._pending_sends, []
            self._events_since_checkpoint = 0
            self._last_checkpoint = time.monotonic()

            # Snapshot synchronously: the agents may change the models while the sends are awaited.
            written = []
            for state in self.states.values():
                if not state.dirty:
                    continue
                value = encode_checkpoint(state.snapshot())
                key = state.model_id.encode("utf-8")
                self.table.data[key] = value
                sends.append(self.table.send_changelog(state.partition, key, value))
                state.dirty = False
                written.append((state.model_id, len(value)))

            try:
                for send in sends:
                    await send
            except BaseException:
                # Nothing is acked, so Kafka delivers these events again after a restart.
                for model_id, _ in written:
                    if model_id in self.states:
                        self.states[model_id].dirty = True
                self._pending_events[:0] = events
                self._events_since_checkpoint += len(events)
                raise

            for event in events:
                event.ack()
            for model_id, size in written:
                if self.on_checkpoint is not None:
                    self.on_checkpoint(model_id, size)
            return len(written)

    def drop_partitions(self, partitions: set[int]) -> list[str]:
        """Forget models of revoked partitions; a new owner recovers them from the changelog."""
        dropped = [model_id for model_id, state in self.states.items() if state.partition in partitions]
        for model_id in dropped:
            del self.states[model_id]
        return dropped
