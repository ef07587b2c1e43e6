"""Tests of the worker's Faust sensor: the end-offset gauge follows each change once."""

from __future__ import annotations

from unittest import mock

from faust.sensors.prometheus import FaustMetrics
from faust.types import TP
from prometheus_client import CollectorRegistry

from service.faust_sensor import EndOffsetOncePerChange


def test_end_offset_gauge_set_once_per_change() -> None:
    registry = CollectorRegistry()
    monitor = EndOffsetOncePerChange(metrics=FaustMetrics.create(registry, "faust"))
    tp = TP("drlhf.preferences", 0)
    labels = {"topic": "drlhf.preferences", "partition": "0"}

    with mock.patch.object(monitor._metrics.topic_partition_end_offset, "labels",
                           wraps=monitor._metrics.topic_partition_end_offset.labels) as labels_call:
        for offset in (5, 5, 5, 9, 9):
            monitor.track_tp_end_offset(tp, offset)

    assert registry.get_sample_value("faust_topic_partition_end_offset", labels) == 9
    assert monitor.tp_end_offsets[tp] == 9
    assert labels_call.call_count == 2
