#!/usr/bin/env bash
# Prepare a development checkout: create .venv in the repository root, install the project
# with its test and benchmark extras, and fetch the Kafka broker jars into the launcher's cache.
#
# Safe to run repeatedly: pip runs only when pyproject.toml or the Python version changed
# since the last successful install (tracked in .venv/.install-stamp), and the launcher
# skips mvn when the jars are cached.
#
# Environment: PYTHON (interpreter for a new .venv, default python3, must be 3.11+),
# DRLHF_KAFKA_HOME (jar cache, default ~/.cache/dynamic-rlhf/kafka).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

venv="$repo/.venv"
stamp="$venv/.install-stamp"

if [ ! -x "$venv/bin/python" ]; then
    python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "setup.sh: $python is $("$python" --version 2>&1); dynamic-rlhf needs Python 3.11 or newer (set PYTHON)" >&2
        exit 1
    fi
    echo "setup.sh: creating $venv"
    "$python" -m venv "$venv"
fi

wanted=$( (cat pyproject.toml; "$venv/bin/python" --version) | sha256sum | cut -d' ' -f1)
installed=$(cat "$stamp" 2>/dev/null || true)

# The stamp alone is not proof: a venv copied from elsewhere may lack the package.
if [ "$wanted" != "$installed" ] || ! "$venv/bin/python" -c 'import importlib.metadata as m; m.version("dynamic-rlhf")' 2>/dev/null; then
    echo "setup.sh: installing dynamic-rlhf with test and benchmark extras into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
    echo "$wanted" > "$stamp"
fi

"$venv/bin/python" deploy/local-kafka/kafka-local install > /dev/null
echo "setup.sh: ready ($venv, Kafka jars in $("$venv/bin/python" deploy/local-kafka/kafka-local install))"
