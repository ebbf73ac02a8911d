"""Issue 14's figure through the real fraud service: tests/fraud_replay.py's stream (planted cases for
every rule) produced to the service's input topics on a running local stack (Tansu, changelog-backed buckets,
the service's own partition watermarks), once in settlement-time order and once shuffled and
partition-skewed (with the planted cases
read out of order: `planted_disorder`) to a second, fresh set of topics; the signals each run leaves on `fraud.signals`,
folded to a reader's final view, per rule.

    .venv/bin/python -m tests.fraud_stack_replay [--claims 300] [--seed 14]

The skewed run: the replay order of fraud_replay.skewed (each partition in its own order, 5% resent
or delayed, partitions read at speeds 1..6), and partition 0 (its claims and results) held back
entirely until the others are consumed and their days judged: the service, `idle_seconds` (1 s)
after start, leaves that silent partition out of its watermark and judges every day without it;
its backlog then comes in late and the days it touches are judged again (raise late, or withdraw).

When is a run done (a positive marker, no waiting for quiet): each phase ends with one settlement
of a person of its own per partition, dated far after the stream (`CLOSE`, at an institution with
no history: it raises nothing). A partition's watermark reaches `CLOSE` only once everything before
it on that partition has been read and its activity acknowledged; so once the institution side's
`clock` of every activity partition has closed at `CLOSE` (or later), every event's rules have run
and every day of the stream has been judged (the clock is saved only after the signals it raised
are acknowledged). Then `fraud.signals` is read until it holds as many records as the service sent
(its gongji_outputs_total plus gongji_fraud_withdrawals_total)."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from datetime import timedelta
from decimal import Decimal

from gongji.common.topic_admin import ensure_topics
from gongji.contract import wire
from gongji.fraud.domain import NO_WINDOW, ClaimFiled, VisitReversed, VisitSettled
from gongji.fraud.service import FraudService
from gongji.fraud_settings import FraudSettings
from gongji.settings import Settings
from tests.fraud_replay import DAY0, PARTITIONS, place, skewed, stream
from tests.integration.support import CATALOG, as_service, collect, producer, settings_for
from tests.integration.test_fraud_service import RECORD, claim, reversal, running, settlement

CLOSE = DAY0 + timedelta(days=40)  # past every day of the stream and its lateness
HELD = 0  # the partition the skewed run holds back
CONFIG = FraudSettings(idle_seconds=1.0)  # otherwise the shipped thresholds the planted cases are made for


def _yuan(fen: int) -> str:
    return f"{Decimal(fen) / 100:.2f}"


def records(events: list) -> list[tuple[str, int, str, dict]]:
    """(topic kind, partition, record kind, record) for each domain event, as the settlement service
    and a front door publish them; resends stay resends."""
    settled = {event.claim_id: settlement(event.claim_id, event.psn_no, event.fixmedins_code,
                                          event.setl_time.isoformat(),
                                          medfee=_yuan(max(event.medfee_fen, event.psn_part_fen)),
                                          part=_yuan(event.psn_part_fen), insured=event.insu_admdvs,
                                          treated=event.mdtrtarea_admvs)
               for event in events if isinstance(event, VisitSettled)}
    out = []
    for event in events:
        topic, partition = place(event)
        if isinstance(event, ClaimFiled):
            ((code, days),) = event.drugs
            kind, data = claim(event.claim_id, event.psn_no, event.fixmedins_code, event.setl_time.isoformat(),
                               drug=code, cnt=str(days))
        elif isinstance(event, VisitSettled):
            kind, data = settled[event.claim_id]
        else:
            assert isinstance(event, VisitReversed)
            kind, data = reversal(event.claim_id, settled[event.orig_claim_id], event.setl_time.isoformat())
        out.append((topic, partition, kind, data))
    return out


def closing(partitions, when, tag: str) -> list[tuple[str, int, str, dict]]:
    """One settlement per partition dated `when`: moves each partition's watermark past the stream."""
    return [("settlements", p, *settlement(f"CLOSE{tag}{p}", f"CLOSE{tag}{p}", "HCLOSE", when.isoformat()))
            for p in partitions]


def read_after(replay: list, late: str, after: str) -> None:
    """Delay the first result of claim `late` to just after the first result of claim `after` (one
    person's: one `settlements` partition), in place."""
    results = [data["claim_id"] if topic == "settlements" else None for topic, _, _, data in replay]
    record = replay.pop(results.index(late))
    results.remove(late)
    replay.insert(results.index(after) + 1, record)


def planted_disorder(replay: list) -> list:
    """The planted cases read out of their time order, within their person's partition (few of them
    are among fraud_replay.skewed's random delays on a short stream): each travel pair's visit away
    read after the later visit at home, and each reversal dated before its refill read after it."""
    for n in range(17):
        read_after(replay, f"T{n}-0", f"T{n}-2")
    for n in range(0, 20, 3):
        read_after(replay, f"RF{n}-1", f"F{n}-2")
    return replay


def plans(claims: int, seed: int) -> tuple[list, list]:
    """The phases of the time-order run and of the skewed run (each phase ends at its own watermark)."""
    ordered = stream(claims, seed)
    everyone = range(PARTITIONS)
    in_order = [(records(ordered) + closing(everyone, CLOSE, "A"), CLOSE)]
    replay = planted_disorder(records(skewed(ordered, seed)))
    others = [r for r in replay if r[1] != HELD]
    held = [r for r in replay if r[1] == HELD]
    later = CLOSE + timedelta(days=1)
    in_skew = [(others + closing([p for p in everyone if p != HELD], CLOSE, "B"), CLOSE),
               (held + closing([HELD], later, "C"), later)]
    return in_order, in_skew


async def _produce(settings: Settings, batch: list) -> None:
    topics = settings.topics
    async with producer(settings) as sender:
        for start in range(0, len(batch), 50):  # in the given order: 50 at a time, each 50 acknowledged
            sends = []
            for topic, partition, kind, data in batch[start:start + 50]:
                name = topics.claims if topic == "claims" else topics.settlements
                heads = [] if kind == "claim" else wire.headers(kind, data["claim_id"])
                sends.append(await sender.send(name, CATALOG.encode(RECORD[kind], data), key=data["psn_no"].encode(),
                                               headers=heads, partition=partition))
            await asyncio.gather(*sends)


def _total(service: FraudService, *names: str) -> float:
    return sum(sample.value for metric in service.metrics.registry.collect() for sample in metric.samples
               if sample.name in names)


async def _until(check, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


def _closed_at(service: FraudService, partitions: int, when) -> bool:
    from gongji.fraud.domain import parse_time

    for ledger in range(partitions):
        closed = service.buckets.get("clock", str(ledger), NO_WINDOW).get("closed")
        if closed is None or parse_time(closed) < when:
            return False
    return True


async def replay(settings: Settings, phases: list, timeout: float = 60.0) -> tuple[list[dict], FraudService]:
    """Run the fraud service on `settings`' fresh topics and feed it the phases; returns the
    FraudSignal records it left on `fraud.signals` (in each partition's order) and the service."""
    settings = settings.model_copy(update={"partitions": PARTITIONS, "fraud": CONFIG})
    await ensure_topics(settings, [settings.topics.settlements, settings.topics.claims], settings.partitions)
    service = FraudService(as_service(settings, "fraud"), CATALOG)
    produced = 0
    async with running(service):
        for batch, mark in phases:
            await _produce(settings, batch)
            produced += len(batch)
            await _until(lambda: (service.metrics.registry.get_sample_value("gongji_consumed_total") or 0) >= produced,
                         f"the fraud service did not consume the {produced} records produced", timeout)
            await _until(lambda: _closed_at(service, settings.partitions, mark),
                         f"the institution side never closed its days at {mark}", timeout)
        sent = _total(service, "gongji_outputs_total", "gongji_fraud_withdrawals_total")
        found = await collect(settings, settings.topics.fraud_signals, lambda rs: len(rs) >= sent, timeout=timeout)
    return [data for name, data, _ in found if name == "FraudSignal"], service


def final(signals: list[dict]) -> dict[str, tuple]:
    """A reader's final view: the latest record per signal_id, withdrawn ones removed."""
    view: dict[str, tuple] = {}
    for signal in signals:
        if signal["status"] == "withdrawn":
            view.pop(signal["signal_id"], None)
        else:
            view[signal["signal_id"]] = (signal["rule_id"], signal["subject_id"], signal["window_start"])
    return view


def table(runs: dict[str, tuple[list[dict], dict]]) -> str:
    names = list(runs)
    rules = sorted({rule for _, view in runs.values() for rule, _, _ in view.values()})
    lines = [f"{'rule':<20}" + "".join(f"{name:>16}" for name in names)]
    for rule in rules:
        lines.append(f"{rule:<20}" + "".join(
            f"{Counter(r for r, _, _ in runs[name][1].values())[rule]:>16}" for name in names))
    lines.append(f"{'records sent':<20}" + "".join(f"{len(runs[name][0]):>16}" for name in names))
    lines.append(f"{'withdrawals sent':<20}" + "".join(
        f"{sum(s['status'] == 'withdrawn' for s in runs[name][0]):>16}" for name in names))
    return "\n".join(lines)


async def both(stack, claims: int, seed: int) -> dict[str, tuple[list[dict], dict, FraudService]]:
    in_order, in_skew = plans(claims, seed)
    runs = {}
    for name, phases in (("time order", in_order), ("skewed", in_skew)):
        tag = f"r{uuid.uuid4().hex[:8]}"
        signals, service = await replay(settings_for(stack, tag, fraud_group=f"{tag}-fraud"), phases)
        runs[name] = (signals, final(signals), service)
    return runs


def main() -> None:
    import tempfile

    from gongji.local.stack import LocalStack

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gongji-fraud-stack-") as scratch, LocalStack(scratch) as local:
        started = time.monotonic()
        runs = asyncio.run(both(local.endpoints(), args.claims, args.seed))
    in_order, in_skew = plans(args.claims, args.seed)
    print(f"stream of {sum(len(b) for b, _ in in_order)} records (seed {args.seed}, {args.claims} claims + planted); "
          f"skewed replay of {sum(len(b) for b, _ in in_skew)} (resends, delays, partition {HELD} held back), "
          f"{time.monotonic() - started:.0f} s")
    print(table({name: (signals, view) for name, (signals, view, _) in runs.items()}))
    base, other = runs["time order"][1], runs["skewed"][1]
    print(f"skewed: {'identical set of signals' if base == other else 'DIFFERENT'} "
          f"({len(set(other) - set(base))} extra, {len(set(base) - set(other))} missing)")


if __name__ == "__main__":
    main()
