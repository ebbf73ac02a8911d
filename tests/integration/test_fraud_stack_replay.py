"""Issue 14 on the real stack: the fraud service's final signals from a shuffled, partition-skewed
replay (one partition held back until the others' days were judged without it) are the same set
as from the same stream sent in time order, and as the pure rules read in time order
(tests/fraud_stack_replay.py has the plans and the markers it waits on)."""

from __future__ import annotations

from gongji.fraud import rules
from gongji.fraud.domain import MemoryBuckets
from tests import fraud_replay
from tests.fraud_stack_replay import CONFIG, both, table

PLANTED = {"IMPOSSIBLE_TRAVEL", "EARLY_REFILL", "INSTITUTION_SPIKE", "HIGH_EXPENSE"}


async def test_a_skewed_replay_through_the_service_leaves_the_signals_of_time_order(stack):
    runs = await both(stack, claims=300, seed=14)
    print(table({name: (signals, view) for name, (signals, view, _) in runs.items()}))
    (_, in_order, _), (skewed, in_skew, service) = runs["time order"], runs["skewed"]
    # The replay really was out of order: the held-back partition's activity came after its days
    # were judged, and signals were withdrawn on the way.
    assert service.metrics.registry.get_sample_value("gongji_fraud_late_events_total", {"side": "institution"}) > 0
    assert any(s["status"] == "withdrawn" for s in skewed)
    for rule in PLANTED:
        assert any(r == rule for r, _, _ in in_order.values()), f"no {rule} in time order"
    assert in_skew == in_order, (f"extra {sorted(in_skew.items() - in_order.items())}, "
                                 f"missing {sorted(in_order.items() - in_skew.items())}")
    # And what the pure rules say, read in time order, to the day.
    model = fraud_replay.final(rules.detect(CONFIG, MemoryBuckets(), fraud_replay.stream(300, 14)).signals)[1]
    assert set(in_order) == model, (f"service extra {len(set(in_order) - model)}, missing {len(model - set(in_order))}")
