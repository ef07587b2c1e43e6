"""The ``dynamic-rlhf worker`` side of the stream benchmark: a subprocess read through ``/metrics``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Final

from service.demo_cmd import sample_sum, scrape

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
EVENTS_METRIC: Final = "dynamic_rlhf_events_total"
DELAY_METRIC: Final = "dynamic_rlhf_event_delay_seconds"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_command() -> list[str]:
    """Return the ``dynamic-rlhf worker`` console script of this interpreter, or ``python -m service worker``."""
    script = Path(sys.executable).with_name("dynamic-rlhf")
    if script.exists():
        return [str(script), "worker"]
    return [sys.executable, "-m", "service", "worker"]


class WorkerProcess:
    """One worker subprocess with its own app id, topics and web port; its log goes to `log_path`."""

    def __init__(self, bootstrap: str, prefix: str, preferences_topic: str, partitions: int, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DRLHF_APP_ID": f"{prefix}-app",
            "DRLHF_TOPIC_PREFERENCES": preferences_topic,
            "DRLHF_TOPIC_CANDIDATES": f"{prefix}.candidates",
            "DRLHF_TOPIC_RECORDS": f"{prefix}.records",
            "DRLHF_TOPIC_DEAD_LETTERS": f"{prefix}.dead-letters",
            "DRLHF_PARTITIONS": str(partitions),
            "DRLHF_WEB_PORT": str(self.port),
            "DRLHF_LOG_LEVEL": "WARNING",
            # Faust's local files (an empty tables folder) go beside the log, not into the checkout.
            "DRLHF_DATA_DIR": str(log_path.parent / f"{prefix}-app-data"),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(worker_command(), cwd=REPO_ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "start() the worker first"
        return self.process.pid

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_running()
            try:
                with urllib.request.urlopen(self.base_url + "/health/ready", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready within {timeout_s} s; log: {self.log_path}")

    def events_processed(self, model_id: str | None = None) -> float:
        """Return ``dynamic_rlhf_events_total`` summed over outcomes, for one model id or all of them."""
        samples = scrape(self.base_url + "/metrics")
        if model_id is None:
            return sample_sum(samples, EVENTS_METRIC)
        return sample_sum(samples, EVENTS_METRIC, model_id=model_id)

    def delay_buckets(self, agent: str = "learn") -> dict[float, float]:
        """Return the cumulative bucket counts of ``dynamic_rlhf_event_delay_seconds`` for `agent`, by upper bound."""
        samples = scrape(self.base_url + "/metrics")
        buckets = {}
        for (name, labels), value in samples.items():
            label_map = dict(labels)
            if name == DELAY_METRIC + "_bucket" and label_map.get("agent") == agent:
                buckets[float(label_map["le"])] = value
        return buckets

    def wait_count(self, target: int, timeout_s: float, interval_s: float, model_id: str | None = None,
                   on_scrape: Callable[[float, float], None] | None = None) -> tuple[float, float]:
        """Scrape until the event count reaches `target`; return the times of the first non-zero and the final scrape.

        `on_scrape(time_s, count)` is called after every scrape, with ``time.time()`` seconds.
        """
        first_s = 0.0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_running()
            count = self.events_processed(model_id)
            now_s = time.time()
            if on_scrape is not None:
                on_scrape(now_s, count)
            if count > 0 and not first_s:
                first_s = now_s
            if count >= target:
                return first_s, now_s
            time.sleep(interval_s)
        raise TimeoutError(f"worker processed fewer than {target} events within {timeout_s} s; log: {self.log_path}")

    def stop(self) -> None:
        """Stop with SIGTERM, then SIGKILL after 60 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def _check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"worker exited with code {self.process.returncode}; log: {self.log_path}")
