"""The fraud rules (gongji.fraud.rules over gongji.fraud.domain), table-driven and worked by hand:
each rule fires at its configured threshold and not below, once per subject and window, and counts
distinct ids; both modules are pure."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from gongji.settings import Settings
from gongji.fraud_settings import FraudSettings
from gongji.fraud.domain import (ClaimFiled, ClaimRefused, InstitutionActivity, MemoryBuckets, VisitReversed,
                                 VisitSettled, day_of, signal_id, week_of, year_of)
from gongji.fraud.rules import detect, on_visit

BASE = datetime.fromisoformat("2023-03-06T00:00:00+08:00")  # a Monday


def t(day: int = 0, hour: float = 9) -> datetime:
    return BASE + timedelta(days=day, hours=hour)


def visit(cid, psn="P", inst="H1", when=None, fen=12000, part=4000, region="152501"):
    return VisitSettled(cid, psn, inst, "152501", region, when or t(), fen, part)


def run(events, **config):
    return detect(FraudSettings(**config), MemoryBuckets(), events).signals


def rules(signals):
    return sorted((s.rule_id, s.subject_id) for s in signals)


# ------------------------------------------------------------------ windows
def test_windows_are_shanghai_day_iso_week_and_year():
    late = datetime.fromisoformat("2023-03-08T16:30:00+00:00")  # 00:30 on Thursday 9 March in Shanghai
    assert day_of(late).start.isoformat() == "2023-03-09T00:00:00+08:00"
    assert week_of(late).start.isoformat() == "2023-03-06T00:00:00+08:00"
    assert week_of(late).end.isoformat() == "2023-03-13T00:00:00+08:00"
    assert year_of(datetime.fromisoformat("2022-12-31T17:00:00+00:00")).start.year == 2023


# ------------------------------------------------------------------ each rule at its threshold
CASES = [
    # (name, events, config, expected signals)
    ("3 visits a day is the limit", [visit(f"c{i}", when=t(0, 8 + i)) for i in range(3)], {}, []),
    ("4 visits a day", [visit(f"c{i}", when=t(0, 8 + i)) for i in range(4)], {}, [("VISITS_PER_DAY", "P")]),
    ("4 visits over two days", [visit(f"c{i}", when=t(i % 2, 8 + i)) for i in range(4)], {}, []),
    ("configured: 2 a day", [visit(f"c{i}", when=t(0, 8 + i)) for i in range(3)], {"visits_per_day": 2},
     [("VISITS_PER_DAY", "P")]),
    ("11 visits in a week, 2 a day", [visit(f"c{i}", when=t(i // 2, 8 + i % 2)) for i in range(11)], {},
     [("VISITS_PER_WEEK", "P")]),
    ("11 visits across two weeks", [visit(f"c{i}", when=t(i // 2 + 3, 8 + i % 2)) for i in range(11)], {}, []),
    ("4 institutions a day", [visit(f"c{i}", inst=f"H{i}", when=t(0, 8 + i)) for i in range(4)],
     {"visits_per_day": 9}, [("SHOPPING", "P")]),
    ("3 institutions a day", [visit(f"c{i}", inst=f"H{i}", when=t(0, 8 + i)) for i in range(3)], {}, []),
    ("two regions 2 h apart", [visit("a", when=t(0, 9)), visit("b", when=t(0, 11), region="990100")], {},
     [("IMPOSSIBLE_TRAVEL", "P")]),
    ("two regions 3 h apart", [visit("a", when=t(0, 9)), visit("b", when=t(0, 12), region="990100")], {}, []),
    ("one region 1 h apart", [visit("a", when=t(0, 9)), visit("b", when=t(0, 10))], {}, []),
    ("4 small claims at one institution", [visit(f"c{i}", fen=5000, when=t(0, 8 + i)) for i in range(4)],
     {"visits_per_day": 9}, [("SPLIT_BILLING", "P")]),
    ("4 claims, one of 50.01", [visit(f"c{i}", fen=5000 + (i == 0), when=t(0, 8 + i)) for i in range(4)],
     {"visits_per_day": 9}, []),
    ("small claims at two institutions", [visit(f"c{i}", inst=f"H{i % 2}", fen=100, when=t(0, 8 + i))
                                          for i in range(4)], {"visits_per_day": 9}, []),
    ("refused NOT_INSURED", [ClaimFiled("n", "P", "H1", t(), ()), ClaimRefused("n", "P", "NOT_INSURED")], {},
     [("SUSPENDED_BENEFITS", "P")]),
    ("refused for another reason", [ClaimFiled("n", "P", "H1", t(), ()), ClaimRefused("n", "P", "INVALID_CLAIM")],
     {}, []),
    ("refused NO_POLICY: insured, but no policy here", [ClaimFiled("n", "P", "H1", t(), ()),
                                                         ClaimRefused("n", "P", "NO_POLICY")], {}, []),
    ("a refusal waits for its claim", [ClaimRefused("n", "P", "NOT_INSURED"), ClaimFiled("n", "P", "H1", t(), ())],
     {}, [("SUSPENDED_BENEFITS", "P")]),
    ("burden 20000.01 in a year", [visit("a", part=1_000_000), visit("b", when=t(40), part=1_000_001)], {},
     [("HIGH_EXPENSE", "P")]),
    ("burden 20000.00 in a year", [visit("a", part=1_000_000), visit("b", when=t(40), part=1_000_000)], {}, []),
    ("burden across two years", [visit("a", part=1_500_000),
                                 visit("b", when=datetime.fromisoformat("2024-01-02T09:00:00+08:00"),
                                       part=1_500_000)], {}, []),
    ("a reversal nets the burden", [visit("a", part=1_500_000),
                                    VisitReversed("r", "a", "P", "H1", "152501", t(1), t(), -1_500_000),
                                    visit("b", when=t(2), part=1_500_000)], {}, []),
]


@pytest.mark.parametrize("events, config, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_rule(events, config, expected):
    assert rules(run(events, **config)) == sorted(expected)


# ------------------------------------------------------------------ early refill
def drugs(cid, when, cnt="30", code="XA01"):
    return [ClaimFiled(cid, "P", "P1", when, ((code, Decimal(cnt)),)), visit(cid, inst="P1", when=when)]


@pytest.mark.parametrize("second_day, days_per_unit, expected", [
    (10, "1", True),     # 30 days' supply, again after 10: early
    (23, "1", True),     # 80% of 30 days is 24: day 23 still early
    (24, "1", False),    # day 24: on time
    (24, "2", True),     # 2 days per unit: 60 days' supply
])
def test_early_refill(second_day, days_per_unit, expected):
    events = drugs("r1", t(0)) + drugs("r2", t(second_day))
    signals = run(events, refill_days_per_unit=Decimal(days_per_unit))
    assert rules(signals) == ([("EARLY_REFILL", "P")] if expected else [])
    if expected:
        assert signals[0].claim_ids == ("r1", "r2") and signals[0].window == day_of(t(second_day))


def test_early_refill_joins_in_either_order_and_ignores_other_drugs_and_reversed_supplies():
    claim1, settled1 = drugs("r1", t(0))
    claim2, settled2 = drugs("r2", t(5))
    assert rules(run([settled1, claim1, settled2, claim2])) == [("EARLY_REFILL", "P")]
    assert run([claim1, settled1] + drugs("r2", t(5), code="XB02")) == []
    reversed_ = VisitReversed("rv", "r1", "P", "P1", "152501", t(1), t(0), -4000)
    assert run([claim1, settled1, reversed_, claim2, settled2]) == []
    assert run([claim1, claim2, settled2]) == []  # r1 never settled (refused): nothing dispensed


def interleavings(claims: list, settlements: list):
    """Every order in which one consumer can read two topics: each topic in its own order."""
    if not claims or not settlements:
        yield claims + settlements
        return
    for rest in interleavings(claims[1:], settlements):
        yield [claims[0]] + rest
    for rest in interleavings(claims, settlements[1:]):
        yield [settlements[0]] + rest


def refill_signals(events, buckets=None, **config):
    return sorted((s.rule_id, s.window.start, s.signal_id, s.claim_ids) for s in
                  detect(FraudSettings(**config), buckets if buckets is not None else MemoryBuckets(), events).signals
                  if s.rule_id == "EARLY_REFILL")


@pytest.mark.parametrize("reversal_day", [None, 3, 7])
def test_early_refill_is_the_same_in_any_read_order_and_a_resend_of_anything_raises_nothing(reversal_day):
    """Claims and their results come on two topics: whichever is read first, the signal is the same
    (window: the early dispensing's day); then resending any of the events, in any order, after any
    of them were forgotten as old joined claims, raises nothing new."""
    claim1, settled1 = drugs("r1", t(0))
    claim2, settled2 = drugs("r2", t(5))
    # On time (r2 stocked up to day 60); its claim's arrival forgets r1 and r2 from `claims` as joined.
    claim3, settled3 = drugs("r3", t(60))
    results = [settled1, settled2, settled3]
    if reversal_day is not None:  # r1 taken back before (day 3) or after (day 7) r2 was dispensed
        results.insert(1 if reversal_day < 5 else 2,
                       VisitReversed("rv", "r1", "P", "P1", "152501", t(reversal_day), t(0), -4000))
    expected = [] if reversal_day == 3 else [("EARLY_REFILL", day_of(t(5)).start, signal_id(
        "EARLY_REFILL", "P", day_of(t(5)).start), ("r1", "r2"))]
    orders = list(interleavings([claim1, claim2, claim3], results))
    assert len(orders) == (20 if reversal_day is None else 35)
    for order in orders:
        buckets = MemoryBuckets()
        assert refill_signals(order, buckets) == expected, order
        for resend in (order, order[: len(order) // 2], list(reversed(order)), [claim1, settled1, settled2]):
            assert refill_signals(resend, buckets) == [], (order, resend)


def test_a_late_older_dispensing_raises_the_later_one_in_its_own_day():
    claim1, settled1 = drugs("r1", t(0))
    claim2, settled2 = drugs("r2", t(5))
    buckets = MemoryBuckets()
    assert refill_signals([claim2, settled2], buckets) == []
    (signal,) = refill_signals([claim1, settled1], buckets)
    assert signal[1] == day_of(t(5)).start and signal[3] == ("r1", "r2")


# ------------------------------------------------------------------ institution spike
def activity(cid, day, kind="settlement"):
    return InstitutionActivity("H1", "152501", cid, kind, t(day, 10))


def spike(events, **config):
    from gongji.fraud.rules import on_activity

    from gongji.fraud.rules import close

    cfg, buckets = FraudSettings(**config), MemoryBuckets()
    signals = [s for event in events for s in on_activity(cfg, buckets, event)]
    assert signals == []  # a day is judged only once closed
    return close(cfg, buckets, "all", datetime.fromisoformat("2099-01-01T00:00:00+08:00"))


def test_institution_spike_against_its_own_trailing_average():
    baseline = [activity(f"b{d}-{i}", d) for d in range(7) for i in range(10)]  # 10 a day for 7 days
    # Day 7: 30 is not above 3 × 10; 31 is.
    assert spike(baseline + [activity(f"k{i}", 7) for i in range(30)]) == []
    signals = spike(baseline + [activity(f"k{i}", 7) for i in range(40)])
    assert [(s.rule_id, s.subject_type, s.subject_id, s.count, s.window) for s in signals] == \
        [("INSTITUTION_SPIKE", "institution", "H1", 40, day_of(t(7)))]  # the whole day, judged once complete
    # No baseline, no signal; and the minimum volume holds however small the baseline.
    assert spike([activity(f"k{i}", 7) for i in range(100)]) == []
    assert spike([activity("b", 0)] + [activity(f"k{i}", 7) for i in range(19)]) == []
    assert len(spike([activity("b", 0)] + [activity(f"k{i}", 7) for i in range(20)])) == 1
    # Reversals jump too.
    assert len(spike([activity("b", 0)] + [activity(f"r{i}", 7, "reversal") for i in range(5)])) == 1
    # A redelivered activity counts once.
    assert spike([activity("b", 0)] + [activity("k", 7)] * 40) == []


# ------------------------------------------------------------------ once per window, distinct by id
def test_once_per_rule_subject_and_window():
    day1 = [visit(f"a{i}", when=t(0, 8 + i)) for i in range(8)]
    day2 = [visit(f"b{i}", when=t(1, 8 + i)) for i in range(4)]
    signals = run(day1 + day2, visits_per_week=100)
    assert [(s.rule_id, s.window.start) for s in signals] == [("VISITS_PER_DAY", day_of(t(0)).start),
                                                               ("VISITS_PER_DAY", day_of(t(1)).start)]
    assert signals[0].count == 4 and signals[0].claim_ids == ("a0", "a1", "a2", "a3")


def test_redelivery_counts_nothing_twice_and_raises_nothing_again():
    cfg, buckets = FraudSettings(), MemoryBuckets()
    three = [visit(f"c{i}", when=t(0, 8 + i)) for i in range(3)]
    assert detect(cfg, buckets, three + three + three).signals == []  # 3 distinct ids, not 9 visits
    first = detect(cfg, buckets, [visit("c3", when=t(0, 12))]).signals
    assert rules(first) == [("VISITS_PER_DAY", "P")]
    assert detect(cfg, buckets, three + [visit("c3", when=t(0, 12))]).signals == []
    # Only a visit new to the person is passed on to its institution.
    assert on_visit(cfg, buckets, visit("c3", when=t(0, 12))).forward == []
    again = on_visit(cfg, buckets, visit("c4", when=t(0, 13)))
    assert again.signals == [] and again.forward == [InstitutionActivity("H1", "152501", "c4", "settlement", t(0, 13))]


def test_signal_id_is_from_rule_subject_and_window_start():
    a = run([visit(f"c{i}", when=t(0, 8 + i)) for i in range(4)])[0]
    b = run([visit(f"d{i}", when=t(0, 12 + i)) for i in range(5)])[0]
    assert a.signal_id == b.signal_id == signal_id("VISITS_PER_DAY", "P", day_of(t(0)).start)
    assert a.signal_id != run([visit(f"c{i}", psn="Q", when=t(0, 8 + i)) for i in range(4)])[0].signal_id


def test_high_expense_is_relief_review_not_fraud():
    (signal,) = run([visit("a", part=1_200_000), visit("b", when=t(3), part=900_000)])
    record = signal.to_wire("2023-03-09T10:00:00+08:00")
    assert (record["rule_id"], record["category"], record["amount"]) == ("HIGH_EXPENSE", "relief_review",
                                                                         Decimal("21000.00"))
    assert record["window_start"] == "2023-01-01T00:00:00+08:00"
    assert record["window_end"] == "2024-01-01T00:00:00+08:00"
    assert record["claim_ids"] == ["a", "b"] and record["threshold"] == "> 20000.00 yuan"


def test_thresholds_come_from_settings_and_the_environment(monkeypatch):
    monkeypatch.setenv("GONGJI_FRAUD__VISITS_PER_DAY", "1")
    monkeypatch.setenv("GONGJI_FRAUD__HIGH_EXPENSE_AMOUNT", "100.00")
    config = Settings().fraud
    assert (config.visits_per_day, config.high_expense_amount) == (1, Decimal("100.00"))
    signals = detect(config, MemoryBuckets(), [visit("a", part=9000), visit("b", when=t(0, 10), part=2000)]).signals
    assert rules(signals) == [("HIGH_EXPENSE", "P"), ("VISITS_PER_DAY", "P")]


def test_signal_encodes_with_the_fraud_signal_schema():
    from gongji.common.avro import SchemaCatalog

    catalog = SchemaCatalog()
    for signal in run([visit("a", when=t(0, 9)), visit("b", when=t(0, 10), region="990100")]):
        record = signal.to_wire("2023-03-06T10:00:01+08:00")
        assert catalog.decode(catalog.encode("FraudSignal", record)) == ("FraudSignal", record)


def test_a_visit_read_late_meets_the_visits_around_it_and_a_resend_raises_nothing():
    """Visits are kept by event time, not relative to the newest read: K (10:30), read after N
    (13:00), still meets A (09:00 in another region); resending all three raises nothing."""
    cfg, buckets = FraudSettings(), MemoryBuckets()
    a, n, k = visit("a", when=t(0, 9), region="990100"), visit("n", when=t(0, 13)), visit("k", when=t(0, 10.5))
    (signal,) = detect(cfg, buckets, [a, n, k]).signals
    assert (signal.rule_id, signal.claim_ids) == ("IMPOSSIBLE_TRAVEL", ("a", "k"))
    assert detect(cfg, buckets, [a, n, k]).signals == []


def _runtime_imports(path) -> set[str]:
    """The modules a file imports when it runs (`if TYPE_CHECKING:` blocks left out)."""
    import ast

    tree = ast.parse(path.read_text())
    hints = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
             and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
             for inner in block.body for node in ast.walk(inner)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", ["domain", "rules", "spike", "relief"])
def test_the_fraud_domain_and_rules_do_no_io(module):
    """Pure: no faust, no client, no settings (the thresholds come in as an argument, hinted only)."""
    from pathlib import Path

    import gongji.fraud

    imported = _runtime_imports(Path(gongji.fraud.__file__).parent / f"{module}.py")
    allowed = {"__future__", "copy", "hashlib", "collections.abc", "dataclasses", "datetime", "decimal", "functools",
               "typing", "gongji.common.money", "gongji.common.burden", "gongji.contract.wire", "gongji.fraud.domain",
               "gongji.fraud.spike", "gongji.fraud.relief"}
    assert imported <= allowed, imported - allowed


def test_importing_the_fraud_rules_loads_no_client_and_no_settings():
    import subprocess
    import sys

    probe = ("import sys, gongji.fraud.rules; print(' '.join(sorted(m for m in sys.modules "
             "if m.split('.')[0] in {'faust', 'mode', 'aiokafka', 'redis', 'psycopg', 'pydantic'} "
             "or m.startswith('gongji.'))))")
    loaded = set(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                text=True).stdout.split())
    assert loaded == {"gongji.common", "gongji.common.burden", "gongji.common.money", "gongji.contract",
                      "gongji.contract.wire", "gongji.fraud", "gongji.fraud.domain", "gongji.fraud.relief",
                      "gongji.fraud.rules", "gongji.fraud.spike"}, loaded


def test_fraud_s_own_failures_share_one_root_and_keep_their_builtin_kind():
    from gongji.fraud.domain import FraudError, NotAFraudEvent, UnreadableEvent, parse_time

    with pytest.raises(UnreadableEvent, match="without an offset") as unread:
        parse_time("2023-03-06T09:00:00")
    with pytest.raises(NotAFraudEvent) as stranger:
        detect(FraudSettings(), MemoryBuckets(), [object()])
    assert isinstance(unread.value, FraudError) and isinstance(unread.value, ValueError)
    assert isinstance(stranger.value, FraudError) and isinstance(stranger.value, TypeError)
