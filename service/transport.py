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
"""

from __future__ import annotations

from typing import Final

import aiokafka
import faust
from faust.transport.drivers import aiokafka as aiokafka_driver

FETCH_MAX_WAIT_MS: Final = 100
"""Maximum time the broker waits for new records before it returns a fetch response, in milliseconds."""


class ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread with `FETCH_MAX_WAIT_MS` as the fetch long-poll."""

    def _create_worker_consumer(self, transport: aiokafka_driver.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)

        # NOTE: Faust 0.15.3 passes no setting through to fetch_max_wait_ms, so this sets the
        # attribute that aiokafka 0.14 hands to its Fetcher in AIOKafkaConsumer.start().
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Consumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer running `ConsumerThread`."""

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(aiokafka_driver.Transport):
    """Faust's aiokafka transport creating `Consumer`."""

    Consumer = Consumer


def install_transport(app: faust.App) -> None:
    """Make `app` consume through `Transport`.

    Call it before anything creates the app's transport: declaring a topic does.
    """
    if app._transport is not None:
        raise RuntimeError("install_transport() must run before the app creates its transport")
    app.transport = Transport(app.conf.broker_consumer, app)
