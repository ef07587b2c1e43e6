"""Batch delivery of one input topic, past Faust's per-event streams.

An agent's stream costs tens of microseconds per event: the conductor builds an `Event`
and queues it, and the stream iterates it with sensors, context variables and per-event
acks. The learn agent needs none of that, since it decodes raw bytes, learns a whole
batch at once, and acks events only when a checkpoint contains them. `Inbox` takes the
topic's messages straight from the consumer's fetch loop into one queue, and `batches`
hands them out as lists.

Faust's consumer stays in charge of everything else: group membership, partition
assignment (co-partitioned with the model table), pause and resume, seeks, commits, and
flow control during a rebalance. The queue is a Faust flow-control queue, emptied when
the flow resumes after a rebalance, as stream buffers are. A message is tracked as
pending (for Faust's commit and its wait for pending acks on revocation) when `batches`
hands it out. A message fetched before the latest rebalance, or taken while the flow is
suspended, is dropped untracked, and the seek after the rebalance fetches it again.

Faust's sensors are not called per message: they cost about 7% of the worker's time on
the stream benchmark. Faust's own message counters (``faust_messages_received*`` and
``faust_active_messages`` on ``/metrics``) therefore leave out the inbox's topic, whose
events ``dynamic_rlhf_events_total`` counts by outcome.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, MutableSet
from typing import Any

import faust
from faust.transport.conductor import Conductor
from faust.types import TP, Message
from faust.types.transports import ConsumerCallback

logger = logging.getLogger(__name__)


class Inbox:
    """The buffered messages of one topic, handed out in batches.

    `install_inbox` registers it with `InboxConductor` before the app starts. The consumer
    then subscribes to the topic and delivers its messages here instead of to an agent's stream.
    """

    def __init__(self, app: faust.App, topic: faust.types.TopicT, maxsize: int) -> None:
        self.app = app
        self.topic = topic
        self.names = frozenset(topic.topics)
        self.maxsize = maxsize
        self._queue: Any = None
        self._pressure_callbacks: dict[TP, tuple[Callable[[], None], Callable[[], None]]] = {}

    @property
    def queue(self) -> Any:
        """The flow-control queue, created on first use inside the running event loop."""
        if self._queue is None:
            self._queue = self.app.FlowControlQueue(maxsize=self.maxsize, clear_on_resume=True)
        return self._queue

    def deliver(self, message: Message) -> None:
        """Queue one fetched message without waiting.

        The queue may grow past its size by one fetch: when it reaches Faust's high-pressure
        mark, the consumer stops fetching the message's partition until the queue drains, as
        it does for a full stream buffer.
        """
        tp = message.tp
        callbacks = self._pressure_callbacks.get(tp)
        if callbacks is None:
            # A fetch can key records by aiokafka's TopicPartition, and Faust's consumer expects its own TP.
            callbacks = self._pressure_callbacks[tp] = self._make_pressure_callbacks(TP(tp.topic, tp.partition))
        self.queue.put_nowait_enhanced(message, on_pressure_high=callbacks[0], on_pressure_drop=callbacks[1])

    def _make_pressure_callbacks(self, tp: TP) -> tuple[Callable[[], None], Callable[[], None]]:
        app = self.app

        def on_pressure_high() -> None:
            app.sensors.on_topic_buffer_full(tp)
            app.consumer.on_buffer_full(tp)

        def on_pressure_drop() -> None:
            app.consumer.on_buffer_drop(tp)

        return on_pressure_high, on_pressure_drop

    def handler(self) -> ConsumerCallback:
        """Return a consumer callback that waits for the flow, then queues the message.

        `service.transport.Consumer` calls `deliver` directly for a whole fetch; this
        callback serves a consumer that delivers messages one by one.
        """
        acquire_flow_control = self.app.flow_control.acquire

        async def on_message(message: Message) -> None:
            await acquire_flow_control()
            self.deliver(message)

        return on_message

    async def batches(self, max_messages: int) -> AsyncIterator[list[Message]]:
        """Yield lists of up to `max_messages` current messages, each as soon as one is buffered.

        A list contains every message buffered at that moment, up to `max_messages`, and it
        never waits for more. Each message handed out is tracked as pending until `ack`.
        """
        queue = self.queue
        while True:
            batch = [await queue.get()]
            while len(batch) < max_messages and not queue.empty():
                batch.append(queue.get_nowait())
            current = self._track_current(batch)
            if current:
                yield current

    def _track_current(self, messages: list[Message]) -> list[Message]:
        """Track and return the messages of the current generation; drop the others untracked."""
        app = self.app
        if not app.flow_control.is_active():
            logger.debug("Dropping %d messages taken while the flow is suspended", len(messages))
            return []

        generation = app.consumer_generation_id
        unacked = app.consumer._unacked_messages
        current = []
        for message in messages:
            if message.generation_id != generation:
                continue
            if not message.tracked:
                message.tracked = True
                unacked.add(message)
            current.append(message)
        if len(current) < len(messages):
            logger.debug("Dropped %d messages fetched before the latest rebalance", len(messages) - len(current))
        return current

    def ack(self, messages: Iterable[Message]) -> None:
        """Acknowledge processed messages, so Faust may commit past them."""
        consumer = self.app.consumer
        for message in messages:
            message.ack(consumer)


class InboxConductor(Conductor):
    """Faust's topic conductor, delivering the messages of registered inboxes to them."""

    inboxes: dict[str, Inbox]

    def __init__(self, app: faust.App, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.inboxes = {}

    def register(self, inbox: Inbox) -> None:
        """Subscribe the consumer to the inbox's topic and route its messages to the inbox."""
        for name in inbox.names:
            self.inboxes[name] = inbox
        self.add(inbox.topic)

    def _build_handler(self, tp: TP, channels: MutableSet[Any]) -> ConsumerCallback:
        inbox = self.inboxes.get(tp.topic)
        if inbox is not None:
            return inbox.handler()
        return super()._build_handler(tp, channels)


def install_inbox(app: faust.App, topic: faust.types.TopicT, maxsize: int | None = None) -> Inbox:
    """Create an `Inbox` for `topic` and register it with the app's `InboxConductor`.

    Call it before the app starts, so the first subscription includes the topic. The
    buffer takes `maxsize` messages (default: Faust's ``stream_buffer_maxsize``).
    """
    conductor = app.topics
    if not isinstance(conductor, InboxConductor):
        raise RuntimeError("install_inbox() needs the transport of service.transport.install_transport(); call that first")
    inbox = Inbox(app, topic, maxsize or app.conf.stream_buffer_maxsize)
    conductor.register(inbox)
    return inbox


class AckBatch:
    """Messages of one batch, acknowledged together through their inbox by `ack`."""

    __slots__ = ("inbox", "messages")

    def __init__(self, inbox: Inbox, messages: list[Message]) -> None:
        self.inbox = inbox
        self.messages = messages

    def ack(self) -> bool:
        self.inbox.ack(self.messages)
        return True
