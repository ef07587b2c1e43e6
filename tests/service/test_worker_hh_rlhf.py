"""The real HH-RLHF harmless-base test split streamed through a worker (skipped when the file is absent)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.worker_harness import (
    REPO_ROOT,
    Worker,
    consume_all,
    create_topics,
    offline_replay,
    sample,
    settings_for,
    unique_env,
    wait_checkpointed,
)

pytestmark = pytest.mark.kafka

DATA_FILE = Path(os.environ.get(
    "DRLHF_HH_RLHF_PATH", REPO_ROOT / ".." / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"))
PAIRS = 2312
MODEL_ID = "hh-rlhf"


@pytest.mark.skipif(not DATA_FILE.exists(), reason=f"HH-RLHF file not found at {DATA_FILE}")
def test_hh_rlhf_file_fully_learned(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = unique_env(kafka_bootstrap)
    settings = settings_for(env)
    create_topics(settings)

    produced = subprocess.run(
        [sys.executable, "-m", "service", "produce", str(DATA_FILE), "--model-id", MODEL_ID, "--no-progress"],
        cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300, check=True,
    )
    messages = consume_all(settings.bootstrap_servers, settings.topic_preferences)
    last = messages[-1]

    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        checkpoint = wait_checkpointed(settings, {MODEL_ID: (last.partition, last.offset)}, worker=worker)[MODEL_ID]
        samples = worker.metrics()
    finally:
        worker.stop()

    stats = checkpoint.load_model().stats()
    assert f"produced {PAIRS} messages" in produced.stdout
    assert len(messages) == PAIRS
    assert sample(samples, "dynamic_rlhf_events_total", model_id=MODEL_ID) == PAIRS
    assert sample(samples, "dynamic_rlhf_events_total", model_id=MODEL_ID, outcome="invalid") == 0
    assert sample(samples, "dynamic_rlhf_dead_letters_total") == 0
    assert stats.pairs_trained + stats.skipped_identical == PAIRS
    accuracy = sample(samples, "dynamic_rlhf_progressive_accuracy", model_id=MODEL_ID)
    assert accuracy == pytest.approx(stats.progressive_accuracy)
    assert 0.0 < accuracy < 1.0
    assert checkpoint.model_bytes == offline_replay(settings)[MODEL_ID].to_bytes()
