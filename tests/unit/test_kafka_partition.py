"""`gongji.common.kafka.partition_of` (publish's partitioner, its hashes kept per key) chooses what
aiokafka's default partitioner chooses (the Java client's murmur2), for every key and partition count."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from gongji.common import kafka

pytestmark = pytest.mark.unit


def test_each_key_goes_where_the_default_partitioner_sends_it(monkeypatch):
    rng = random.Random(12)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))) for _ in range(3_000)]
    keys += [f"{number:014d}".encode() for number in range(2_000)] + ["人员".encode()]
    for count in (1, 2, 3, 7, 12, 64):
        partitions = list(range(count))
        for key in keys + keys:  # the second time from what was kept
            assert kafka.partition_of(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_what_is_kept_is_bounded_and_still_right_after_clearing(monkeypatch):
    hashes = kafka._KeyHashes()
    monkeypatch.setattr(kafka, "_HASHES", hashes)
    partitions = list(range(5))
    for number in range(70_000):
        key = f"P{number}".encode()
        assert kafka.partition_of(key, partitions) == DefaultPartitioner()(key, partitions, partitions)
    assert 0 < len(hashes) <= 65_536


def test_a_record_without_a_key_goes_to_one_of_the_partitions():
    assert {kafka.partition_of(None, [0, 1, 2]) for _ in range(200)} <= {0, 1, 2}
