"""Issue 14's figure: fraud signals per rule from a shuffled, partition-skewed replay of a stream
against the same stream read in settlement-time order (the goal: identical sets).

    .venv/bin/python tests/fraud_replay.py [--claims 3600] [--seed 14]

The stream (pure, no broker): ~3,600 visits of 400 persons at 30 institutions over 14 days, with
planted cases for each rule (travel pairs, early refills, reversals read before and after what they
reverse, an institution day of 22 on a baseline of 8, one of 40, a relief-review burden taken back),
and resends. Two readings:
- `detect`: one reader, all events in one order (time order, or shuffled within what the
  partitions allow and skewed across them);
- `service`: the service's model: six settlements/claims partitions drained at different speeds,
  the person side's watermark per partition passed with the activity to an institution side on six
  partitions, days closed when the oldest watermark has passed the day's end plus the lateness.
Signals are counted raised less withdrawn, by signal_id (a reader's final view); the end of the
stream closes every day. It runs against whatever `gongji.fraud` is on the path (the `service`
reading needs issue 14's fraud.spike)."""

from __future__ import annotations

import argparse
import random
import zlib
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

from gongji.fraud import rules
from gongji.fraud.domain import ClaimFiled, MemoryBuckets, VisitReversed, VisitSettled
from gongji.fraud_settings import FraudSettings

DAY0 = datetime.fromisoformat("2023-03-06T00:00:00+08:00")
PARTITIONS = 6
HOME, AWAY = "152501", "990100"


def stream(claims: int, seed: int) -> list:
    """The events in settlement-time order (a claim just before its result)."""
    rng = random.Random(seed)
    events: list = []

    def visit(cid, psn, inst, when, region=HOME, part=4000, drugs=None):
        if drugs:
            events.append(ClaimFiled(cid, psn, inst, when, drugs))
        settled = VisitSettled(cid, psn, inst, HOME, region, when, 12000, part)
        events.append(settled)
        return settled

    def reverse(settled, after):
        events.append(VisitReversed(f"R{settled.claim_id}", settled.claim_id, settled.psn_no, settled.fixmedins_code,
                                    settled.mdtrtarea_admvs, settled.setl_time + after, settled.setl_time,
                                    -settled.psn_part_fen))

    for n in range(claims):
        when = DAY0 + timedelta(days=rng.randrange(14), hours=rng.uniform(7, 20))
        settled = visit(f"C{n}", f"P{rng.randrange(400)}", f"H{rng.randrange(30)}", when,
                        drugs=(("XA01", Decimal(rng.choice((3, 7, 14)))),) if rng.random() < 0.05 else None)
        if rng.random() < 0.04:
            reverse(settled, timedelta(hours=rng.uniform(1, 72)))
    for n in range(17):  # IMPOSSIBLE_TRAVEL: 04:10 away, 06:15 at home, 09:30 at home
        day = DAY0 + timedelta(days=rng.randrange(1, 13))
        for k, (hour, region) in enumerate(((4 + 1 / 6, AWAY), (6.25, HOME), (9.5, HOME))):
            visit(f"T{n}-{k}", f"TRAVEL{n}", "H1", day + timedelta(hours=hour), region)
    for n in range(20):  # EARLY_REFILL: 30 days on day 0, again on day 5; some reversed on day 3 or 7
        first = visit(f"F{n}-1", f"REFILL{n}", "H2", DAY0 + timedelta(hours=10), drugs=(("XB02", Decimal(30)),))
        visit(f"F{n}-2", f"REFILL{n}", "H2", DAY0 + timedelta(days=5, hours=10), drugs=(("XB02", Decimal(30)),))
        if n % 3 == 0:
            reverse(first, timedelta(days=3))
        elif n % 3 == 1:
            reverse(first, timedelta(days=7))
    for code, peak in (("HSPIKE22", 22), ("HSPIKE40", 40)):  # INSTITUTION_SPIKE: 8 a day, then the peak
        for day in range(7):
            for k in range(8):
                visit(f"{code}-{day}-{k}", f"B{code}{day}{k}", code, DAY0 + timedelta(days=day, hours=8 + k))
        for k in range(peak):
            visit(f"{code}-7-{k}", f"K{code}{k}", code, DAY0 + timedelta(days=7, hours=8, minutes=10 * k))
    for n in range(10):  # HIGH_EXPENSE: 25 000 yuan; half of them reversed
        big = visit(f"E{n}", f"HIGH{n}", "H3", DAY0 + timedelta(days=n), part=2_500_000)
        if n % 2:
            reverse(big, timedelta(days=1))
    claimed = {e.claim_id: e.setl_time for e in events if isinstance(e, ClaimFiled)}
    rank = {ClaimFiled: 0, VisitSettled: 1, VisitReversed: 2}
    return sorted(events, key=lambda e: (e.setl_time if not isinstance(e, ClaimFiled) else claimed[e.claim_id],
                                         rank[type(e)], e.claim_id))


def place(event) -> tuple[str, int]:
    return ("claims" if isinstance(event, ClaimFiled) else "settlements",
            zlib.crc32(event.psn_no.encode()) % PARTITIONS)


def skewed(events: list, seed: int) -> list:
    """The events as a backlog drains: each partition in its own order (5% resent or delayed by up
    to two days of traffic), the partitions read at speeds from 1 to 6."""
    rng = random.Random(seed + 1)
    queues: dict[tuple, list] = {}
    for event in events:
        queues.setdefault(place(event), []).append(event)
    for queue in queues.values():
        for _ in range(len(queue) // 20):
            i = rng.randrange(len(queue))
            queue.insert(min(len(queue), i + rng.randrange(1, 400)), queue[i])  # resent later
            j = rng.randrange(len(queue))
            queue.insert(min(len(queue), j + rng.randrange(1, 400)), queue.pop(j))  # delayed
    speed = {key: 1 + (key[1] + (key[0] == "claims") * 3) % PARTITIONS for key in queues}
    out = []
    while queues:
        key = rng.choices(list(queues), weights=[speed[k] for k in queues])[0]
        out.append(queues[key].pop(0))
        if not queues[key]:
            del queues[key]
    return out


def final(signals) -> tuple[Counter, set, int]:
    view: dict[str, str] = {}
    withdrawn = 0
    for signal in signals:
        if getattr(signal, "status", "raised") == "withdrawn":
            withdrawn += 1
            view.pop(signal.signal_id, None)
        else:
            view[signal.signal_id] = signal.rule_id
    return Counter(view.values()), set(view), withdrawn


def service_model(config: FraudSettings, events: list) -> list:
    """The service's two sides (see gongji.fraud.service), each event read in the given order:
    the person side in batches of 50, its watermarks sent after each batch's activity; the institution
    side reading its six partitions in order, closing days after each batch."""
    from gongji.fraud import spike

    person, institution, signals = MemoryBuckets(), MemoryBuckets(), []
    marks: dict[str, datetime] = {}
    ledgers = [str(p) for p in range(PARTITIONS)]
    for start in range(0, len(events), 50):
        forward = []
        for event in events[start:start + 50]:
            step = {VisitSettled: rules.on_visit, ClaimFiled: rules.on_claim,
                    VisitReversed: rules.on_reversal}[type(event)](config, person, event)
            signals += step.signals
            forward += step.forward
            if not isinstance(event, ClaimFiled):
                key = str(place(event)[1])
                marks[key] = max(marks.get(key, event.setl_time), event.setl_time)
        for activity in forward:
            ledger = str(zlib.crc32(activity.fixmedins_code.encode()) % PARTITIONS)
            signals += rules.on_activity(config, institution, activity, ledger)
        watermark = spike.watermark(marks, ledgers, set())
        for ledger in ledgers:
            if watermark is not None:
                signals += rules.close(config, institution, ledger, watermark)
    for ledger in ledgers:  # the end of the stream
        signals += rules.close(config, institution, ledger, rules.END_OF_STREAM)
    return signals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=3600)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    config = FraudSettings()
    ordered = stream(args.claims, args.seed)
    replay = skewed(ordered, args.seed)
    readings = {"time order": lambda: rules.detect(config, MemoryBuckets(), ordered).signals,
                "skewed (detect)": lambda: rules.detect(config, MemoryBuckets(), replay).signals}
    if hasattr(rules, "close"):
        readings["skewed (service)"] = lambda: service_model(config, replay)
    results = {name: final(run()) for name, run in readings.items()}
    print(f"{len(ordered)} events ({sum(isinstance(e, VisitSettled) for e in ordered)} visits); replay of "
          f"{len(replay)} (resends and delays, {PARTITIONS} partitions at speeds 1..6)")
    names = list(results)
    print(f"{'rule':<20}" + "".join(f"{name:>18}" for name in names))
    for rule in sorted(set().union(*(counts for counts, _, _ in results.values()))):
        print(f"{rule:<20}" + "".join(f"{results[name][0][rule]:>18}" for name in names))
    print(f"{'withdrawals sent':<20}" + "".join(f"{results[name][2]:>18}" for name in names))
    base = results["time order"][1]
    for name in names[1:]:
        ids = results[name][1]
        print(f"{name}: {'identical set of signal_ids' if ids == base else 'DIFFERENT'} "
              f"({len(ids - base)} extra, {len(base - ids)} missing)")


if __name__ == "__main__":
    main()
