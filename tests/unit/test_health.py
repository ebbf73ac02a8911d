"""/healthz: 200 while the loop turns and its batches go through; 503 once it stops polling, or
once every batch has been failing for as long (its database or Redis is gone)."""

from __future__ import annotations


import pytest
from tests.health_probe import health

from gongji.common.observe import Metrics, serve
from gongji.local.processes import free_port

pytestmark = pytest.mark.unit


def test_health_follows_polls_and_failing_batches():
    metrics, port = Metrics("ledger"), free_port()
    server = serve(metrics, "127.0.0.1", port, stale_after=30)
    try:
        assert health(port)[0] == 200
        metrics.batch_failed()
        metrics.failing_since -= 10  # failing for 10 s: an outage being retried, not yet unhealthy
        assert health(port)[0] == 200
        metrics.failing_since -= 25  # 35 s of nothing but failures
        status, body = health(port)
        assert status == 503 and body["seconds_failing"] >= 35 and not body["healthy"]
        metrics.batch_done()
        assert health(port)[0] == 200
        assert metrics.registry.get_sample_value("gongji_healthy") == 1
        metrics.last_poll -= 31  # the loop stopped turning
        assert health(port)[0] == 503
        assert metrics.registry.get_sample_value("gongji_healthy") == 0  # what the stalled alert reads
    finally:
        server.shutdown()


def test_input_waiting_without_progress_is_a_stall_and_catching_up_is_not():
    metrics, port = Metrics("fraud"), free_port()
    server = serve(metrics, "127.0.0.1", port, stale_after=5)
    try:
        metrics.lag.labels("settlements", "0").set(12)
        metrics.last_progress -= 4
        assert health(port)[0] == 200  # behind, but a batch went through 4 s ago
        metrics.last_progress -= 2  # 6 s without a batch while 12 messages wait: stalled
        status, body = health(port)
        assert status == 503 and body["behind"] == 12 and body["seconds_since_progress"] >= 6
        metrics.lag.labels("settlements", "0").set(0)
        assert health(port)[0] == 200  # nothing waiting: idle is not stalled
        metrics.lag.labels("settlements", "0").set(3)
        metrics.batch_done()
        assert health(port)[0] == 200
        metrics.last_progress -= 6
        metrics.idle()  # a poll that found nothing: caught up
        assert health(port)[0] == 200
    finally:
        server.shutdown()


def test_a_batch_in_hand_for_too_long_is_a_stall():
    metrics, port = Metrics("fraud"), free_port()
    server = serve(metrics, "127.0.0.1", port, stale_after=5)
    try:
        metrics.batch_started("persons")
        metrics.batch_started("institutions")
        metrics.busy["persons"] -= 6  # one agent's batch hangs; the other's goes through
        metrics.batch_done("institutions")
        status, body = health(port)
        assert status == 503 and body["seconds_in_batch"] >= 6
        metrics.batch_done("persons")
        assert health(port)[0] == 200
    finally:
        server.shutdown()
