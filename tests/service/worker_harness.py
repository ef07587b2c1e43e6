"""Helpers for tests that run ``dynamic-rlhf worker`` as a subprocess against a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from dynamic_rlhf import DynamicRLHFModel
from service.checkpoint import Checkpoint, decode_checkpoint, offset_key
from service.codecs import decode_payload
from service.demo_cmd import scrape
from service.errors import InvalidInput
from service.events import parse_preference_event
from service.model_cmd import read_latest_checkpoints, topic_partitions
from service.settings import Settings
from service.topics import ensure_topics

REPO_ROOT = Path(__file__).resolve().parents[2]
JSON_HEADERS = [("content-type", b"application/json")]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_env(bootstrap: str, **overrides: str) -> dict[str, str]:
    """Return worker environment variables with unique topics and app id."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DRLHF_APP_ID": f"{prefix}-app",
        "DRLHF_TOPIC_PREFERENCES": f"{prefix}.preferences",
        "DRLHF_TOPIC_CANDIDATES": f"{prefix}.candidates",
        "DRLHF_TOPIC_RECORDS": f"{prefix}.records",
        "DRLHF_TOPIC_DEAD_LETTERS": f"{prefix}.dead-letters",
        "DRLHF_PARTITIONS": "2",
        "DRLHF_WEB_PORT": str(free_port()),
        "DRLHF_LAG_INTERVAL_MS": "1000",
        # A killed worker's partitions move on after this; the broker's minimum is 6 s by default.
        "DRLHF_SESSION_TIMEOUT_MS": "6000",
        # Faust's local files (an empty tables folder) stay out of the checkout.
        "DRLHF_DATA_DIR": str(Path(tempfile.gettempdir()) / "drlhf-test-data" / f"{prefix}-app"),
    }
    env.update(overrides)
    return env


def settings_for(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


class Worker:
    """One ``dynamic-rlhf worker`` subprocess with its log file."""

    def __init__(self, env: dict[str, str], log_path: Path, command: list[str] | None = None) -> None:
        self.env = env
        self.log_path = log_path
        self.command = command or [sys.executable, "-m", "service", "worker"]
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{env['DRLHF_WEB_PORT']}"

    def start(self) -> Worker:
        full_env = {**os.environ, **self.env}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.http_status("/health/ready") == 200:
                return
            time.sleep(0.5)
        raise AssertionError(f"worker not ready within {timeout_s} s:\n{self.log_tail()}")

    def http_status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            return None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return scrape(self.base_url + "/metrics")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)

    def stop(self) -> None:
        """Stop gracefully with SIGTERM, then SIGKILL after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 60.0) -> tuple[int, float]:
        """Send SIGTERM and wait for the process to exit; return its exit code and the seconds it took."""
        assert self.process is not None, "start() the worker first"
        stopping_at = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        exit_code = self.process.wait(timeout=timeout_s)
        return exit_code, time.monotonic() - stopping_at

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[str | None, bytes]],
            headers: list[tuple[str, bytes]] | None = None) -> list[tuple[int, int]]:
    """Produce (key, value) pairs in order; return their (partition, offset)."""

    async def run() -> list[tuple[int, int]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10)
        await producer.start()
        try:
            futures = []
            for key, value in messages:
                key_bytes = key.encode("utf-8") if key is not None else None
                futures.append(await producer.send(topic, value, key=key_bytes, headers=headers))
            results = [await future for future in futures]
            return [(result.partition, result.offset) for result in results]
        finally:
            await producer.stop()

    return asyncio.run(run())


def produce_json(bootstrap: str, topic: str, key: str, values: Iterable[dict[str, Any]]) -> list[tuple[int, int]]:
    return produce(bootstrap, topic, ((key, json.dumps(v).encode("utf-8")) for v in values), JSON_HEADERS)


def consume_all(bootstrap: str, topic: str, timeout_s: float = 30.0, expected: int | None = None) -> list[Any]:
    """Read `topic` from the beginning to its end offsets (or until `expected` messages), sorted by partition."""

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_partition_fetch_bytes=33_554_432)
        await consumer.start()
        try:
            partitions = await topic_partitions(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}), topic)
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            messages: list[Any] = []
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                ends = await consumer.end_offsets(tps)
                positions = [await consumer.position(tp) for tp in tps]
                if expected is None and all(position >= ends[tp] for position, tp in zip(positions, tps)):
                    break
                if expected is not None and len(messages) >= expected:
                    break
                batches = await consumer.getmany(timeout_ms=200)
                for batch in batches.values():
                    messages.extend(batch)
            return sorted(messages, key=lambda m: (m.partition, m.offset))
        finally:
            await consumer.stop()

    return asyncio.run(run())


def create_topics(settings: Settings) -> None:
    """Create the service topics before any worker runs, as a deployment would."""
    asyncio.run(ensure_topics(settings))


def latest_checkpoints(settings: Settings) -> dict[str, Checkpoint]:
    values = asyncio.run(read_latest_checkpoints(settings, timeout_s=30))
    return {model_id: decode_checkpoint(value) for model_id, value in values.items()}


def wait_checkpointed(settings: Settings, targets: dict[str, tuple[int, int]], timeout_s: float = 120.0,
                      worker: Worker | None = None) -> dict[str, Checkpoint]:
    """Wait until each model's checkpoint covers its target (partition, offset) of the preferences topic."""
    deadline = time.monotonic() + timeout_s
    checkpoints: dict[str, Checkpoint] = {}
    while time.monotonic() < deadline:
        checkpoints = latest_checkpoints(settings)
        done = True
        for model_id, (partition, offset) in targets.items():
            checkpoint = checkpoints.get(model_id)
            applied = -1 if checkpoint is None else checkpoint.offsets.get(
                offset_key(settings.topic_preferences, partition), -1)
            done = done and applied >= offset
        if done:
            return checkpoints
        time.sleep(1.0)
    tail = worker.log_tail() if worker is not None else ""
    raise AssertionError(f"checkpoints did not reach {targets} within {timeout_s} s; got "
                         f"{ {k: v.offsets for k, v in checkpoints.items()} }\n{tail}")


def offline_replay(settings: Settings) -> dict[str, DynamicRLHFModel]:
    """Replay the preferences topic through the library in partition order, as the worker applies it."""
    models: dict[str, DynamicRLHFModel] = {}
    for message in consume_all(settings.bootstrap_servers, settings.topic_preferences):
        try:
            obj, _ = decode_payload(message.value, message.headers, settings.limits)
            examples = parse_preference_event(obj, settings.limits)
        except InvalidInput:
            continue
        for example in examples:
            model = models.get(example.model_id)
            if model is None:
                model = models[example.model_id] = DynamicRLHFModel(settings.model, model_id=example.model_id)
            model.learn_one(example)
    return models


def wait_processed(worker: Worker, model_id: str | None, at_least: int, timeout_s: float = 90.0) -> float:
    """Wait until the worker counts `at_least` events (of `model_id`, or of every model when None); return the count."""
    labels = {} if model_id is None else {"model_id": model_id}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            processed = sample(worker.metrics(), "dynamic_rlhf_events_total", **labels)
        except OSError:
            processed = 0.0
        if processed >= at_least:
            return processed
        time.sleep(0.05)
    raise AssertionError(f"worker processed fewer than {at_least} events in {timeout_s} s:\n{worker.log_tail()}")


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum the samples of `name` whose labels include `labels`."""
    return sum(value for (sample_name, sample_labels), value in samples.items()
               if sample_name == name and all((k, v) in sample_labels for k, v in labels.items()))
