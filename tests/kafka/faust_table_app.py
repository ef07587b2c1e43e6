"""Faust app with one table and one agent, run as a subprocess by test_faust_compat.py.

Configured by environment: FAUST_TEST_BROKER (bootstrap), FAUST_TEST_APP_ID,
FAUST_TEST_TOPIC, FAUST_TEST_GUARANTEE, FAUST_TEST_EXPECTED (event count) and
FAUST_TEST_DATADIR and FAUST_TEST_RESULT. After the expected number of events it waits
for the offset and transaction commits, writes the table as JSON to FAUST_TEST_RESULT and
exits. (A file, because the Faust worker redirects stdout into its log.)
"""

from __future__ import annotations

import asyncio
import json
import os

import faust

EXPECTED = int(os.environ["FAUST_TEST_EXPECTED"])
KEYS = ("a", "b", "c", "d")
COMMIT_INTERVAL_S = 0.5
SETTLE_S = 3.0

app = faust.App(
    os.environ["FAUST_TEST_APP_ID"],
    broker=f"kafka://{os.environ['FAUST_TEST_BROKER']}",
    store="memory://",
    datadir=os.environ["FAUST_TEST_DATADIR"],
    web_enabled=False,
    web_host="127.0.0.1",
    web_port=int(os.environ["FAUST_TEST_WEB_PORT"]),
    topic_partitions=2,
    processing_guarantee=os.environ["FAUST_TEST_GUARANTEE"],
    broker_commit_interval=COMMIT_INTERVAL_S,
)
events = app.topic(os.environ["FAUST_TEST_TOPIC"], key_type=str, value_type=str, partitions=2)
counts = app.Table("counts", default=int, partitions=2)
processed = {"events": 0}


def _report_and_exit() -> None:
    with open(os.environ["FAUST_TEST_RESULT"], "w") as result:
        json.dump({key: counts[key] for key in KEYS}, result)
    os._exit(0)


@app.agent(events)
async def count_keys(stream: faust.StreamT) -> None:
    async for key, _value in stream.items():
        counts[key] += 1
        processed["events"] += 1
        if processed["events"] == EXPECTED:
            asyncio.get_running_loop().call_later(SETTLE_S, _report_and_exit)


if __name__ == "__main__":
    app.main()
