"""Shared fixtures: a real Kafka broker for tests marked ``kafka`` and helpers to manage topics.

``kafka_bootstrap`` picks the broker in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` when set (``scripts/test.sh`` starts one broker and exports it,
   so every test process shares it);
2. a Kafka container from testcontainers when a Docker engine responds to a ping;
3. a broker started with ``deploy/local-kafka/kafka-local`` in a private state directory under
   pytest's temporary folder, so it never touches a developer's own broker. The jars come
   from the shared cache (``$DRLHF_KAFKA_HOME``). The fixture stops this broker at session end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_LOCAL = REPO_ROOT / "deploy" / "local-kafka" / "kafka-local"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
TEST_IMAGE_ENV = "DRLHF_KAFKA_TEST_IMAGE"
DEFAULT_TEST_IMAGE = "confluentinc/cp-kafka:7.9.0"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
ADMIN_TIMEOUT_S = 60.0
TOPIC_READY_TIMEOUT_S = 30.0

T = TypeVar("T")


def run_async(factory: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = ADMIN_TIMEOUT_S) -> T:
    """Run the coroutine that ``factory`` creates on a fresh event loop in a worker thread.

    The worker thread makes the helper usable from plain tests and from code that already
    runs inside an event loop, where ``asyncio.run`` would raise.
    """
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, factory()).result(timeout=timeout_s)


def _docker_engine_reachable() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure (no package, no socket, no daemon) means "no Docker"
        return False


def _start_container() -> tuple[str, Callable[[], None]]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        from testcontainers.kafka import KafkaContainer  # type: ignore[no-redef]

    # NOTE: this path runs only where a Docker engine is reachable, and it has not run on the
    # development machine, which has none. The settings mirror the launcher's server.properties.
    container = KafkaContainer(os.environ.get(TEST_IMAGE_ENV, DEFAULT_TEST_IMAGE)).with_kraft()
    for name, value in {
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_MESSAGE_MAX_BYTES": str(MAX_MESSAGE_BYTES),
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_MIN_INSYNC_REPLICAS": "1",
    }.items():
        container.with_env(name, value)
    container.start()
    return container.get_bootstrap_server(), container.stop


def _start_local_broker(state_dir: Path) -> tuple[str, Callable[[], None]]:
    command = [sys.executable, str(KAFKA_LOCAL), "--state-dir", str(state_dir)]
    started = subprocess.run([*command, "start"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(
            f"kafka-local start failed with status {started.returncode}:\n{started.stderr}",
            pytrace=False,
        )

    def stop() -> None:
        subprocess.run([*command, "stop"], capture_output=True, text=True, check=True)

    return started.stdout.strip(), stop


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address (``host:port``) of a Kafka broker that lives for the whole session."""
    configured = os.environ.get(BOOTSTRAP_ENV)
    if configured:
        yield configured
        return

    if _docker_engine_reachable():
        bootstrap, stop = _start_container()
    else:
        bootstrap, stop = _start_local_broker(tmp_path_factory.mktemp("kafka-local"))
    try:
        yield bootstrap
    finally:
        stop()


class PrivateBroker:
    """A broker that one test owns and may stop before the test ends."""

    def __init__(self, bootstrap: str, stop: Callable[[], None]) -> None:
        self.bootstrap = bootstrap
        self._stop: Callable[[], None] | None = stop

    def stop(self) -> None:
        """Stop the broker; later calls do nothing."""
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A broker of the test's own, started like the session broker but never shared.

    When ``KAFKA_BOOTSTRAP_SERVERS`` names a broker of the user's, this machine may lack
    what the launcher needs, so a failed start skips the test instead of failing it.
    """
    if _docker_engine_reachable():
        broker = PrivateBroker(*_start_container())
    else:
        command = [sys.executable, str(KAFKA_LOCAL), "--state-dir", str(tmp_path / "private-kafka")]
        started = subprocess.run([*command, "start"], capture_output=True, text=True)
        if started.returncode != 0:
            message = f"kafka-local start failed with status {started.returncode}:\n{started.stderr}"
            if os.environ.get(BOOTSTRAP_ENV):
                pytest.skip(message)
            pytest.fail(message, pytrace=False)
        broker = PrivateBroker(started.stdout.strip(),
                               lambda: subprocess.run([*command, "stop"], capture_output=True, text=True, check=True))
    try:
        yield broker
    finally:
        broker.stop()


class KafkaAdmin:
    """Blocking wrappers around ``AIOKafkaAdminClient`` for test setup and teardown."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def _with_client(self, action: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        from aiokafka.admin import AIOKafkaAdminClient

        client = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30_000)
        await client.start()
        try:
            return await action(client)
        finally:
            await client.close()

    def create_topic(self, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
        """Create ``name`` and wait until every partition has a leader."""
        from aiokafka.admin import NewTopic

        async def create(client: Any) -> None:
            topic = NewTopic(name, partitions, 1, topic_configs=dict(config or {}))
            response = await client.create_topics([topic])
            for _topic, error_code, *rest in response.topic_errors:
                if error_code != 0:
                    raise RuntimeError(f"creating topic {name!r} failed: error {error_code} {rest}")
            await _wait_for_leaders(client, name, partitions)

        run_async(lambda: self._with_client(create))

    def delete_topics(self, names: list[str]) -> None:
        """Delete ``names``; topics that no longer exist are ignored."""
        if not names:
            return

        async def delete(client: Any) -> None:
            existing = set(await client.list_topics())
            present = [name for name in names if name in existing]
            if present:
                await client.delete_topics(present)

        run_async(lambda: self._with_client(delete))

    def list_topics(self) -> list[str]:
        """Names of all topics, internal ones included."""
        return run_async(lambda: self._with_client(lambda client: client.list_topics()))

    def committed_offsets(self, group_id: str) -> dict[tuple[str, int], int]:
        """Committed offset per ``(topic, partition)`` of consumer group ``group_id``."""

        async def fetch(client: Any) -> dict[tuple[str, int], int]:
            offsets = await client.list_consumer_group_offsets(group_id)
            return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}

        return run_async(lambda: self._with_client(fetch))


async def _wait_for_leaders(client: Any, name: str, partitions: int) -> None:
    # CreateTopics returns before the partition leaders are known everywhere; producing in
    # that window fails with NotLeaderForPartition, so wait for the metadata to settle.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TOPIC_READY_TIMEOUT_S
    while loop.time() < deadline:
        described = await client.describe_topics([name])
        topic = described[0] if described else {}
        leaders = [p["leader"] for p in topic.get("partitions", [])]
        if topic.get("error_code") == 0 and len(leaders) == partitions and min(leaders) >= 0:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"topic {name!r} has no leader for all {partitions} partitions after "
                       f"{TOPIC_READY_TIMEOUT_S:.0f} s")


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> KafkaAdmin:
    """Blocking admin helper bound to the session broker."""
    return KafkaAdmin(kafka_bootstrap)


TopicFactory = Callable[..., str]


@pytest.fixture
def kafka_topic_factory(kafka_admin: KafkaAdmin) -> Iterator[TopicFactory]:
    """Factory ``make(partitions=1, *, prefix="test", config=None) -> topic name``.

    Each call creates a topic with a unique name; all of them are deleted after the test.
    """
    created: list[str] = []

    def make(partitions: int = 1, *, prefix: str = "test", config: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        kafka_admin.create_topic(name, partitions, config)
        created.append(name)
        return name

    yield make
    kafka_admin.delete_topics(created)
