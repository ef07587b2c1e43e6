"""``dynamic-rlhf demo``: stream synthetic feedback through a running worker and report the result.

The demo waits for the worker's ``/health/ready`` and produces synthetic preference events,
then candidate sets, following the worker's ``/metrics`` until each is processed. At the
end it loads the checkpointed model from the changelog and measures its accuracy on
held-out events that the worker never saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from dynamic_rlhf import DynamicRLHFModel, PreferenceExample
from service.demo_stream import (
    bayes_optimal_choice,
    synthetic_candidate_sets,
    synthetic_preference_events,
    true_preference_probability,
)
from service.events import parse_preference_event
from service.model_cmd import read_latest_checkpoints
from service.checkpoint import decode_checkpoint
from service.settings import Settings

JSON_HEADERS = [("content-type", b"application/json")]


def scrape(url: str, timeout_s: float = 5.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of a Prometheus text endpoint as {(name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode("utf-8")
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample_sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum the samples of `name` whose labels include `labels`."""
    total = 0.0
    for (sample_name, sample_labels), value in samples.items():
        if sample_name == name and all((k, v) in sample_labels for k, v in labels.items()):
            total += value
    return total


def _progressive_accuracy_text(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], model_id: str) -> str:
    # The gauge appears with the model's first checkpoint; before that there is no figure to print.
    name = "dynamic_rlhf_progressive_accuracy"
    if not any(key[0] == name and ("model_id", model_id) in key[1] for key in samples):
        return "n/a (no checkpoint yet)"
    return f"{sample_sum(samples, name, model_id=model_id):.3f} (at the last checkpoint)"


def wait_ready(base_url: str, timeout_s: float) -> None:
    """Wait until ``/health/ready`` returns status 200; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(base_url + "/health/ready", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker at {base_url} was not ready within {timeout_s:.0f} s; "
                               "start it with `dynamic-rlhf worker` and check its log")
        time.sleep(1.0)


async def produce_json(settings: Settings, topic: str, key: str, values: Iterable[dict[str, Any]]) -> int:
    """Produce `values` as JSON to `topic` with one key; return the count."""
    producer = AIOKafkaProducer(linger_ms=20, max_batch_size=1_048_576, **settings.aiokafka_options())
    await producer.start()
    count = 0
    try:
        futures = []
        for value in values:
            payload = json.dumps(value, ensure_ascii=False).encode("utf-8")
            futures.append(await producer.send(topic, payload, key=key.encode("utf-8"), headers=JSON_HEADERS))
            count += 1
        for future in futures:
            await future
    finally:
        await producer.stop()
    return count


def held_out_accuracy(model: DynamicRLHFModel, events: list[dict[str, Any]], settings: Settings) -> float | None:
    """Return the share of held-out pairs the model orders as the hidden true reward does.

    Only strict pairs with different true rewards count; the annotators' labels are noisy,
    so the hidden true reward of `service.demo_stream` is the reference.
    """
    correct = 0
    total = 0
    for event in events:
        for example in parse_preference_event(event, settings.limits):
            if not isinstance(example, PreferenceExample) or example.label != "chosen":
                continue
            if true_preference_probability(example.prompt, example.chosen, example.rejected) == 0.5:
                continue  # equal true rewards, so neither order is correct
            model_first = model.predict_proba_one(example.prompt, example.chosen, example.rejected) > 0.5
            true_first = bayes_optimal_choice(example.prompt, example.chosen, example.rejected) == 0
            total += 1
            correct += model_first == true_first
    return correct / total if total else None


def wait_for_count(metrics_url: str, name: str, model_id: str, expected: float, timeout_s: float,
                   label: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
    """Poll /metrics until the sum of `name` for `model_id` reaches `expected`; print progress."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        samples = scrape(metrics_url)
        done = sample_sum(samples, name, model_id=model_id)
        accuracy = _progressive_accuracy_text(samples, model_id)
        print(f"  {label}: {int(done)}/{int(expected)}, progressive accuracy {accuracy}", flush=True)
        if done >= expected:
            return samples
        time.sleep(2.0)
    return None


def wait_last_checkpoint(settings: Settings) -> None:
    """Sleep until the checkpoint round after the last event has run.

    The model's accuracy gauges and its stored checkpoint change only at checkpoint
    rounds. The worker's timer checks every half ``DRLHF_CHECKPOINT_INTERVAL_MS`` whether a
    round is due, so the last round follows within 1.5 intervals of the last event.
    """
    seconds = settings.checkpoint_interval_ms / 1000 * 1.5 + 1
    print(f"  waiting {seconds:.0f} s for the checkpoint after the last event ...", flush=True)
    time.sleep(seconds)


def wait_candidates_settled(metrics_url: str, topic: str, model_id: str, timeout_s: float) -> None:
    """Wait until the candidates topic has no lag and the scored count stopped changing.

    Used when candidate sets were produced by another command, so their number is unknown.
    The lag gauge is refreshed every ``DRLHF_LAG_INTERVAL_MS``.
    """
    deadline = time.monotonic() + timeout_s
    previous = -1.0
    while time.monotonic() < deadline:
        samples = scrape(metrics_url)
        scored = sample_sum(samples, "dynamic_rlhf_candidates_scored_total", model_id=model_id)
        lag = sample_sum(samples, "dynamic_rlhf_consumer_lag", topic=topic)
        print(f"  completions scored: {int(scored)}, candidate lag {int(lag)}", flush=True)
        if lag == 0 and scored == previous:
            return
        previous = scored
        time.sleep(3.0)


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``dynamic-rlhf demo``."""
    base_url = f"http://{settings.web_host}:{settings.web_port}"
    metrics_url = base_url + "/metrics"
    print(f"waiting for the worker at {base_url} ...", flush=True)
    try:
        wait_ready(base_url, args.timeout)
    except TimeoutError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1

    # Counters are cumulative over the worker's life, so targets are offsets from now.
    before = scrape(metrics_url)
    events_before = sample_sum(before, "dynamic_rlhf_events_total", model_id=args.model_id)
    scored_before = sample_sum(before, "dynamic_rlhf_candidates_scored_total", model_id=args.model_id)
    started = time.monotonic()
    held_out: list[dict[str, Any]] = []
    if args.watch is None:
        events = list(synthetic_preference_events(args.events + args.held_out, seed=args.seed, model_id=args.model_id))
        train, held_out = events[: args.events], events[args.events:]
        asyncio.run(produce_json(settings, settings.topic_preferences, args.model_id, train))
        print(f"produced {len(train)} preference events", flush=True)
        expected = len(train)
    else:
        # The events were produced before this command, so the target is an absolute count.
        expected = args.watch
        events_before = 0.0

    samples = wait_for_count(metrics_url, "dynamic_rlhf_events_total", args.model_id, events_before + expected,
                             args.timeout, "events processed")
    if samples is None:
        print("demo: the worker did not process every event in time; see its log", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    if expected:
        wait_last_checkpoint(settings)

    # Candidates go in after learning, so harvesting uses the trained model.
    if args.watch is None and args.candidates:
        candidates = list(synthetic_candidate_sets(args.candidates, seed=args.seed + 1, model_id=args.model_id))
        asyncio.run(produce_json(settings, settings.topic_candidates, args.model_id, candidates))
        print(f"produced {len(candidates)} candidate sets", flush=True)
        completions = sum(len(c["completions"]) for c in candidates)
        if wait_for_count(metrics_url, "dynamic_rlhf_candidates_scored_total", args.model_id,
                          scored_before + completions, args.timeout, "completions scored") is None:
            print("demo: the worker did not score every candidate set in time; see its log", file=sys.stderr)
            return 1

    if args.watch is not None and args.candidates:
        wait_candidates_settled(metrics_url, settings.topic_candidates, args.model_id, args.timeout)

    held_out_score = None
    if held_out:
        stored = asyncio.run(read_latest_checkpoints(settings)).get(args.model_id)
        held_out_score = held_out_accuracy(decode_checkpoint(stored).load_model(), held_out, settings) if stored else None

    samples = scrape(metrics_url)
    model = {"model_id": args.model_id}
    print("results:")
    if args.watch is None:
        print(f"  events processed:      {expected} in {elapsed:.1f} s ({expected / elapsed:.0f} events/s)")
    else:
        print(f"  events processed:      {expected}")
    print(f"  pairs trained:         {int(sample_sum(samples, 'dynamic_rlhf_pairs_trained_total', **model))}")
    print(f"  progressive accuracy:  {sample_sum(samples, 'dynamic_rlhf_progressive_accuracy', **model):.3f}")
    if held_out_score is not None:
        print(f"  held-out accuracy:     {held_out_score:.3f} against the true preference on {len(held_out)} unseen events")
    print(f"  completions scored:    {int(sample_sum(samples, 'dynamic_rlhf_candidates_scored_total', **model))}")
    print(f"  records published:     {int(sample_sum(samples, 'dynamic_rlhf_records_published_total', **model))}")
    print(f"  dead letters (worker): {int(sample_sum(samples, 'dynamic_rlhf_dead_letters_total'))}")
    print_sample_records(settings, args.model_id, args.show_records)
    return 0


def print_sample_records(settings: Settings, model_id: str, count: int) -> None:
    """Print the first `count` records of `model_id` from the records topic, texts shortened."""
    if count <= 0:
        return
    records = asyncio.run(read_records(settings, model_id, count))
    print(f"sample records ({len(records)}):")
    for record in records:
        short_record = {key: shorten_text(value) for key, value in record.items() if key not in ("messages", "policy")}
        print("  " + json.dumps(short_record, ensure_ascii=False))


def shorten_text(value: Any, limit: int = 80) -> Any:
    """Shorten a text field for display: a string to `limit` characters, a chat to its last message, shortened."""
    if isinstance(value, str):
        return value[:limit] + "..." if len(value) > limit else value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        last = {**value[-1], "content": shorten_text(value[-1]["content"], limit)}
        earlier = len(value) - 1
        marker = [f"({earlier} earlier message{'s' if earlier > 1 else ''})"] if earlier else []
        return marker + [last]
    return value


async def read_records(settings: Settings, model_id: str, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Return up to `count` records of `model_id` from the start of the records topic."""
    consumer = AIOKafkaConsumer(settings.topic_records, enable_auto_commit=False, auto_offset_reset="earliest",
                                **settings.aiokafka_options())
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for message in messages:
                    record = json.loads(message.value)
                    if record.get("model_id") == model_id and len(records) < count:
                        records.append(record)
    finally:
        await consumer.stop()
    return records


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="stream synthetic feedback through a running worker and print the results",
        description="Produce synthetic preference events and candidate sets, wait for the worker to "
                    "process them, and print progressive and held-out accuracy and harvested records.",
    )
    parser.add_argument("--events", type=int, default=5000, help="preference events to produce (default: 5000)")
    parser.add_argument("--held-out", type=int, default=500,
                        help="extra events kept back to measure held-out accuracy (default: 500)")
    parser.add_argument("--candidates", type=int, default=200,
                        help="candidate sets to produce (default: 200). With --watch, 0 skips waiting for "
                             "candidate sets to be scored")
    parser.add_argument("--model-id", default="default", help="model id of the events (default: default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream (default: 0)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the worker (default: 300)")
    parser.add_argument("--watch", type=int, metavar="N",
                        help="produce nothing; wait until the worker has processed N events of --model-id "
                             "since it started (after `dynamic-rlhf produce`) and print the results")
    parser.add_argument("--show-records", type=int, default=3, help="sample records to print (default: 3)")
    parser.set_defaults(handler=run_demo)
