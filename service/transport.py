"""The Kafka transport of the worker: Faust's aiokafka driver with a short fetch long-poll.

Faust 0.15.3 builds its aiokafka consumer with ``fetch_max_wait_ms=1500``. aiokafka 0.14
leaves a partition out of the next fetch request when its fetched records wait longer than
``prefetch_backoff`` (100 ms) to be consumed, and it sends no new request to a broker while
one is in flight. When the worker's event loop is busy for more than 100 ms (a large
micro-batch, then a checkpoint round), the next request long-polls only the idle partitions
for 1.5 s. New events of the busy partition wait at the broker meanwhile, and the larger
batch that follows keeps the loop busy again. On a paced stream of 200 events/s
(``benchmarks/stream.py``) this kept the end-to-end latency at p50 1.2 s. A short long-poll
bounds that wait.

The consumer also changes how input partitions come back after a rebalance. Faust 0.15.3
resumes them (``Recovery.on_recovery_completed``) before it seeks them to the committed
offsets, while its fetcher is running, and after the seek it calls
``app.flow_control.resume()``, which empties every stream buffer. Events fetched during the
seek were dropped that way without being processed, the refetched copies were then discarded
as already read, and Faust's commit skipped past them. `Consumer` keeps input partitions
paused until the flow is resumed, after the buffers were emptied, and then moves a partition
back to its checkpointed resume offset when the committed offset is past it. It also hands
aiokafka a copy of the active partitions, because aiokafka reads an empty set as all of them.

Finally, the consumer hands each fetch of an inbox topic (`service.inbox`) to its inbox in
one pass, where Faust's loop would start two tasks for each message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final, TypeVar, cast

import aiokafka
import faust
from faust.transport.consumer import CONSUMER_FETCHING, RecordMap, ensure_TPset
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message
from mode import ServiceT

from service.inbox import InboxConductor

logger = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS: Final = 100
"""Maximum time the broker waits for new records before it returns a fetch response, in milliseconds."""

EMPTY_FETCH_WAIT_S: Final = 0.05
"""Pause of the fetch loop while no partition is active, in seconds."""

DRAIN_YIELD_EVERY: Final = 1000
"""Inbox messages queued between two turns given to other tasks while a large fetch is handed on."""


class ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread with `FETCH_MAX_WAIT_MS` as the fetch long-poll."""

    def _create_worker_consumer(self, transport: aiokafka_driver.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)

        # NOTE: Faust 0.15.3 passes no setting through to fetch_max_wait_ms, so this sets the
        # attribute that aiokafka 0.14 hands to its Fetcher in AIOKafkaConsumer.start().
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


K = TypeVar("K")


def rewind_targets(positions: Mapping[K, int | None], resume: Mapping[K, int]) -> dict[K, int]:
    """Return the partitions whose position is past their resume offset, mapped to that offset.

    Only backward moves are returned: a position at or before the resume offset is kept,
    because the learn agent skips events that a checkpoint already contains. A partition
    without a known position (None) or without a resume offset is left out.
    """
    targets = {}
    for partition, position in positions.items():
        offset = resume.get(partition)
        if position is not None and offset is not None and position > offset:
            targets[partition] = offset
    return targets


ResumeOffsets = Callable[[set[TP]], Mapping[TP, int]]
"""Callback returning, for some of the given input partitions, the offset to consume from at the latest."""


class Consumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer running `ConsumerThread`, with race-free input resumption.

    During a rebalance, input (non-changelog) partitions that Faust resumes are held paused
    until `resume_flow`, which Faust calls after the stream buffers were emptied. `perform_seek`
    seeks to the committed offsets as Faust does, drops the read gaps of input partitions, and
    moves a partition back to the offset that the transport's `resume_offsets` callback returns
    when the committed offset is past it. It never moves a partition forward. `_getmany` keeps
    held partitions out of every fetch.
    """

    _held_partitions: set[TP]

    def _reset_state(self) -> None:
        super()._reset_state()
        self._held_partitions = set()

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        """Resume `tps`, but hold input partitions until `resume_flow` while the group rebalances."""
        tpset = ensure_TPset(tps)
        if self.app.rebalancing:
            held = {tp for tp in tpset if not self._is_changelog_tp(tp)}
            self._held_partitions |= held
            tpset -= held
        super().resume_partitions(tpset)

    def resume_flow(self) -> None:
        """Resume the flow and the held input partitions that are still assigned."""
        super().resume_flow()

        # A partition revoked in the meantime stays out: a later recovery resumes it again.
        held, self._held_partitions = self._held_partitions, set()
        assigned = held & self.assignment()
        if assigned:
            super().resume_partitions(assigned)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> RecordMap:
        """Fetch records of a copy of `active_partitions`, or nothing when that set is empty.

        aiokafka 0.14 checks the set it receives each time fetched records arrive, and treats
        an empty set as every assigned partition. Faust 0.15.3 passes its live set of active
        partitions, which recovery empties while input partitions are held. aiokafka then
        returned their records, Faust dropped them as inactive, and the partition position had
        already moved past them.
        """
        if active_partitions is None:
            return await super()._getmany(None, timeout)

        partitions = set(active_partitions)
        if not partitions:
            await asyncio.sleep(EMPTY_FETCH_WAIT_S)
            return {}
        return await super()._getmany(partitions, timeout)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Hand fetched messages on: inbox topics a whole fetch at a time, other topics one by one.

        Faust 0.15.3 passes every message to the conductor inside
        ``wait_first(callback, suspend_flow.wait())``, which starts two tasks per message and
        returns to the event loop after each one, so a reader of the buffer gets one message
        at a time. Messages of an `Inbox` topic are queued with `Inbox.deliver`, which never
        waits, so a fetch is buffered in runs of up to `DRAIN_YIELD_EVERY` messages before the
        learn task runs. Messages of other
        topics take Faust's path. Read offsets, gaps and commits are kept as Faust keeps them.
        """
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set  # type: ignore[attr-defined]
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = await self._fetch(timeout=1.0)
                # A fetch can return at once many times in a row, so other tasks get a turn here.
                await asyncio.sleep(0)
                if not self.should_stop:
                    await self._hand_on(fetched)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
            logger.info("Broker stopped the consumer, so the worker shuts down")
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
            logger.info("Fetch loop cancelled while the worker stops")
        except Exception:
            logger.exception("Draining fetched messages failed")
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _fetch(self, timeout: float) -> list[tuple[TP, Message]]:
        """Fetch once and return the messages Faust's ``getmany`` would yield, in its order.

        It applies the checks of Faust 0.15.3's ``getmany`` (flow active, same consumer
        generation, partition active), and it seeks to the committed offsets when the flow
        is stopped, as ``getmany`` does. It returns a list where ``getmany`` is an async
        generator, which cost several microseconds per message, and it reports a
        partition's end offset to the monitor once per fetch instead of once per message.
        """
        records, active = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return []
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:
                logger.warning("Seeking to the committed offsets while the flow is stopped failed: %r", exc)
            return []

        generation = self.app.consumer_generation_id
        track_end_offset = self.app.monitor.track_tp_end_offset
        to_message = self._to_message
        reported: set[TP] = set()
        messages = []
        for tp, record in self.scheduler.iterate(records):
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            if tp not in reported:
                reported.add(tp)
                track_end_offset(tp, self.highwater(tp))
            messages.append((tp, to_message(tp, record)))
        if self.app.consumer_generation_id != generation:
            return []
        return messages

    async def _hand_on(self, fetched: list[tuple[TP, Message]]) -> None:
        """Queue inbox messages and pass the others to Faust's conductor, in fetch order."""
        inboxes = cast(InboxConductor, self.app.topics).inboxes
        flow_control = self.app.flow_control
        read_offsets = self._read_offset
        since_yield = 0
        for tp, message in fetched:
            # A rebalance that began meanwhile leaves the rest to the seek that follows it.
            if not self.flow_active or message.generation_id != self.app.consumer_generation_id:
                return
            offset = message.offset
            read = read_offsets[tp]
            if read is not None and offset < read:
                continue  # handed on already
            if read and offset - read > 1 and self.app.topics.acks_enabled_for(message.topic):
                # Offsets skipped by the fetch (compaction, transaction markers) count as processed.
                await self._add_gap(tp, read + 1, offset)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()

            inbox = inboxes.get(tp.topic)
            if inbox is None:
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
            elif flow_control.is_active():
                inbox.deliver(message)
                since_yield += 1
                if since_yield >= DRAIN_YIELD_EVERY:
                    since_yield = 0
                    await asyncio.sleep(0)
            else:
                return
            read_offsets[tp] = offset

    async def wait_empty(self) -> None:
        """Flush held acknowledgements through the transport's `flush_pending`, then wait as Faust does.

        Faust waits here, at a revocation and when the worker stops, until every message
        handed to an agent is acknowledged. The learn agent acknowledges events only with the
        checkpoint that contains them, and at shutdown Faust has already stopped the timer
        that writes checkpoints, so without this flush the wait lasted until the worker was killed.
        """
        flush = cast(Transport, self.transport).flush_pending
        if flush is not None and self._unacked_messages:
            await flush()
        await super().wait_empty()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._held_partitions -= revoked
        await super().on_partitions_revoked(revoked)

    async def perform_seek(self) -> None:
        """Seek to the committed offsets, then move input partitions back to their resume offsets."""
        await super().perform_seek()

        # NOTE: `_gap` and `_read_offset` are private to Faust 0.15.3's Consumer. `_gap` contains
        # offsets that an earlier read skipped and that the commit counts as processed. After
        # the seek those offsets are read again, so the entries are stale.
        inputs = {tp for tp in self.assignment() if not self._is_changelog_tp(tp)}
        for tp in inputs:
            self._gap.pop(tp, None)

        source = cast(Transport, self.transport).resume_offsets
        if source is None or not inputs:
            return
        positions = {tp: self._read_offset.get(tp) for tp in inputs}
        targets = rewind_targets(positions, source(inputs))
        if targets:
            logger.warning("Committed offsets are past the last checkpointed events; seeking back: %s",
                           {str(tp): (self._read_offset.get(tp), offset) for tp, offset in targets.items()})
            await self.seek_wait(targets)


class Transport(aiokafka_driver.Transport):
    """Faust's aiokafka transport creating `Consumer` and `InboxConductor`."""

    Consumer = Consumer
    Conductor = InboxConductor

    resume_offsets: ResumeOffsets | None = None
    """Set with `set_resume_offsets`; None keeps Faust's committed offsets."""

    flush_pending: Callable[[], Awaitable[None]] | None = None
    """Set with `set_flush_pending`; called before the consumer waits for pending acknowledgements."""


def install_transport(app: faust.App) -> None:
    """Make `app` consume through `Transport`.

    Call it before anything creates the app's transport: declaring a topic does.
    """
    if app._transport is not None:
        raise RuntimeError("install_transport() must run before the app creates its transport")
    app.transport = Transport(app.conf.broker_consumer, app)


def set_resume_offsets(app: faust.App, resume_offsets: ResumeOffsets) -> None:
    """Make the consumer of `app` seek input partitions back to `resume_offsets` after each recovery."""
    transport = app.transport
    if not isinstance(transport, Transport):
        raise RuntimeError("set_resume_offsets() needs the transport of install_transport(); call that first")
    transport.resume_offsets = resume_offsets


def set_flush_pending(app: faust.App, flush: Callable[[], Awaitable[None]]) -> None:
    """Make the consumer of `app` await `flush` before it waits for pending acknowledgements."""
    transport = app.transport
    if not isinstance(transport, Transport):
        raise RuntimeError("set_flush_pending() needs the transport of install_transport(); call that first")
    transport.flush_pending = flush
