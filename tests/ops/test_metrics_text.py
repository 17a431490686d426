"""The Prometheus text and the per-minute rates, computed from numbers alone."""

from __future__ import annotations

from typing import Any

import pytest
from support.exposition import parse_exposition

from workers.index.keys import RATE_KINDS
from workers.ops.metrics import render_prometheus
from workers.ops.stats import window_rates

pytestmark = pytest.mark.unit


def test_window_rates_weigh_the_oldest_minute_by_its_share_inside() -> None:
    now = 1000 * 60 + 30  # half way through minute 1000
    buckets = {
        1000: {"published": 30},
        999: {"published": 50, "exact": 10},
        995: {"near": 60},
        985: {"published": 54, "dead": 6},
        984: {"published": 600},  # outside every window
    }
    one = window_rates(buckets, now, 1)
    assert one["seen"] == pytest.approx((30 + 30) / 60)  # minute 999 half inside
    assert one["published"] == pytest.approx((30 + 25) / 60)
    assert one["exact"] == pytest.approx(5 / 60)
    assert window_rates(buckets, now, 5)["seen"] == pytest.approx((30 + 60 + 30) / 300)
    fifteen = window_rates(buckets, now, 15)
    assert fifteen["seen"] == pytest.approx((30 + 60 + 60 + 30) / 900)
    assert fifteen["dead"] == pytest.approx(3 / 900)
    assert window_rates({}, now, 15) == dict.fromkeys(RATE_KINDS, 0.0)


def test_prometheus_escaping_and_unknown_lag() -> None:
    stats: dict[str, Any] = {
        "sources": {},
        "dead_reasons": {'a"b\\c\nd': 2},
        "streams": {"docs": 1},
        "consumer_groups": {"docs": [{"name": "g", "consumers": 0, "pending": 0, "lag": None}]},
        "index": {"documents": 0},
        "redis": {"used_memory": 1, "maxmemory": 0},
        "feeds": {"total": 0, "failing": 0},
    }
    text = render_prometheus(stats)
    assert 'newsdedup_dead_by_reason_total{reason="a\\"b\\\\c\\nd"} 2\n' in text
    families = parse_exposition(text)
    assert families["newsdedup_dead_by_reason_total"]["samples"] == [({"reason": 'a"b\\c\nd'}, 2)]
    assert families["newsdedup_consumer_group_lag"]["samples"] == []  # unknown: omitted
    assert families["newsdedup_consumer_group_pending"]["samples"] == [
        ({"stream": "docs", "group": "g"}, 0)
    ]
    down = parse_exposition(render_prometheus(None, error="ConnectionError: refused\nsecond"))
    assert list(down) == ["newsdedup_up"]
    assert down["newsdedup_up"]["samples"] == [({}, 0)]
