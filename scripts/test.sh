#!/usr/bin/env bash
# Run the test suite: setup, one Kafka broker shared by every test, pytest, cleanup.
#
# Usage: scripts/test.sh [pytest arguments...]   e.g. scripts/test.sh tests/kafka -x
#
# When KAFKA_BOOTSTRAP_SERVERS is set the tests use that broker. Otherwise this script
# starts a broker with deploy/local-kafka/kafka-local in a fresh temporary state directory,
# so a developer's own broker is never reused or stopped, and stops it on exit. The state
# directory (with the broker log) is kept when pytest fails and removed otherwise.
#
# Exit status: pytest's status, except that 5 ("no tests collected") becomes 1.
# Environment: DRLHF_TEST_TIMEOUT_S (per-test timeout for pytest-timeout, default 900).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash scripts/setup.sh

launcher=(.venv/bin/python deploy/local-kafka/kafka-local)
state_dir=""
status=1

cleanup() {
    if [ -n "$state_dir" ]; then
        "${launcher[@]}" --state-dir "$state_dir" stop > /dev/null || true
        if [ "$status" -eq 0 ]; then
            rm -rf "$state_dir"
        else
            echo "test.sh: broker state and log kept in $state_dir" >&2
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    state_dir=$(mktemp -d "${TMPDIR:-/tmp}/drlhf-test-kafka.XXXXXX")
    started_at=$(date +%s)
    KAFKA_BOOTSTRAP_SERVERS=$("${launcher[@]}" --state-dir "$state_dir" start)
    export KAFKA_BOOTSTRAP_SERVERS
    echo "test.sh: Kafka broker at $KAFKA_BOOTSTRAP_SERVERS (started in $(( $(date +%s) - started_at )) s)"
else
    echo "test.sh: using Kafka broker at $KAFKA_BOOTSTRAP_SERVERS"
fi

set +e
.venv/bin/pytest --timeout="${DRLHF_TEST_TIMEOUT_S:-900}" "$@"
status=$?
set -e

if [ "$status" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; treating that as a failure" >&2
    status=1
fi
exit "$status"
