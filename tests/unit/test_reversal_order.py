"""A reversal (2208) cannot precede the claim (2207) it reverses: one whose `setl_time` is earlier than
its original's is refused REVERSAL_BEFORE_ORIGINAL and changes nothing, so the ledger, clearing and
fraud may rely on a reversal never being dated before what it reverses (CONTRACT.md, rejections).
Times compare as instants, whatever their offsets; the same instant is allowed."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.builders import BOOK, settled_with_store, claim, credit, fen, institution, line, person, record, reversal, state

from gongji.settlement.domain import Rejection
from gongji.settlement.rules import ClaimReversed, reverse_claim, settle_claim

pytestmark = pytest.mark.unit

ORIGINAL_TIME = "2023-06-01T10:00:00+08:00"


def settled(claim_id: str = "ORIG", **kwargs):
    return settle_claim(claim(line("300.00"), claim_id=claim_id, setl_time=ORIGINAL_TIME, **kwargs), person(),
                        institution(), BOOK, state("500.00"))


@pytest.mark.parametrize("when", [
    "2023-06-01T09:59:59+08:00",  # a second before
    "2023-05-31T10:00:00+08:00",  # the day before
    "2023-06-01T01:30:00+00:00",  # 09:30 in Shanghai, written in UTC
])
def test_a_reversal_dated_before_its_original_is_refused_with_both_times(when):
    out = reverse_claim(reversal("ORIG", claim_id="REV", setl_time=when), record(settled()), state())
    assert isinstance(out, Rejection)
    assert (out.err_code, out.claim_id, out.psn_no, out.input_type) == (
        "REVERSAL_BEFORE_ORIGINAL", "REV", "P1", "reversal")
    assert "ORIG" in out.err_msg and ORIGINAL_TIME in out.err_msg


@pytest.mark.parametrize("when", [
    ORIGINAL_TIME,  # the same instant
    "2023-06-01T02:00:00+00:00",  # the same instant in UTC
    "2023-06-01T03:30:00+00:00",  # 11:30 in Shanghai: after, though its text sorts before
])
def test_a_reversal_at_or_after_its_original_is_settled(when):
    assert isinstance(reverse_claim(reversal("ORIG", setl_time=when), record(settled()), settled().state),
                      ClaimReversed)


def test_the_date_is_judged_before_whether_the_original_is_reversed_already():
    """The refusal of a misdated reversal does not depend on whether another reversal came first."""
    out = reverse_claim(reversal("ORIG", claim_id="R-2", setl_time="2023-05-01T10:00:00+08:00"),
                        record(settled(), reversed_by="R-1"), state())
    assert isinstance(out, Rejection) and out.err_code == "REVERSAL_BEFORE_ORIGINAL"


def settle_all(events, size: int = 1):
    return asyncio.run(settled_with_store(events, size, BOOK))


@pytest.mark.parametrize("size", [1, 2, 5])
def test_through_the_settler_a_misdated_reversal_moves_nothing_and_a_later_one_still_reverses(size):
    """Alone, in one batch with its original, resent: the same refusal each time, nothing recorded, so
    the claim stays reversible by a reversal dated after it (exactly once)."""
    visit = claim(line("300.00"), claim_id="ORIG", setl_time=ORIGINAL_TIME, acct_used_flag="1")
    early = reversal("ORIG", claim_id="R-EARLY", setl_time="2023-05-20T10:00:00+08:00")
    late = reversal("ORIG", claim_id="R-LATE", setl_time="2023-06-03T10:00:00+08:00")
    events = [person(), institution(), credit("2023-01", amount="500.00", credit_id="K"), visit, early, early, late]
    outputs, store = settle_all(events, size)
    by_id = [(kind, wire.get("claim_id"), wire.get("err_code")) for kind, wire in outputs[1:]]
    assert by_id == [("settlement", "ORIG", None),
                     ("rejection", "R-EARLY", "REVERSAL_BEFORE_ORIGINAL"),
                     ("rejection", "R-EARLY", "REVERSAL_BEFORE_ORIGINAL"),
                     ("reversal", "R-LATE", None)]
    assert outputs[2] == outputs[3]
    assert store.states["P1"].balance == fen("500.00")  # the late reversal refunded the account once
    assert not any("R-EARLY" in str(key) for key in store.records)
