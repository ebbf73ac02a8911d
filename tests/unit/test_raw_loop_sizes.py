"""The raw loop `gongji bench` compares settlement with writes a record and produces a result of the
real size: the floor of the same work, not of a few bytes."""

from __future__ import annotations

import statistics

from gongji.contract.wire import OUTPUT_RECORDS
from gongji.local.raw_loop import RECORD_BYTES, RESULT_BYTES, _sized
from gongji.settlement.codec import from_output
from tests.unit.traffic import CATALOG, settled


def test_the_raw_loops_result_is_the_size_of_the_engines_results():
    answers = [from_output(output) for output in settled(1500, 600)]
    sizes = [len(CATALOG.encode(OUTPUT_RECORDS[kind], wire)) for kind, wire in answers if kind != "credit"]
    assert len(sizes) > 1500
    mean = statistics.mean(sizes)
    assert abs(RESULT_BYTES - mean) <= 0.15 * mean, (RESULT_BYTES, mean)


def test_the_raw_loop_pads_to_the_sizes_it_claims():
    assert len(_sized("c-1:1234", RECORD_BYTES)) == RECORD_BYTES == 200  # issue 12's budget a settled claim
    assert len(_sized(b'{"claim_id":"c-1"}', RESULT_BYTES)) == RESULT_BYTES
    assert _sized("x" * 300, RECORD_BYTES) == b"x" * 300
