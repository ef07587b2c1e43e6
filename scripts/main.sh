#!/usr/bin/env bash
# Run the whole pipeline on this machine. The script installs the project, starts a local
# Kafka broker and one worker, and streams the HH-RLHF feedback file through the worker (a
# synthetic stream when the file is absent). It prints the results and leaves the worker
# serving /metrics.
#
# Environment: DRLHF_WEB_PORT (default 6066), DRLHF_HH_RLHF_PATH (feedback file),
# DRLHF_RUN_DIR (worker log, pid file and Faust data folder, default ~/.cache/dynamic-rlhf/run), and every
# worker variable in docs/service.md. Safe to run again: it replaces the worker it started
# before and trains a new model id on each run.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

run_dir=${DRLHF_RUN_DIR:-$HOME/.cache/dynamic-rlhf/run}
data=${DRLHF_HH_RLHF_PATH:-$repo/../shared/data/hh-rlhf-harmless-base/test.jsonl.gz}
export DRLHF_WEB_PORT=${DRLHF_WEB_PORT:-6066}
export DRLHF_WEB_HOST=${DRLHF_WEB_HOST:-127.0.0.1}
mkdir -p "$run_dir"

echo "== setup"
bash scripts/setup.sh
cli="$repo/.venv/bin/dynamic-rlhf"

echo "== local Kafka broker"
bootstrap=$(deploy/local-kafka/kafka-local start | tail -n 1)
export KAFKA_BOOTSTRAP_SERVERS=$bootstrap
echo "broker at $bootstrap"

echo "== worker"
if [[ -f "$run_dir/worker.pid" ]] && kill -0 "$(cat "$run_dir/worker.pid")" 2>/dev/null; then
    old_pid=$(cat "$run_dir/worker.pid")
    echo "stopping the worker of the previous run (pid $old_pid)"
    kill "$old_pid"
    for _ in $(seq 60); do kill -0 "$old_pid" 2>/dev/null || break; sleep 1; done
fi
DRLHF_DATA_DIR="${DRLHF_DATA_DIR:-$run_dir/data}" nohup "$cli" worker >"$run_dir/worker.log" 2>&1 &
echo $! >"$run_dir/worker.pid"
echo "worker pid $(cat "$run_dir/worker.pid"), log $run_dir/worker.log"

run_stamp=$(date -u +%Y%m%d-%H%M%S)
if [[ -f "$data" ]]; then
    model_id="hh-rlhf-$run_stamp"
    echo "== streaming $data as model $model_id"
    "$cli" demo --watch 0 --candidates 0 --timeout 180 --show-records 0 >/dev/null  # waits until the worker is ready
    produce_output=$("$cli" produce "$data" --model-id "$model_id" --no-progress)
    echo "$produce_output"
    produced=$(echo "$produce_output" | sed -n 's/^produced \([0-9]*\) messages.*/\1/p' | head -n 1)
    echo "waiting for the worker to learn the $produced events ..."
    "$cli" demo --watch "${produced:-2312}" --candidates 0 --model-id "$model_id" --timeout 600 --show-records 0
    # Candidate sets go in after learning, so the harvest uses the trained model.
    echo "== harvesting 200 candidate sets built from the same file"
    "$cli" produce "$data" --candidates --limit 200 --model-id "$model_id" --no-progress
    "$cli" demo --watch "${produced:-2312}" --model-id "$model_id" --timeout 600
else
    model_id="synthetic-$run_stamp"
    echo "== $data not found: streaming a synthetic feedback stream as model $model_id"
    "$cli" demo --model-id "$model_id" --events 5000 --candidates 200 --timeout 600
fi

echo
echo "The worker keeps running:"
echo "  metrics:  http://$DRLHF_WEB_HOST:$DRLHF_WEB_PORT/metrics"
echo "  health:   http://$DRLHF_WEB_HOST:$DRLHF_WEB_PORT/health/ready"
echo "  model:    KAFKA_BOOTSTRAP_SERVERS=$bootstrap $cli model show --model-id $model_id"
echo "  stop:     kill \$(cat $run_dir/worker.pid); $repo/deploy/local-kafka/kafka-local stop"
