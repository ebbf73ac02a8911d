"""The fraud service's inputs read once (gongji.fraud.reading): the same domain events as the
catalog's full decode, money in fen, other writer schemas and bad bytes through the catalog; and
the rebalance listener keeping the buckets to the partitions held (gongji.fraud.changelog)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from gongji.common.avro import DecodeError, SchemaCatalog, load_packaged_schema
from gongji.fraud import domain
from gongji.fraud.changelog import Rebalance
from gongji.fraud.reading import Reader
from gongji.fraud.store import ChangelogBuckets
from gongji.fraud_settings import FraudSettings
from tests.fraud_bench import stream
from tests.integration.test_fraud_service import RECORD

CATALOG = SchemaCatalog()
CONFIG = FraudSettings()


def test_the_reading_gives_the_domain_events_of_the_full_decode():
    reader = Reader(CATALOG)
    records = stream(600, 100)
    kinds = {kind for _, kind, _ in records}
    assert kinds == {"claim", "settlement", "reversal"}
    for _, kind, data in records:
        encoded = CATALOG.encode(RECORD[kind], data)
        name, fast = reader.read(encoded)
        assert (name, CATALOG.decode(encoded)[0]) == (RECORD[kind], RECORD[kind])
        _, full = CATALOG.decode(encoded)
        if kind == "claim":
            assert domain.claim_from_wire(fast, CONFIG) == domain.claim_from_wire(full, CONFIG)
            assert all(isinstance(line["cnt"], Decimal) for line in fast["fee_details"])
        elif kind == "settlement":
            assert domain.visit_from_wire(fast) == domain.visit_from_wire(full)
            assert fast["psn_part_amt"] == int(full["psn_part_amt"] * 100)  # fen
        else:
            assert domain.reversal_from_wire(fast) == domain.reversal_from_wire(full)
            assert fast["psn_part_amt"] < 0


def test_an_older_writer_schema_and_bad_bytes_go_through_the_catalog():
    old = load_packaged_schema("history/claim.v2.avsc")
    catalog = SchemaCatalog()
    catalog.register(old)
    reader = Reader(catalog)
    _, _, data = stream(1, 1)[0]
    written = SchemaCatalog([old]).encode("Claim", {k: v for k, v in data.items() if k != "rx_fixmedins_code"})
    name, record = reader.read(written)
    assert name == "Claim" and isinstance(record["fee_details"][0]["cnt"], Decimal)  # read whole, by the catalog
    good = CATALOG.encode("Claim", data)
    for bad in (b"GONGJI-TEST-JUNK", good[:-3], good + b"\x00"):
        with pytest.raises(DecodeError):
            reader.read(bad)


def test_a_worker_keeps_the_buckets_of_the_partitions_it_holds():
    buckets, restored = ChangelogBuckets(), []
    for partition in range(4):
        buckets.pin(partition)
        buckets.put("person", f"P{partition}", domain.NO_WINDOW, {"n": partition})

    async def restore(partitions):
        restored.append(sorted(partitions))

    async def rebalance():
        listener = Rebalance(asyncio.Lock(), buckets, restore)
        await listener.on_partitions_assigned({_tp(0), _tp(1), _tp(2), _tp(3)})
        await listener.on_partitions_revoked({_tp(0), _tp(1), _tp(2), _tp(3)})
        await listener.on_partitions_assigned({_tp(1), _tp(3), _tp(5)})

    asyncio.run(rebalance())
    assert restored == [[0, 1, 2, 3], [5]]  # only what is new to the worker is read back
    assert {key for _, key, _ in buckets.data} == {"P1", "P3"}


def _tp(partition: int):
    from aiokafka import TopicPartition

    return TopicPartition("t", partition)


def test_changelog_records_not_acknowledged_are_sent_with_the_next_ones():
    buckets = ChangelogBuckets()
    buckets.pin(2)
    buckets.put("person", "P1", domain.NO_WINDOW, {"n": 1})
    buckets.put("person", "P2", domain.NO_WINDOW, {"n": 1})
    lost = buckets.changes()
    assert buckets.changes() == {}
    buckets.pin(2)
    buckets.put("person", "P2", domain.NO_WINDOW, {"n": 2})  # newer than what was lost
    buckets.requeue(lost)
    again = buckets.changes()
    assert {key: value for key, value in again[2].items()} == {**lost[2], **{k: v for k, v in again[2].items()
                                                                             if b"P2" in k}}
    assert [value for key, value in again[2].items() if b"P2" in key] == [b'{"n":2}']
    assert [value for key, value in again[2].items() if b"P1" in key] == [b'{"n":1}']
