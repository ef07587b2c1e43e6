"""Tests of the worker's Kafka transport: the fetch long-poll of its aiokafka consumer."""

from __future__ import annotations

import asyncio
from typing import cast

import faust
import pytest
from faust.transport.drivers import aiokafka as aiokafka_driver

from service.app import create_app
from service.settings import Settings
from service.transport import FETCH_MAX_WAIT_MS, ConsumerThread, Transport, install_transport


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
