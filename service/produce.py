"""The ``produce`` command: publish preference events or candidate sets from a file to Kafka.

Lines that cannot be converted or that fail validation are skipped and reported in
the closing summary; ``--strict`` stops at the first one instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from tqdm import tqdm

from service.codecs import JSON, MSGPACK, ContentType, encode
from service.converters import FORMATS, ConversionError, candidate_sets_from_feedback, read_feedback_file
from service.errors import InvalidInput
from service.events import DEFAULT_MODEL_ID, parse_candidate_set, parse_preference_event
from service.export import topic_partitions
from service.limits import Limits

logger = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP: Final = "127.0.0.1:9092"
DEFAULT_PREFERENCES_TOPIC: Final = "drlhf.preferences"
DEFAULT_CANDIDATES_TOPIC: Final = "drlhf.candidates"
SEND_BATCH: Final = 500
# All events of one model id share a key and so a partition, and aiokafka keeps one request in
# flight per partition, so large batches set the throughput (the default batch is 16 KiB).
MAX_BATCH_BYTES: Final = 512 * 1024
_CONTENT_TYPES: Final[dict[str, ContentType]] = {"json": JSON, "msgpack": MSGPACK}


@dataclass
class ProduceSummary:
    """Outcome of one produce run."""

    topic: str
    produced: int = 0
    per_kind: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    def lines(self) -> list[str]:
        """Return the summary as printable lines."""
        kinds = ", ".join(f"{kind}={count}" for kind, count in sorted(self.per_kind.items())) or "none"
        text = [f"produced {self.produced} messages to {self.topic} in {self.elapsed_s:.1f} s ({kinds})"]
        if self.skipped:
            reasons = ", ".join(f"{reason}={count}" for reason, count in self.skipped.most_common())
            count = sum(self.skipped.values())
            text.append(f"skipped {count} {'line' if count == 1 else 'lines'} ({reasons})")
        return text


async def produce_events(
    bootstrap: str,
    topic: str,
    events: Iterable[dict[str, Any] | bytes],
    *,
    content_type: ContentType = JSON,
    progress: bool = False,
    client_options: dict[str, Any] | None = None,
    total: int | None = None,
) -> ProduceSummary:
    """Publish `events` to `topic` and wait until the broker acknowledged all of them.

    Each dict is encoded with `content_type`, keyed by its ``model_id`` (``"default"``
    when absent) and sent with a ``content-type`` header. A `bytes` item is sent
    unchanged, keyed ``default`` and without the header, which lets tests publish
    malformed payloads. `client_options` are extra `AIOKafkaProducer` arguments,
    such as the security settings.
    """
    summary = ProduceSummary(topic=topic)
    options = dict(client_options or {})

    # Fail fast on a missing topic: the producer would wait for its metadata for a minute.
    await topic_partitions(bootstrap, topic, options)
    options["bootstrap_servers"] = bootstrap
    producer = AIOKafkaProducer(acks="all", linger_ms=20, max_batch_size=MAX_BATCH_BYTES, **options)
    started = time.monotonic()

    await producer.start()
    try:
        bar = tqdm(total=total, unit="msg", desc=f"produce {topic}", disable=not progress, file=sys.stderr)
        pending: list[asyncio.Future[Any]] = []
        for item in events:
            pending.append(await _send(producer, topic, item, content_type))
            summary.per_kind[_kind_of(item)] += 1
            if len(pending) >= SEND_BATCH:
                await asyncio.gather(*pending)
                bar.update(len(pending))
                pending.clear()

        await asyncio.gather(*pending)
        bar.update(len(pending))
        bar.close()
    finally:
        await producer.stop()

    summary.produced = sum(summary.per_kind.values())
    summary.elapsed_s = time.monotonic() - started
    return summary


async def _send(
    producer: AIOKafkaProducer, topic: str, item: dict[str, Any] | bytes, content_type: ContentType
) -> asyncio.Future[Any]:
    if isinstance(item, bytes | bytearray):
        return await producer.send(topic, value=bytes(item), key=DEFAULT_MODEL_ID.encode())

    key = str(item.get("model_id", DEFAULT_MODEL_ID)).encode("utf-8")
    headers = [("content-type", content_type.encode("ascii"))]
    return await producer.send(topic, value=encode(item, content_type), key=key, headers=headers)


def _kind_of(item: dict[str, Any] | bytes) -> str:
    if isinstance(item, bytes | bytearray):
        return "raw"
    if "request_id" in item:
        return "candidate_set"
    return str(item.get("kind", "unknown"))


def validated(
    items: Iterable[dict[str, Any]], *, candidates: bool, limits: Limits, skipped: Counter[str], strict: bool
) -> Iterator[dict[str, Any]]:
    """Yield the items that pass validation; count the others in `skipped` by reason."""
    for item in items:
        try:
            if candidates:
                parse_candidate_set(item, limits)
            else:
                parse_preference_event(item, limits)
        except InvalidInput as exc:
            if strict:
                raise
            skipped[exc.reason] += 1
            logger.warning("skipped %s: %s", item.get("event_id") or item.get("request_id"), exc)
            continue
        yield item


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``produce`` subcommand to the ``dynamic-rlhf`` parser."""
    parser = subparsers.add_parser(
        "produce",
        help="publish preference events (or candidate sets) from a JSONL file",
        description="Read a feedback file (our JSONL events, TRL, HH-RLHF or UltraFeedback; "
                    "gzip when the name ends in .gz), validate every event and publish it "
                    "keyed by model id. Invalid lines are skipped and counted unless --strict.",
    )
    parser.add_argument("path", metavar="PATH", help="JSONL or JSONL.gz feedback file")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="file format (default: detect)")
    parser.add_argument("--topic", help="target topic (default: $DRLHF_TOPIC_PREFERENCES, or "
                        "$DRLHF_TOPIC_CANDIDATES with --candidates)")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
                        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    parser.add_argument("--content-type", choices=sorted(_CONTENT_TYPES), default="json",
                        help="message encoding (default: json)")
    parser.add_argument("--candidates", action="store_true",
                        help="publish candidate sets (prompt plus the compared completions) for harvesting")
    parser.add_argument("--limit", type=int, help="publish at most N messages")
    parser.add_argument("--model-id", help="set this model id on every message")
    parser.add_argument("--strict", action="store_true", help="stop at the first invalid line (lines before it are already sent)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run_produce)


def run_produce(args: argparse.Namespace, settings: Any = None) -> int:
    """Run the ``produce`` subcommand; return the process exit code."""
    limits = settings.limits if settings is not None else Limits()
    client_options = settings.aiokafka_options() if settings is not None else {}
    client_options.pop("bootstrap_servers", None)
    topic = args.topic or _default_topic(args.candidates)

    conversion_errors: list[ConversionError] | None = None if args.strict else []
    skipped: Counter[str] = Counter()
    events: Iterable[dict[str, Any]] = read_feedback_file(args.path, args.format, model_id=args.model_id,
                                                          errors=conversion_errors)
    if args.candidates:
        events = candidate_sets_from_feedback(validated(events, candidates=False, limits=limits,
                                                        skipped=skipped, strict=args.strict))
    items = _take(validated(events, candidates=args.candidates, limits=limits, skipped=skipped,
                            strict=args.strict), args.limit)

    try:
        summary = asyncio.run(produce_events(
            args.bootstrap, topic, items, content_type=_CONTENT_TYPES[args.content_type],
            progress=not args.no_progress, client_options=client_options, total=args.limit,
        ))
    except (ConversionError, InvalidInput) as exc:
        print(f"dynamic-rlhf produce: stopped at an invalid line: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"dynamic-rlhf produce: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"dynamic-rlhf produce: Kafka request to {args.bootstrap} failed: {exc!r}", file=sys.stderr)
        return 1

    for error in conversion_errors or ():
        summary.skipped["conversion"] += 1
        print(f"skipped {error}", file=sys.stderr)
    summary.skipped.update(skipped)
    for line in summary.lines():
        print(line)
    return 0


def _default_topic(candidates: bool) -> str:
    if candidates:
        return os.environ.get("DRLHF_TOPIC_CANDIDATES", DEFAULT_CANDIDATES_TOPIC)
    return os.environ.get("DRLHF_TOPIC_PREFERENCES", DEFAULT_PREFERENCES_TOPIC)


def _take(items: Iterable[dict[str, Any]], limit: int | None) -> Iterator[dict[str, Any]]:
    for count, item in enumerate(items):
        if limit is not None and count >= limit:
            return
        yield item
