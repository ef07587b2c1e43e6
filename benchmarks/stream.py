"""Stream benchmark: the Faust worker against a plain aiokafka consumer loop, through one broker.

Both consumers apply the same work to every preference event: `decode_payload` and
`parse_preference_event` per event, then `DynamicRLHFModel.learn_many` on each model's
consecutive events of a fetched batch (one model per model id; the same model as
`learn_one` per event). The plain loop is the practical limit of the Kafka client, and
the worker adds Faust, the checkpoints, the metrics and the health tracking on top of it.

Each repetition uses a fresh topic, pre-filled with the same seeded synthetic events:

1. throughput of the plain loop (``getmany`` batches), from its first record to its last;
2. throughput of a ``dynamic-rlhf worker`` subprocess with a fresh app id on the same topic,
   from the first scrape of ``/metrics`` that shows a processed event to the scrape that
   shows all of them (``dynamic_rlhf_events_total``, every outcome);
3. latency of the worker: a second process produces events of model id ``latency`` at a
   fixed rate, and a scrape every `LATENCY_SCRAPE_INTERVAL_S` reads that model's event count. The
   k-th latency event counts as processed at the first scrape that shows k events, so its
   latency is that scrape time minus the record's CreateTime. This is an upper bound, too
   high by at most one scrape interval plus the rest of the micro-batch that held the event;
4. latency of the plain loop on the same paced stream, measured after each fetched batch is learned.

Run it against a broker on loopback, for example one from ``deploy/local-kafka/kafka-local``::

    .venv/bin/python benchmarks/stream.py --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from benchmarks import _stream_report  # noqa: E402
from benchmarks._stream_worker import WorkerProcess  # noqa: E402
from dynamic_rlhf import DynamicRLHFModel  # noqa: E402
from dynamic_rlhf.warmup import warm_up  # noqa: E402
from service.codecs import decode_payload, encode_json  # noqa: E402
from service.demo_stream import synthetic_preference_events  # noqa: E402
from service.events import parse_preference_event  # noqa: E402
from service.limits import Limits  # noqa: E402

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
JSON_HEADERS: Final = [("content-type", b"application/json")]
LATENCY_MODEL_ID: Final = "latency"
LATENCY_SCRAPE_INTERVAL_S: Final = 0.05
THROUGHPUT_SCRAPE_INTERVAL_S: Final = 0.1
LIMITS: Final = Limits()


def encoded_events(n_events: int, n_models: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Return (key, value) pairs of `n_events` synthetic events spread round-robin over `n_models` model ids."""
    streams = [
        synthetic_preference_events(n_events // n_models + 1, seed=seed + i, model_id=f"bench-{i}")
        for i in range(n_models)
    ]
    pairs = []
    for index in range(n_events):
        event = next(streams[index % n_models])
        pairs.append((event["model_id"].encode("utf-8"), encode_json(event)))
    return pairs


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete every topic whose name starts with `prefix` (inputs, outputs and changelogs of one run)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def produce_all(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]]) -> float:
    """Produce `pairs` as fast as the producer allows; return the elapsed seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [await producer.send(topic, value, key=key, headers=JSON_HEADERS) for key, value in pairs]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def produce_paced(bootstrap: str, topic: str, rate: float, duration_s: float, seed: int, out_path: str) -> None:
    """Produce model ``latency`` events at `rate` per second for `duration_s`; write their CreateTimes to `out_path`.

    Runs in its own process, so the producer takes no CPU time from the measured consumer.
    """
    n_events = int(rate * duration_s)
    events = list(synthetic_preference_events(n_events, seed=seed, model_id=LATENCY_MODEL_ID))

    async def run() -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        await producer.start()
        try:
            futures = []
            started = time.perf_counter()
            for index, event in enumerate(events):
                # Send on schedule; a late sender catches up without sleeping.
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                futures.append(await producer.send(topic, encode_json(event), key=LATENCY_MODEL_ID.encode(),
                                                   headers=JSON_HEADERS))
            results = await asyncio.gather(*futures)
            return [int(result.timestamp) for result in results]
        finally:
            await producer.stop()

    timestamps = asyncio.run(run())
    Path(out_path).write_text(json.dumps(timestamps), encoding="utf-8")


class PacedProducer:
    """`produce_paced` in a spawned process; `timestamps_ms` returns the CreateTime of each event in send order."""

    def __init__(self, bootstrap: str, topic: str, rate: float, duration_s: float, seed: int) -> None:
        self._out = tempfile.NamedTemporaryFile(prefix="drlhf-paced-", suffix=".json", delete=False)
        self._out.close()
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(target=produce_paced,
                                       args=(bootstrap, topic, rate, duration_s, seed, self._out.name))
        self.n_events = int(rate * duration_s)

    def start(self) -> PacedProducer:
        self.process.start()
        return self

    def timestamps_ms(self, timeout_s: float) -> list[int]:
        self.process.join(timeout_s)
        if self.process.exitcode != 0:
            raise RuntimeError(f"paced producer failed with exit code {self.process.exitcode}")
        timestamps: list[int] = json.loads(Path(self._out.name).read_text(encoding="utf-8"))
        os.unlink(self._out.name)
        return timestamps


def apply_batch(models: dict[str, DynamicRLHFModel], records: list[Any]) -> None:
    """Apply the worker's work to one fetched batch: decode and validate each event, then
    learn every model's examples in order with one `learn_many` call, as the learn agent does."""
    by_model: dict[str, list[Any]] = {}
    for record in records:
        obj, _ = decode_payload(record.value, record.headers, LIMITS)
        for example in parse_preference_event(obj, LIMITS):
            by_model.setdefault(example.model_id, []).append(example)
    for model_id, examples in by_model.items():
        model = models.get(model_id)
        if model is None:
            model = models[model_id] = DynamicRLHFModel(model_id=model_id)
        model.learn_many(examples)


async def _assigned_consumer(bootstrap: str, topic: str, partitions: int, from_end: bool) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    assigned = [TopicPartition(topic, partition) for partition in range(partitions)]
    consumer.assign(assigned)
    if from_end:
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)
    else:
        await consumer.seek_to_beginning(*assigned)
    return consumer


async def baseline_throughput(bootstrap: str, topic: str, partitions: int, n_events: int, timeout_s: float) -> dict[str, float]:
    """Consume `n_events` from the start of `topic` with ``getmany`` and apply each; return the rate."""
    consumer = await _assigned_consumer(bootstrap, topic, partitions, from_end=False)
    models: dict[str, DynamicRLHFModel] = {}
    consumed = 0
    first_s = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while consumed < n_events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"baseline consumed {consumed} of {n_events} events within {timeout_s} s")
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            for records in batches.values():
                if not first_s:
                    first_s = time.perf_counter()
                apply_batch(models, records)
                consumed += len(records)
        elapsed_s = time.perf_counter() - first_s
    finally:
        await consumer.stop()
    return {"events": consumed, "seconds": elapsed_s, "events_per_second": consumed / elapsed_s}


async def baseline_latency(bootstrap: str, topic: str, partitions: int, rate: float, duration_s: float, seed: int) -> list[float]:
    """Apply a paced stream as it arrives; return each event's latency in ms (CreateTime to applied)."""
    consumer = await _assigned_consumer(bootstrap, topic, partitions, from_end=True)
    producer = PacedProducer(bootstrap, topic, rate, duration_s, seed).start()
    models: dict[str, DynamicRLHFModel] = {}
    latencies_ms: list[float] = []
    deadline = time.monotonic() + duration_s + 60
    try:
        while len(latencies_ms) < producer.n_events and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            for records in batches.values():
                apply_batch(models, records)
                applied_ms = time.time() * 1000
                latencies_ms.extend(applied_ms - record.timestamp for record in records)
    finally:
        await consumer.stop()
        producer.timestamps_ms(timeout_s=60)
    return latencies_ms


def worker_latency_ms(worker: WorkerProcess, bootstrap: str, topic: str, rate: float, duration_s: float,
                      seed: int, delay_ms: dict[str, float]) -> list[float]:
    """Produce a paced stream of model ``latency`` to the running worker; return each event's latency bound in ms.

    Also fills `delay_ms` with the p50 and p99 of the worker's own event-delay histogram
    over the paced stream (None where the histogram cannot place them).
    """
    before = worker.delay_buckets()
    producer = PacedProducer(bootstrap, topic, rate, duration_s, seed).start()
    scrapes: list[tuple[float, float]] = []
    worker.wait_count(producer.n_events, timeout_s=duration_s + 60, interval_s=LATENCY_SCRAPE_INTERVAL_S,
                      model_id=LATENCY_MODEL_ID, on_scrape=lambda now_s, count: scrapes.append((now_s, count)))
    timestamps_ms = producer.timestamps_ms(timeout_s=60)
    after = worker.delay_buckets()
    for name, fraction in (("p50", 0.50), ("p99", 0.99)):
        quantile = _stream_report.histogram_quantile(before, after, fraction)
        if quantile is not None:
            delay_ms[name] = quantile * 1000

    # The k-th event (one key, so one partition, in order) is processed by the first scrape showing k events.
    latencies_ms = []
    scrape_index = 0
    for k, created_ms in enumerate(timestamps_ms, start=1):
        while scrapes[scrape_index][1] < k:
            scrape_index += 1
        latencies_ms.append(scrapes[scrape_index][0] * 1000 - created_ms)
    return latencies_ms


def profile_worker(worker: WorkerProcess, duration_s: float, out_path: Path) -> subprocess.Popen[bytes] | None:
    """Start ``py-spy record`` on the worker for `duration_s`; return None when py-spy is not installed."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy not found; the worker is not profiled", file=sys.stderr)
        return None
    return subprocess.Popen([py_spy, "record", "--pid", str(worker.pid), "--duration", str(int(duration_s)),
                             "--format", "raw", "--output", str(out_path), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_worker(args: argparse.Namespace, topic: str, prefix: str, seed: int, profile_path: Path | None) -> dict[str, Any]:
    """Measure the worker's throughput on the pre-filled `topic`, then its latency on a paced stream."""
    log_path = Path(tempfile.gettempdir()) / f"{prefix}-worker.log"
    worker = WorkerProcess(args.bootstrap, prefix, topic, args.models, log_path).start()
    try:
        worker.wait_ready(timeout_s=args.worker_timeout)
        profiler = profile_worker(worker, args.profile_seconds, profile_path) if profile_path else None
        first_s, last_s = worker.wait_count(args.events, timeout_s=args.worker_timeout,
                                           interval_s=THROUGHPUT_SCRAPE_INTERVAL_S)
        if profiler is not None:
            profiler.wait(timeout=args.profile_seconds + 60)
        # A topic drained between two scrapes is timed at one scrape interval, so its rate is a lower bound.
        seconds = max(last_s - first_s, THROUGHPUT_SCRAPE_INTERVAL_S)
        result: dict[str, Any] = {"events": args.events, "seconds": seconds, "events_per_second": args.events / seconds}
        if args.latency_seconds > 0:
            delay_ms: dict[str, float] = {}
            result["latency_ms"] = worker_latency_ms(worker, args.bootstrap, topic, args.latency_rate,
                                                     args.latency_seconds, seed + 1000, delay_ms)
            if len(delay_ms) == 2:
                result["delay_ms"] = delay_ms
        return result
    finally:
        worker.stop()


async def prefill(args: argparse.Namespace, topic: str, pairs: list[tuple[bytes, bytes]]) -> float:
    await create_topic(args.bootstrap, topic, args.models)
    return await produce_all(args.bootstrap, topic, pairs)


def run_repetition(args: argparse.Namespace, repetition: int, pairs: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Run the baseline, then the worker, on one fresh pre-filled topic."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.preferences"
    seed = args.seed + 10 * repetition
    result: dict[str, Any] = {"repetition": repetition, "topic": topic}
    try:
        result["produce_seconds"] = asyncio.run(prefill(args, topic, pairs))
        result["baseline"] = asyncio.run(baseline_throughput(args.bootstrap, topic, args.models, args.events, args.worker_timeout))
        if not args.skip_worker:
            profile_path = args.profile_dir / f"worker-py-spy-{repetition}.txt" if args.profile_dir else None
            result["worker"] = run_worker(args, topic, prefix, seed, profile_path)
        if args.latency_seconds > 0:
            result["baseline"]["latency_ms"] = asyncio.run(
                baseline_latency(args.bootstrap, topic, args.models, args.latency_rate, args.latency_seconds, seed + 2000))
    finally:
        asyncio.run(delete_topics(args.bootstrap, prefix))
    print(_stream_report.repetition_line(result), file=sys.stderr)
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                        help="Kafka bootstrap host:port on loopback (default: $KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--events", type=int, default=100_000,
                        help="events in the pre-filled topic (default 100,000)")
    parser.add_argument("--models", type=int, default=4,
                        help="model ids, one partition each, events spread round-robin (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions; the report gives medians (default 3)")
    parser.add_argument("--latency-rate", type=float, default=500.0,
                        help="events per second of the paced latency stream (default 500)")
    parser.add_argument("--latency-seconds", type=float, default=10.0,
                        help="duration of the paced latency stream in seconds; 0 skips latency (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic events (default 0)")
    parser.add_argument("--skip-worker", action="store_true", help="measure the plain aiokafka loop only")
    parser.add_argument("--worker-timeout", type=float, default=600.0,
                        help="seconds to wait for the worker to start or to finish a phase (default 600)")
    parser.add_argument("--profile-dir", type=Path, default=None,
                        help="record py-spy profiles of the worker's throughput phase into this directory")
    parser.add_argument("--profile-seconds", type=float, default=10.0,
                        help="duration of each py-spy profile in seconds (default 10)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2,000 events, 1 repetition, baseline only, 2 s of latency at 200 events/s")
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown", help="report format")
    args = parser.parse_args(argv)

    if args.quick:
        args.events, args.repeats, args.skip_worker = 2_000, 1, True
        args.latency_rate, args.latency_seconds = 200.0, 2.0
    if not args.bootstrap:
        parser.error("no broker: pass --bootstrap HOST:PORT or set KAFKA_BOOTSTRAP_SERVERS")
    if args.profile_dir:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    pairs = encoded_events(args.events, args.models, args.seed)
    # The worker loads its compiled loops before it reports ready; the plain loop does so here.
    warm_up()
    repetitions = [run_repetition(args, repetition, pairs) for repetition in range(args.repeats)]

    report = _stream_report.build_report(args, [sys.argv[0], *argv], repetitions)
    if args.profile_dir:
        report["worker_profile_top"] = _stream_report.top_functions(sorted(args.profile_dir.glob("worker-py-spy-*.txt")))
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(_stream_report.render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
