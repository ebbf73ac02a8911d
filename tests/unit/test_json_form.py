"""The JSON form's national conventions (setl_time as "yyyy-MM-dd HH:mm:ss" in Asia/Shanghai, money
as strings or numbers, exactly), the mapping of a validated input back to the wire, and `gongji
publish`'s line-by-line validation and `gongji tail`'s pure parts (issue 11)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gongji.common.avro import SchemaCatalog
from gongji.contract.wire import INPUT_RECORDS, SHANGHAI, TYPE_HEADER, Bounds
from gongji.local.publish import Tally, rows_for
from gongji.local.tail import TailError, about, as_json, kind_of, topic_name
from gongji.settings import Settings
from gongji.settlement.codec import to_event, to_wire
from gongji.settlement.domain import Rejection
from gongji.settlement.events import Claim
from gongji.settlement.replay import parse_line

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).parents[1] / "e2e" / "data" / "erenhot.jsonl"
CATALOG = SchemaCatalog()
NOW = datetime.fromisoformat("2024-12-31T12:00:00+08:00")
LINE = {"feedetl_sn": "1", "med_list_codg": "XF06", "list_type": "201", "chrgitm_lv": "01",
        "det_item_fee_sumamt": "30.00", "cnt": "3", "pric": "10.00"}
CLAIM = {"claim_id": "C-1", "mdtrt_id": "M-1", "psn_no": "P1", "fixmedins_code": "H1", "med_type": "11",
         "insutype": "310", "setl_time": "2023-06-01T10:00:00+08:00", "acct_used_flag": "0", "fee_details": [LINE]}


def from_json(text: str, kind: str = "claim", bounds: Bounds = Bounds(), now: datetime = NOW):
    """A JSON line read as replay and publish read it, then validated."""
    return to_event(kind, parse_line(1, text, io.StringIO()), bounds, now)


def claim(**fields) -> str:
    return json.dumps({**CLAIM, **fields})


def problem(event) -> str:
    assert isinstance(event, Rejection), event
    return event.err_msg


# ---------------------------------------------------------------- setl_time


def test_the_national_local_time_is_read_in_shanghai():
    national = from_json(claim(setl_time="2023-06-01 10:00:00"))
    iso = from_json(claim(setl_time="2023-06-01T10:00:00+08:00"))
    assert isinstance(national, Claim) and national == iso
    assert national.setl_time.utcoffset() == timedelta(hours=8)
    # one second either side is another instant, not the same one read loosely
    assert from_json(claim(setl_time="2023-06-01 10:00:01")).setl_time - iso.setl_time == timedelta(seconds=1)
    # the Shanghai calendar year picks the accumulators: 00:30 on 1 January is the new year in Shanghai
    assert from_json(claim(setl_time="2024-01-01 00:30:00")).setl_time.astimezone(SHANGHAI).year == 2024


@pytest.mark.parametrize("text", ["2023-06-01T10:00:00", "2023-06-01 10:00", "2023-06-01"])
def test_a_time_without_an_offset_that_is_not_the_national_form_is_refused(text):
    assert "setl_time" in problem(from_json(claim(setl_time=text)))
    assert "needs a UTC offset" in problem(from_json(claim(setl_time=text)))


@pytest.mark.parametrize("text", ["2023-02-30 10:00:00", "2023-06-01 24:00:00", "2023-13-01 10:00:00"])
def test_a_national_time_that_is_no_time_is_refused_naming_the_field(text):
    assert problem(from_json(claim(setl_time=text))).startswith("invalid claim: setl_time: ")


def test_the_present_bounds_a_national_time_as_it_bounds_an_iso_one():
    tolerance = Bounds().setl_time_tolerance
    at_bound = (NOW + tolerance).astimezone(SHANGHAI)
    assert isinstance(from_json(claim(setl_time=f"{at_bound:%Y-%m-%d %H:%M:%S}")), Claim)
    past = at_bound + timedelta(seconds=1)
    assert "later than the present" in problem(from_json(claim(setl_time=f"{past:%Y-%m-%d %H:%M:%S}")))


def test_a_reversal_takes_the_national_time_too():
    text = json.dumps({"claim_id": "R-1", "orig_claim_id": "C-1", "psn_no": "P1", "setl_time": "2024-01-05 10:00:00"})
    reversal = from_json(text, "reversal")
    assert reversal.setl_time == datetime.fromisoformat("2024-01-05T10:00:00+08:00")


# ---------------------------------------------------------------- money


def test_money_as_a_number_is_the_same_as_money_as_a_string():
    as_text = from_json(claim(fee_details=[{**LINE, "det_item_fee_sumamt": "30.00", "pric": "10.00"}]))
    as_number = from_json(claim().replace('"det_item_fee_sumamt": "30.00"', '"det_item_fee_sumamt": 30.00')
                          .replace('"pric": "10.00"', '"pric": 10.00').replace('"cnt": "3"', '"cnt": 3'))
    assert isinstance(as_number, Claim) and as_number == as_text
    assert as_number.fee_details[0].det_item_fee_sumamt == 3000


def test_a_number_is_read_exactly_never_through_a_float():
    # 0.1 + 0.2 as binary floats is 0.30000000000000004; read as text it is 0.30 exactly
    line = {**LINE, "det_item_fee_sumamt": "0.30", "cnt": "3", "pric": "0.1"}
    text = claim(fee_details=[line]).replace('"0.30"', "0.30").replace('"0.1"', "0.1")
    event = from_json(text)
    assert event.fee_details[0].det_item_fee_sumamt == 30 and event.fee_details[0].pric == Decimal("0.1")
    # a third place is refused, as a number and as a string, not rounded
    for amount in ('"30.001"', "30.001"):
        refused = from_json(claim().replace('"det_item_fee_sumamt": "30.00"', f'"det_item_fee_sumamt": {amount}'))
        assert "det_item_fee_sumamt" in problem(refused) and "more than two decimals" in problem(refused)


@pytest.mark.parametrize("quote", ['"', ""])
def test_the_line_ceiling_holds_to_the_fen_for_numbers_and_strings(quote):
    bounds = Bounds(max_line_amount=100_000)  # 1000.00 yuan

    def at(amount: str):
        line = claim(fee_details=[{**LINE, "cnt": "1", "pric": amount, "det_item_fee_sumamt": amount}])
        return from_json(line.replace(f'"{amount}"', f"{quote}{amount}{quote}"), bounds=bounds)

    assert isinstance(at("999.99"), Claim) and isinstance(at("1000.00"), Claim)
    assert "above the plausibility ceiling of 1000.00 yuan" in problem(at("1000.01"))


# ---------------------------------------------------------------- back to the wire


def _sample_events():
    for number, text in enumerate(SAMPLE.read_bytes().splitlines(), start=1):
        data = parse_line(number, text, io.StringIO())
        if data is not None:
            event = to_event(data["event_type"], data, Bounds(), NOW)
            if not isinstance(event, Rejection):
                yield data["event_type"], event


@pytest.mark.parametrize("kind,event", list(_sample_events()), ids=lambda value: getattr(value, "__name__", None))
def test_a_validated_event_goes_to_the_wire_and_reads_back_the_same(kind, event):
    name, wire = CATALOG.decode(CATALOG.encode(INPUT_RECORDS[kind], to_wire(event)))
    assert name == INPUT_RECORDS[kind]
    assert to_event(kind, wire, Bounds(), NOW) == event


def test_the_wire_carries_iso_times_with_their_offset_and_two_place_yuan():
    wire = to_wire(from_json(claim(setl_time="2023-06-01 10:00:00")))
    assert wire["setl_time"] == "2023-06-01T10:00:00+08:00"
    assert wire["fee_details"][0]["det_item_fee_sumamt"] == Decimal("30.00")
    assert str(wire["fee_details"][0]["det_item_fee_sumamt"]) == "30.00"


def test_the_encoder_that_refused_string_money_takes_the_validated_form():
    # issue 11: the JSON line's '8000.00' (type str) did not match the wire's decimal
    credit = {"credit_id": "K-1", "psn_no": "P1", "ym": "2023-01", "crdt_type": "monthly", "crdt_base": "8000.00"}
    with pytest.raises(Exception, match="8000.00"):
        CATALOG.encode("Credit", credit)
    wire = to_wire(to_event("credit", credit, Bounds(), NOW))
    assert CATALOG.decode(CATALOG.encode("Credit", wire))[1]["crdt_base"] == Decimal("8000.00")


# ---------------------------------------------------------------- publish: line by line


def test_publish_says_which_line_and_field_is_wrong_and_sends_the_others():
    lines = [claim().encode(), b"not json", b"", claim(claim_id="C-2", setl_time="2023-06-01 10:00:00").encode(),
             claim(claim_id="C-3", fee_details=[{**LINE, "det_item_fee_sumamt": "-30.00"}]).encode(),
             claim(claim_id="C-4").encode()]
    lines = [json.dumps({"event_type": "claim", **json.loads(line)}).encode() if line.startswith(b"{") else line
             for line in lines]
    errors, tally = io.StringIO(), Tally()
    settings = Settings(topic_prefix="t.")
    rows = list(rows_for(lines, settings, CATALOG, errors, tally, NOW))
    assert [number for number, _, _ in rows] == [1, 4, 6]
    assert {row[0] for _, row, _ in rows} == {"t.claims"} and {row[1] for _, row, _ in rows} == {b"P1"}
    assert [row[3] for _, row, _ in rows] == ["C-1", "C-2", "C-4"]
    said = errors.getvalue().splitlines()
    assert said[0].startswith("line 2: not JSON")
    assert said[1] == ("line 5: invalid claim: fee_details.0.det_item_fee_sumamt: Input should be greater than or "
                       "equal to 0; not sent")
    assert tally.refused == 2  # the empty line is no line
    assert rows[0][1][4] == [(TYPE_HEADER, b"claim")]  # no signing key configured: unsigned
    # what goes is what was validated: the national time as ISO on the wire
    assert CATALOG.decode(rows[1][1][2])[1]["setl_time"] == "2023-06-01T10:00:00+08:00"


def test_publish_judges_times_against_the_configured_tolerance():
    late = (NOW + timedelta(seconds=61)).astimezone(SHANGHAI)
    line = json.dumps({"event_type": "claim", **json.loads(claim(setl_time=f"{late:%Y-%m-%d %H:%M:%S}"))}).encode()
    errors = io.StringIO()
    assert list(rows_for([line], Settings(setl_time_tolerance_seconds=60), CATALOG, errors, Tally(), NOW)) == []
    assert "GONGJI_SETL_TIME_TOLERANCE_SECONDS" in errors.getvalue()
    assert len(list(rows_for([line], Settings(setl_time_tolerance_seconds=61), CATALOG, io.StringIO(), Tally(),
                             NOW))) == 1


# ---------------------------------------------------------------- tail's pure parts


def test_tail_names_topics_as_the_contract_does_with_the_prefix():
    settings = Settings(topic_prefix="run1.")
    assert topic_name(settings, "settlements") == "run1.settlements"
    assert topic_name(settings, "registry.persons") == "run1.registry.persons"
    assert topic_name(settings, "run1.dead-letters") == "run1.dead-letters"
    with pytest.raises(TailError, match="settlements"):
        topic_name(settings, "settlement")


def test_tail_prints_decimals_as_text_bytes_as_hex_and_the_kind_first():
    record = {"claim_id": "C-1", "hifp_pay": Decimal("12.30"), "original": b"\x00\xff",
              "setldetail": [{"fund_payamt": Decimal("1.00")}]}
    shown = as_json("settlement", record)
    assert list(shown)[0] == "event_type" and shown["hifp_pay"] == "12.30" and shown["original"] == "00ff"
    assert shown["setldetail"] == [{"fund_payamt": "1.00"}]
    assert kind_of("ReversalResult", []) == "reversal" and kind_of("Settlement", [(TYPE_HEADER, b"x")]) == "x"
    assert about({"orig_claim_id": "C-1"}, [], "C-1") and not about({"claim_id": "C-10"}, [], "C-1")
