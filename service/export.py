"""The ``export`` command: write fine-tune records from Kafka to JSONL training files.

Records are published at least once, so the export keeps the first record per
``record_id`` and counts the rest as duplicates. Output files:

- ``sft.jsonl``: ``{"prompt", "completion"}`` rows from ``sft`` records (TRL prompt-completion);
- ``dpo.jsonl``: ``{"prompt", "chosen", "rejected"}`` rows from ``preference`` records (TRL preference);
- ``chat.jsonl``: ``{"messages": [...]}`` rows from ``sft`` records (OpenAI chat fine-tuning);
- ``records.jsonl``: the full records, when ``raw`` is requested.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from tqdm import tqdm

from service.codecs import decode_payload
from service.errors import InvalidInput
from service.limits import Limits

logger = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP: Final = "127.0.0.1:9092"
DEFAULT_RECORDS_TOPIC: Final = "drlhf.records"
FILE_NAMES: Final[dict[str, str]] = {"sft": "sft.jsonl", "dpo": "dpo.jsonl", "chat": "chat.jsonl", "raw": "records.jsonl"}
DEFAULT_FORMATS: Final = ("sft", "dpo", "chat")
RECORD_LIMITS: Final = Limits(max_event_bytes=16 * 1_048_576)


@dataclass
class ExportSummary:
    """Outcome of one export run."""

    topic: str
    records_read: int = 0
    duplicates: int = 0
    invalid: int = 0
    other_models: int = 0
    per_kind: Counter[str] = field(default_factory=Counter)
    written: Counter[str] = field(default_factory=Counter)
    files: dict[str, str] = field(default_factory=dict)
    caught_up: bool = True
    elapsed_s: float = 0.0

    def lines(self) -> list[str]:
        """Return the summary as printable lines."""
        kinds = ", ".join(f"{kind}={count}" for kind, count in sorted(self.per_kind.items())) or "none"
        text = [
            f"read {self.records_read} records from {self.topic} in {self.elapsed_s:.1f} s: "
            f"{self.duplicates} duplicates, {self.invalid} undecodable ({kinds})"
        ]
        if self.other_models:
            text.append(f"left out {self.other_models} records of other model ids")
        text += [f"wrote {self.written[fmt]} rows to {path}" for fmt, path in self.files.items()]
        if not self.caught_up:
            text.append("stopped before reaching the end offsets (idle timeout); run again to continue")
        return text


async def export_records(
    bootstrap: str,
    topic: str,
    out_dir: str | Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    group_id: str | None = None,
    model_ids: Sequence[str] = (),
    progress: bool = False,
    idle_timeout_s: float = 10.0,
    client_options: dict[str, Any] | None = None,
) -> ExportSummary:
    """Read `topic` up to its end offsets at start and write the requested JSONL files.

    Without `group_id` the topic is read from the beginning and the files are
    replaced. With `group_id` reading starts at the group's committed offsets, the
    files are appended to, and the offsets are committed at the end.
    Reading stops early when no message arrives for `idle_timeout_s` seconds.
    A non-empty `model_ids` keeps only the records of those models, because the records
    topic contains the records of every model and every run.
    """
    unknown = set(formats) - set(FILE_NAMES)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; expected some of {sorted(FILE_NAMES)}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mode = "a" if group_id else "w"
    handles = {fmt: (out / FILE_NAMES[fmt]).open(mode, encoding="utf-8") for fmt in formats}
    summary = ExportSummary(topic=topic, files={fmt: str(out / FILE_NAMES[fmt]) for fmt in formats})
    started = time.monotonic()

    partitions = await topic_partitions(bootstrap, topic, client_options or {})
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed", **(client_options or {}),
    )
    await consumer.start()
    try:
        await _consume(consumer, partitions, handles, summary, group_id is not None, progress, idle_timeout_s,
                       frozenset(model_ids))
        if group_id:
            await consumer.commit()
    finally:
        await consumer.stop()
        for handle in handles.values():
            handle.close()

    summary.elapsed_s = time.monotonic() - started
    return summary


async def topic_partitions(
    bootstrap: str, topic: str, client_options: dict[str, Any], *, timeout_s: float = 5.0
) -> list[TopicPartition]:
    """Return every partition of `topic`; raise ValueError when the broker does not know the topic.

    A topic created a moment ago may not be in the broker's metadata yet, so the lookup
    is retried for up to `timeout_s` seconds.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options)
    await admin.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            [description] = await admin.describe_topics([topic])
            if description["error_code"] == 0 and description["partitions"]:
                break
            if time.monotonic() > deadline:
                raise ValueError(
                    f"topic {topic!r} not found on the broker at {bootstrap} (Kafka error code "
                    f"{description['error_code']}); check the topic name, or start a worker, which creates the "
                    "service topics"
                )
            await asyncio.sleep(0.2)
    finally:
        await admin.close()

    numbers = sorted(partition["partition"] for partition in description["partitions"])
    return [TopicPartition(topic, number) for number in numbers]


async def _consume(
    consumer: AIOKafkaConsumer, assigned: list[TopicPartition], handles: dict[str, IO[str]], summary: ExportSummary,
    use_group: bool, progress: bool, idle_timeout_s: float, model_ids: frozenset[str],
) -> None:
    # Assign every partition explicitly so the end offsets are known before reading.
    topic = assigned[0].topic
    consumer.assign(assigned)
    if not use_group:
        await consumer.seek_to_beginning(*assigned)

    end_offsets = await consumer.end_offsets(assigned)
    remaining = {tp for tp in assigned if await consumer.position(tp) < end_offsets[tp]}
    seen: set[str] = set()
    bar = tqdm(total=sum(end_offsets.values()), unit="rec", desc=f"export {topic}", disable=not progress,
               file=sys.stderr)
    last_message = time.monotonic()

    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=500)
        for tp, messages in batches.items():
            for message in messages:
                if message.offset < end_offsets[tp]:
                    _write_record(message.value, message.headers, handles, summary, seen, model_ids)
            bar.update(len(messages))
        if batches:
            last_message = time.monotonic()
        elif time.monotonic() - last_message > idle_timeout_s:
            summary.caught_up = False
            logger.warning("export of %s stopped: no message for %.0f s before the end offsets", topic, idle_timeout_s)
            break

        remaining = {tp for tp in remaining if await consumer.position(tp) < end_offsets[tp]}
    bar.close()


def _write_record(
    value: bytes | None, headers: Sequence[tuple[str, bytes]], handles: dict[str, IO[str]],
    summary: ExportSummary, seen: set[str], model_ids: frozenset[str],
) -> None:
    summary.records_read += 1
    try:
        record, _ = decode_payload(value, headers, RECORD_LIMITS)
    except InvalidInput as exc:
        summary.invalid += 1
        logger.warning("skipped an undecodable record: %s", exc)
        return

    if model_ids and record.get("model_id") not in model_ids:
        summary.other_models += 1
        return

    record_id = record.get("record_id")
    if record_id in seen:
        summary.duplicates += 1
        return
    if record_id is not None:
        seen.add(record_id)
    kind = str(record.get("kind"))
    summary.per_kind[kind] += 1

    for fmt, handle in handles.items():
        row = training_row(record, fmt)
        if row is not None:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            summary.written[fmt] += 1


def training_row(record: dict[str, Any], fmt: str) -> dict[str, Any] | None:
    """Return the row of `record` for output format `fmt`, or None when the record's kind does not fit."""
    kind = record.get("kind")
    if fmt == "raw":
        return record
    if fmt == "sft" and kind == "sft":
        return {"prompt": record["prompt"], "completion": record["completion"]}
    if fmt == "dpo" and kind == "preference":
        return {"prompt": record["prompt"], "chosen": record["chosen"], "rejected": record["rejected"]}
    if fmt == "chat" and kind == "sft":
        return {"messages": chat_messages(record)}
    return None


def chat_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """Return an SFT record as OpenAI chat messages ending with the assistant completion."""
    if record.get("messages"):
        return [dict(message) for message in record["messages"]]

    prompt, completion = record["prompt"], record["completion"]
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if isinstance(completion, str):
        messages.append({"role": "assistant", "content": completion})
    else:
        messages.extend(dict(m) for m in completion)
    return messages


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand to the ``dynamic-rlhf`` parser."""
    parser = subparsers.add_parser(
        "export",
        help="write harvested fine-tune records to SFT, DPO and chat JSONL files",
        description="Read the records topic up to its current end and write training files, "
                    "keeping one row per record_id.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory for the JSONL files")
    parser.add_argument("--topic", default=os.environ.get("DRLHF_TOPIC_RECORDS", DEFAULT_RECORDS_TOPIC),
                        help="records topic (default: $DRLHF_TOPIC_RECORDS or drlhf.records)")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
                        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    parser.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                        help="comma-separated output formats among sft, dpo, chat, raw (default: sft,dpo,chat)")
    parser.add_argument("--model-id", action="append", default=[], dest="model_ids", metavar="ID",
                        help="export only the records of this model id (repeat for several); default: all")
    parser.add_argument("--group", help="consumer group: continue from its committed offsets and append")
    parser.add_argument("--idle-timeout", type=float, default=10.0,
                        help="stop when no message arrives for this many seconds (default: 10)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace, settings: Any = None) -> int:
    """Run the ``export`` subcommand; return the process exit code."""
    client_options = settings.aiokafka_options() if settings is not None else {}
    client_options.pop("bootstrap_servers", None)
    formats = [fmt.strip() for fmt in args.formats.split(",") if fmt.strip()]

    try:
        summary = asyncio.run(export_records(
            args.bootstrap, args.topic, args.out_dir, formats, group_id=args.group, model_ids=args.model_ids,
            progress=not args.no_progress, idle_timeout_s=args.idle_timeout, client_options=client_options,
        ))
    except ValueError as exc:
        print(f"dynamic-rlhf export: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"dynamic-rlhf export: Kafka request to {args.bootstrap} failed: {exc!r}", file=sys.stderr)
        return 1

    for line in summary.lines():
        print(line)
    return 0 if summary.caught_up else 1
