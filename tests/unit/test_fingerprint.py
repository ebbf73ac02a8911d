"""CONTRACT "Idempotency": the same claim resent is the same content, however it was written."""

from __future__ import annotations

import pytest

from gongji.settlement.events import Claim
from gongji.settlement.idempotency import fingerprint

pytestmark = pytest.mark.unit

BASE = dict(claim_id="C1", mdtrt_id="M", psn_no="P", fixmedins_code="H", med_type="11", insutype="310",
            setl_time="2023-03-01T10:00:00+08:00", acct_used_flag="0",
            fee_details=[dict(feedetl_sn="1", med_list_codg="X", list_type="1", chrgitm_lv="01",
                              det_item_fee_sumamt="30.00", cnt="3", pric="10.00")])
LINE = BASE["fee_details"][0]


@pytest.mark.parametrize("resent", [
    pytest.param({**BASE, "setl_time": "2023-03-01T02:00:00+00:00"}, id="same instant, other offset"),
    pytest.param({**BASE, "fee_details": [{**LINE, "cnt": "3.0000", "pric": "10.000000"}]}, id="more decimal places"),
    pytest.param({**BASE, "fee_details": [{**LINE, "non_med_flag": None, "pric_uplmt_amt": None}]}, id="explicit nulls"),
])
def test_a_resend_written_differently_is_the_same_content(resent):
    assert fingerprint(Claim.model_validate(resent)) == fingerprint(Claim.model_validate(BASE))


@pytest.mark.parametrize("changed", [
    pytest.param({**BASE, "mdtrt_id": "M2"}, id="another visit"),
    pytest.param({**BASE, "psn_no": "P2"}, id="another person"),
    pytest.param({**BASE, "setl_time": "2023-03-01T10:00:01+08:00"}, id="another second"),
    pytest.param({**BASE, "fee_details": [{**LINE, "cnt": "2", "det_item_fee_sumamt": "20.00"}]}, id="another count"),
])
def test_other_content_is_a_conflict(changed):
    assert fingerprint(Claim.model_validate(changed)) != fingerprint(Claim.model_validate(BASE))


def _reference(value):
    """The canonical form as first written, on model_dump's output: no cache, no shortcut."""
    from datetime import datetime, timezone
    from decimal import Decimal

    if isinstance(value, dict):
        return {key: _reference(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_reference(item) for item in value]
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    return value


def _dumped(event) -> str:
    """The fingerprint as it was first computed, from `model_dump()`: stored records hold it, so the
    fast walk over the fields must give it byte for byte."""
    import hashlib

    import orjson

    return hashlib.blake2b(orjson.dumps(_reference(event.model_dump()), option=orjson.OPT_SORT_KEYS),
                           digest_size=16).hexdigest()


def test_zero_and_minus_zero_keep_their_own_text_whichever_came_first():
    """The canonical text of a Decimal is cached by value; 0 and -0 are equal values that print apart."""
    for first, second in (("0.00", "-0.00"), ("-0.00", "0.00"), ("1.50", "1.5")):
        claims = [Claim.model_validate({**BASE, "fee_details": [{**LINE, "pric_uplmt_amt": amount}]})
                  for amount in (first, second, first)]
        assert [fingerprint(claim) for claim in claims] == [_dumped(claim) for claim in claims]


def test_the_fingerprint_of_every_synthetic_claim_reversal_and_credit_is_the_model_dump_one():
    from gongji.local.synthetic import Traffic
    from gongji.settlement.codec import to_event

    traffic = Traffic(persons=300, seed=5)
    events = [to_event(kind, data) for kind, data in [*traffic.openings(), *traffic.stream(3000)]]
    kinds = {type(event).__name__ for event in events}
    assert {"Claim", "Reversal", "Credit"} <= kinds
    # optional fields set and unset both occur, so a field the walk dropped or added would show
    assert any(event.dise_codg for event in events if type(event).__name__ == "Claim")
    assert any(line.selfpay_prop is not None for event in events if type(event).__name__ == "Claim"
               for line in event.fee_details)
    for event in events:
        assert fingerprint(event) == _dumped(event), event


def test_a_line_written_once_is_never_taken_for_another_line(monkeypatch):
    """A fee line's canonical text is kept by the line object (claims share the lines input checking
    kept): a line gone and another made in its place (the same id, often) must be written anew, and
    what is kept stays bounded."""
    import gc

    from gongji.settlement import idempotency

    monkeypatch.setattr(idempotency, "_LINES_MAX", 8)
    for count in range(1, 40):
        claim = Claim.model_validate({**BASE, "fee_details": [
            {**LINE, "cnt": str(count), "det_item_fee_sumamt": f"{count * 10}.00"}]})
        assert fingerprint(claim) == _dumped(claim) == fingerprint(claim)
        del claim
        gc.collect()
        assert len(idempotency._LINES) <= 8
