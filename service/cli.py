"""The ``dynamic-rlhf`` command line: worker, produce, export, demo and model show."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from service.settings import Settings, SettingsError

logger = logging.getLogger(__name__)


def _run_worker(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from dynamic_rlhf.warmup import warm_up
    from service.app import create_runtime
    from service.shutdown import DeadlineWorker
    from service.topics import TopicLayoutError, ensure_topics

    logger.info("Worker settings: %s", settings.describe())
    try:
        created = asyncio.run(ensure_topics(settings))
    except TopicLayoutError as exc:
        logger.error("%s", exc)
        return 2
    if created:
        logger.info("Created topics %s", created)

    # Compiled loops load now, not while the first events of each kind wait.
    logger.info("Learner warmed up in %.2f s", warm_up(settings.model))

    runtime = create_runtime(settings)
    worker = DeadlineWorker(runtime.app, loglevel=settings.log_level.lower(), quiet=True,
                            shutdown_timeout_s=settings.shutdown_timeout_s)
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0


def _add_worker(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a stream worker (learn and harvest agents, model table, /metrics)",
        description="Run one Faust worker. Every option comes from the environment; "
                    "see docs/service.md for the variables.",
    )
    parser.set_defaults(handler=_run_worker)


def _add_model(subparsers: argparse._SubParsersAction) -> None:
    from service.model_cmd import run_model_show

    parser = subparsers.add_parser("model", help="inspect stored models")
    model_commands = parser.add_subparsers(dest="model_command", required=True)
    show = model_commands.add_parser(
        "show",
        help="print version, metrics and top features of a stored model",
        description="Read the latest checkpoint of a model from the model table's changelog "
                    "topic, or from a checkpoint file, and print it.",
    )
    show.add_argument("--model-id", default="default", help="model id to show (default: default)")
    show.add_argument("--checkpoint", help="read this checkpoint file instead of the changelog topic")
    show.add_argument("--top", type=int, default=10, help="number of top-weighted features to print (default: 10)")
    show.add_argument("--save", help="also write the checkpoint envelope to this file")
    show.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the broker (default: 30)")
    show.set_defaults(handler=run_model_show)


def _add_ingest_commands(subparsers: argparse._SubParsersAction) -> None:
    from service import export, produce

    produce.register(subparsers)
    export.register(subparsers)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand."""
    from service.demo_cmd import register as register_demo

    parser = argparse.ArgumentParser(
        prog="dynamic-rlhf",
        description="Online reward learning from streamed human preference feedback.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_worker(subparsers)
    _add_ingest_commands(subparsers)
    register_demo(subparsers)
    _add_model(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dynamic-rlhf`` console script."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"dynamic-rlhf: configuration error: {exc}", file=sys.stderr)
        return 2

    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command != "worker" and settings.log_level != "DEBUG":
        # Client commands print their own results; aiokafka's INFO lines would bury them.
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return int(args.handler(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
