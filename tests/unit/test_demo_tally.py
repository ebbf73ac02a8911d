"""The demo's tally: what counts as the answer to a message sent on `claims`, so that its drain
waits for every answer and its summary is not taken early."""

from __future__ import annotations

import pytest

from gongji.local.demo import JUNK, Tally

pytestmark = pytest.mark.unit


def letter(service: str) -> dict:
    return {"topic": "claims", "partition": 0, "offset": 7, "key": b"P1", "reason": "undecodable: not Avro",
            "original": JUNK + b"rest", "failed_at": "2026-11-23T00:00:00+00:00", "service": service}


def test_junk_is_answered_once_by_settlement_whoever_else_dead_letters_it():
    """The fraud service reads claims too and dead-letters the same junk: that is not a second
    answer (counted as one, the drain ended while real results were still unread)."""
    tally = Tally()
    tally.add("DeadLetter", letter("settlement"))
    tally.add("DeadLetter", letter("fraud"))
    assert tally.answered == 1 and tally.counts["dead letter"] == 2
