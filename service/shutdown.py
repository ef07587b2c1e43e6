"""A deadline for the worker's stop after SIGTERM or SIGINT.

Faust's stop commits offsets, flushes the producer and leaves the consumer group, and
each of these waits for the broker. With the broker unreachable the stop never ends,
and the process manager has to send SIGKILL. :class:`DeadlineWorker` arms a timer
thread on the first stop signal. If the process is still running when the timer
fires, it logs an error and exits with status 1. That is as safe as a crash: events
are acknowledged only after a checkpoint that contains them, so the next worker
consumes the unacknowledged ones again.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

import faust

logger = logging.getLogger(__name__)

EXIT_STATUS = 1


class DeadlineWorker(faust.Worker):
    """A Faust worker that exits the process when its stop outlasts *shutdown_timeout_s*."""

    def __init__(self, *args: Any, shutdown_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_timeout_s = shutdown_timeout_s
        self._deadline: threading.Timer | None = None

    def _schedule_shutdown(self, signal_received: signal.Signals) -> None:
        # NOTE: mode-streaming 0.7.1 calls this private method for SIGINT and SIGTERM, but
        # another version may not. tests/service/test_worker_recovery.py would then fail.
        super()._schedule_shutdown(signal_received)
        if self._deadline is not None:
            return

        # A daemon thread: a stop that finishes in time exits without waiting for it.
        self._deadline = threading.Timer(self.shutdown_timeout_s, _exit_after_deadline,
                                         args=(signal_received, self.shutdown_timeout_s))
        self._deadline.daemon = True
        self._deadline.start()


def _exit_after_deadline(signal_received: signal.Signals, timeout_s: float) -> None:
    logger.error("Worker did not stop within %.0f s of %s (DRLHF_SHUTDOWN_TIMEOUT_S); exiting with status %d. "
                 "Events not yet checkpointed will be consumed again by the next worker. Check that the "
                 "broker is reachable.", timeout_s, signal_received.name, EXIT_STATUS)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_STATUS)
