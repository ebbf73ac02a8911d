"""Bad input gets a clear answer at the edge of settlement (issue 8, items 2, 5, 8, 9).

`codec.to_event` never raises: whatever a record holds, it is a domain event or an INVALID_CLAIM
rejection naming the field. The bounds are worked by hand at each limit and one fen (or one unit)
either side; the clock is given, never read.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from tests.unit.builders import BOOK, ERENHOT, fen, person
from hypothesis import given, settings
from hypothesis import strategies as st

from gongji.common.avro import SchemaCatalog
from gongji.settings import Settings
from gongji.fraud_settings import FraudSettings
from gongji.fraud.domain import ClaimFiled, ClaimRefused, MemoryBuckets
from gongji.fraud.rules import detect
from gongji.contract.wire import OUTPUT_RECORDS
from gongji.settlement import admission
from gongji.settlement.codec import from_output, to_event
from gongji.contract.wire import DEFAULT_BOUNDS, WIRE_MAX_FEN, Bounds
from gongji.settlement.domain import Output, PersonState, Rejection
from gongji.settlement.events import Claim, Credit, Institution, Person, Reversal, text_problem
from gongji.settlement.rules import ClaimSettled, settle_claim

pytestmark = pytest.mark.unit

NOW = datetime.fromisoformat("2023-06-01T12:00:00+08:00")
CATALOG = SchemaCatalog()


def line(**changes) -> dict:
    return {"feedetl_sn": "1", "med_list_codg": "XF06", "list_type": "201", "chrgitm_lv": "01",
            "det_item_fee_sumamt": "30.00", "cnt": "3", "pric": "10.00", **changes}


def amount_line(amount: str, sn: str = "1") -> dict:
    return line(feedetl_sn=sn, det_item_fee_sumamt=amount, cnt="1", pric=amount)


def claim(*lines: dict, **changes) -> dict:
    return {"claim_id": "C-1", "mdtrt_id": "M-1", "psn_no": "P1", "fixmedins_code": "H1", "med_type": "11",
            "insutype": "310", "setl_time": "2023-06-01T10:00:00+08:00", "acct_used_flag": "0",
            "fee_details": list(lines) or [line()], **changes}


def credit(**changes) -> dict:
    return {"credit_id": "K-1", "psn_no": "P1", "ym": "2023-06", "crdt_type": "opening", "amount": "100.00",
            "crdt_base": None, **changes}


def reversal(**changes) -> dict:
    return {"claim_id": "R-1", "orig_claim_id": "C-1", "psn_no": "P1", "setl_time": "2023-06-01T11:00:00+08:00",
            **changes}


def a_person(**changes) -> dict:
    return {"psn_no": "P1", "insutype": "310", "psn_type": "1101", "insu_admdvs": ERENHOT, "psn_insu_stas": "1",
            **changes}


def an_institution(**changes) -> dict:
    return {"fixmedins_code": "H1", "fixmedins_name": "二连浩特市医院", "fixmedins_type": "1", "medins_lv": "3",
            "grassroots": False, "admdvs": ERENHOT, **changes}


def refused(kind: str, data, field: str, bounds: Bounds = DEFAULT_BOUNDS) -> Rejection:
    """`data` is refused INVALID_CLAIM naming `field`, and the rejection itself can go on the wire."""
    out = to_event(kind, data, bounds, NOW)
    assert isinstance(out, Rejection), out
    assert out.err_code == "INVALID_CLAIM"
    assert field in out.err_msg, out.err_msg
    assert_publishable(out)
    return out


def accepted(kind: str, data, bounds: Bounds = DEFAULT_BOUNDS):
    out = to_event(kind, data, bounds, NOW)
    assert not isinstance(out, Rejection), out.err_msg
    return out


def assert_publishable(rejection: Rejection) -> None:
    """What the service and replay do with a rejection: Avro on `settlements`, UTF-8 JSON on stdout."""
    kind, wire = from_output(Output(rejection.psn_no or "", rejection), unscaled=True)
    CATALOG.encode_unscaled(OUTPUT_RECORDS[kind], wire)
    json.dumps(from_output(Output("", rejection))[1], ensure_ascii=False).encode("utf-8")
    assert len(rejection.err_msg) < 1500


# ================================================================ item 2: to_event never raises


@pytest.mark.parametrize(("changes", "field"), [
    # Seen: a fee line of 40 digits raised decimal.InvalidOperation out of money.to_price.
    pytest.param(dict(pric="1" * 40, det_item_fee_sumamt="30.00"), "fee_details.0.pric", id="40-digit price"),
    pytest.param(dict(det_item_fee_sumamt="1" * 40 + ".00", pric="1" * 40), "fee_details.0.det_item_fee_sumamt",
                 id="40-digit amount"),
    pytest.param(dict(cnt="1" * 40), "fee_details.0.cnt", id="40-digit count"),
    pytest.param(dict(cnt=Decimal("1E+999999999")), "fee_details.0.cnt", id="count 1E+999999999 (Overflow)"),
    pytest.param(dict(det_item_fee_sumamt=Decimal("1E+999999999")), "fee_details.0.det_item_fee_sumamt",
                 id="amount 1E+999999999"),
    pytest.param(dict(det_item_fee_sumamt=Decimal("1E-999999999")), "fee_details.0.det_item_fee_sumamt",
                 id="amount 1E-999999999"),
    pytest.param(dict(pric=Decimal("NaN")), "fee_details.0.pric", id="Decimal NaN"),
    pytest.param(dict(pric=float("nan")), "fee_details.0.pric", id="float NaN"),
    pytest.param(dict(det_item_fee_sumamt=float("inf")), "fee_details.0.det_item_fee_sumamt", id="float Infinity"),
    pytest.param(dict(det_item_fee_sumamt="Infinity"), "fee_details.0.det_item_fee_sumamt", id="text Infinity"),
    pytest.param(dict(det_item_fee_sumamt=10**4000), "fee_details.0.det_item_fee_sumamt", id="4000-digit int"),
    pytest.param(dict(det_item_fee_sumamt="1_000.00"), "fee_details.0.det_item_fee_sumamt", id="underscores"),
    pytest.param(dict(det_item_fee_sumamt="٣٠.٠٠"), "fee_details.0.det_item_fee_sumamt", id="Arabic-Indic digits"),
    pytest.param(dict(det_item_fee_sumamt="3e1"), "fee_details.0.det_item_fee_sumamt", id="exponent in text"),
    pytest.param(dict(det_item_fee_sumamt=["30.00"]), "fee_details.0.det_item_fee_sumamt", id="a list for money"),
    pytest.param(dict(det_item_fee_sumamt={"$numberDecimal": "30"}), "fee_details.0.det_item_fee_sumamt",
                 id="an object for money"),
    pytest.param(dict(cnt=True), "fee_details.0.cnt", id="bool count"),
    pytest.param(dict(selfpay_prop="0.1" + "0" * 60), "fee_details.0.selfpay_prop", id="long ratio"),
])
def test_hostile_fee_line_values_are_invalid_claims_naming_the_field(changes, field):
    """Reproduces item 2: on main, the first of these raised InvalidOperation out of to_event (and
    the batch was retried for ever); the count 1E+999999999 raised decimal.Overflow."""
    refused("claim", claim(line(**changes)), field)


@pytest.mark.parametrize(("data", "field"), [
    pytest.param(claim(fee_details="junk"), "fee_details", id="fee_details a string"),
    pytest.param(claim(fee_details=[[[[[]]]]]), "fee_details.0", id="nested lists"),
    pytest.param(claim(fee_details={"0": line()}), "fee_details", id="fee_details an object"),
    pytest.param(claim(fee_details=[line(feedetl_sn={"a": [1, {"b": None}]})]), "fee_details.0.feedetl_sn",
                 id="nested junk for an id"),
    pytest.param(claim(psn_no=12345), "psn_no", id="a number for psn_no"),
    pytest.param(claim(setl_time=1685584800), "setl_time", id="seconds for setl_time"),
    pytest.param(claim(setl_time="2023-06-01"), "setl_time", id="a date without a time"),
    pytest.param(claim(setl_time="x" * 10_000), "setl_time", id="10,000 characters for setl_time"),
    # On main this validated, and settle_claim raised OverflowError converting it to Asia/Shanghai.
    pytest.param(claim(setl_time="0001-01-01T00:00:00+14:00"), "setl_time", id="year 1 at +14:00"),
    pytest.param(claim(setl_time="9999-12-31T23:59:59-14:00"), "setl_time", id="year 9999 at -14:00"),
    pytest.param(claim(acct_used_flag=None), "acct_used_flag", id="null flag"),
    pytest.param(claim(fee_details=[]), "fee_details", id="no fee lines"),
])
def test_hostile_claims_are_invalid_claims_naming_the_field(data, field):
    refused("claim", data, field)


def test_a_claim_dated_year_1_is_refused_before_the_engine_sees_it():
    """On main `Claim` accepted it and settle_claim raised OverflowError (not a rejection)."""
    with pytest.raises(OverflowError):
        datetime.fromisoformat("0001-01-01T00:00:00+14:00").astimezone(timezone(timedelta(hours=8)))
    refused("claim", claim(setl_time="0001-01-01T00:00:00+14:00"), "out of range")


@pytest.mark.parametrize("data", [None, [], "claim", 42, Decimal("NaN")])
def test_a_record_that_is_not_an_object_is_an_invalid_claim(data):
    out = to_event("claim", data, DEFAULT_BOUNDS, NOW)
    assert isinstance(out, Rejection) and out.err_code == "INVALID_CLAIM"
    assert (out.psn_no, out.claim_id) == (None, None)


def test_unknown_event_type_with_a_hostile_name_is_refused_without_echoing_it():
    out = to_event("\ud800claim\x00" * 1000, {"psn_no": "P1"}, DEFAULT_BOUNDS, NOW)
    assert isinstance(out, Rejection) and out.err_code == "INVALID_CLAIM"
    assert out.input_type is None and out.psn_no == "P1"
    assert_publishable(out)


def test_an_unexpected_exception_inside_validation_is_still_a_rejection(monkeypatch):
    """Whatever a validator raises (here a KeyError from a bug), to_event answers INVALID_CLAIM."""
    def broken(cls, data, **kwargs):
        raise KeyError("surprise")
    monkeypatch.setattr(Claim, "model_validate", classmethod(broken))
    # The fast checks (gongji.settlement.admission) hand anything they raise on to pydantic.
    monkeypatch.setitem(admission.FAST, Claim, lambda *args: broken(Claim, None))
    out = to_event("claim", claim(), DEFAULT_BOUNDS, NOW)
    assert isinstance(out, Rejection) and out.err_code == "INVALID_CLAIM"
    assert "KeyError" in out.err_msg and out.claim_id == "C-1"


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.decimals(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ("claim_id", "psn_no", "setl_time", "fee_details", "acct_used_flag", "credit_id", "ym", "amount",
          "crdt_base", "crdt_type", "medins_lv", "fixmedins_type", "insu_admdvs", "chronic_diseases")


@settings(max_examples=300, derandomize=True, deadline=None)
@given(kind=st.sampled_from(["claim", "reversal", "credit", "person", "institution"]),
       base=st.sampled_from([claim(), reversal(), credit(), a_person(), an_institution()]),
       junk=st.dictionaries(st.sampled_from(FIELDS), JSONISH, max_size=4),
       line_junk=st.dictionaries(st.sampled_from(sorted(line())), JSONISH, max_size=3))
def test_to_event_never_raises_and_every_rejection_can_be_published(kind, base, junk, line_junk):
    data = {**base, **junk}
    if isinstance(data.get("fee_details"), list) and data["fee_details"] and isinstance(data["fee_details"][0], dict):
        data["fee_details"] = [{**data["fee_details"][0], **line_junk}]
    out = to_event(kind, data, DEFAULT_BOUNDS, NOW)
    if isinstance(out, Rejection):
        assert out.err_code == "INVALID_CLAIM"
        assert_publishable(out)


# ================================================================ item 5: bounds, each limit ± one fen


def test_a_line_at_the_line_ceiling_settles_and_one_fen_more_is_refused():
    """Sample GONGJI_MAX_LINE_AMOUNT 2,000,000.00 yuan per fee line."""
    assert DEFAULT_BOUNDS.max_line_amount == fen("2000000.00")
    assert accepted("claim", claim(amount_line("1999999.99")))
    assert accepted("claim", claim(amount_line("2000000.00"))).fee_details[0].det_item_fee_sumamt == 200_000_000
    out = refused("claim", claim(amount_line("2000000.01")), "fee_details.0.det_item_fee_sumamt")
    assert "2000000.01 yuan is above the plausibility ceiling of 2000000.00" in out.err_msg
    assert "GONGJI_MAX_LINE_AMOUNT" in out.err_msg


def test_a_claim_at_the_claim_ceiling_settles_and_one_fen_more_is_refused():
    """Sample GONGJI_MAX_CLAIM_AMOUNT 10,000,000.00 yuan: five lines of 2,000,000.00, then one fen more."""
    full = [amount_line("2000000.00", sn=str(n)) for n in range(5)]
    assert accepted("claim", claim(*full))
    assert accepted("claim", claim(*full[:4], amount_line("1999999.99", sn="4")))
    out = refused("claim", claim(*full, amount_line("0.01", sn="5")), "fee_details")
    assert "10000000.01 yuan is above the plausibility ceiling of 10000000.00" in out.err_msg
    assert "GONGJI_MAX_CLAIM_AMOUNT" in out.err_msg


def test_configured_ceilings_apply():
    bounds = Bounds(max_line_amount=fen("100.00"), max_claim_amount=fen("150.00"))
    assert accepted("claim", claim(amount_line("100.00")), bounds)
    refused("claim", claim(amount_line("100.01")), "GONGJI_MAX_LINE_AMOUNT", bounds)
    assert accepted("claim", claim(amount_line("100.00"), amount_line("50.00", sn="2")), bounds)
    refused("claim", claim(amount_line("100.00"), amount_line("50.01", sn="2")), "GONGJI_MAX_CLAIM_AMOUNT", bounds)


def test_amounts_stay_within_the_wire_schemas_precision():
    """decimal(16,2): 99,999,999,999,999.99 yuan is the most a line or a result can carry, whatever
    the ceilings say; decimal(20,6) for prices, decimal(12,4) for counts."""
    wide = Bounds(max_line_amount=WIRE_MAX_FEN, max_claim_amount=WIRE_MAX_FEN)
    assert accepted("claim", claim(amount_line("99999999999999.99")), wide)
    out = refused("claim", claim(amount_line("100000000000000.00")), "fee_details.0", wide)
    assert "decimal(16,2)" in out.err_msg
    # 99,999,999,999,999.999999 × 0.0001 = 9,999,999,999.9999999999 → 10,000,000,000.00 to the fen
    assert accepted("claim", claim(line(pric="99999999999999.999999", cnt="0.0001",
                                        det_item_fee_sumamt="10000000000.00")), wide)
    out = refused("claim", claim(line(pric="100000000000000", cnt="0.0001", det_item_fee_sumamt="10000000000.00")),
                  "fee_details.0.pric", wide)
    assert "decimal(20,6)" in out.err_msg
    assert accepted("claim", claim(line(cnt="99999999.9999", pric="0.01", det_item_fee_sumamt="1000000.00")))
    refused("claim", claim(line(cnt="100000000", pric="0.01", det_item_fee_sumamt="1000000.00")),
            "fee_details.0.cnt")


@pytest.mark.parametrize(("changes", "field"), [
    pytest.param(dict(det_item_fee_sumamt="30.001"), "det_item_fee_sumamt", id="amount with 3 places"),
    pytest.param(dict(pric="0.0000001", cnt="1", det_item_fee_sumamt="0.00"), "pric", id="price with 7 places"),
    pytest.param(dict(cnt="0.00001", pric="1.00", det_item_fee_sumamt="0.00"), "cnt", id="count with 5 places"),
    pytest.param(dict(chrgitm_lv="02", selfpay_prop="0.12345"), "selfpay_prop", id="ratio with 5 places"),
    pytest.param(dict(cnt="0", det_item_fee_sumamt="0.00"), "cnt", id="count 0"),
    pytest.param(dict(cnt="-1", det_item_fee_sumamt="0.00"), "cnt", id="count -1"),
    pytest.param(dict(pric="0", cnt="1", det_item_fee_sumamt="0.00"), "pric", id="price 0"),
    pytest.param(dict(pric="-0.01", cnt="1", det_item_fee_sumamt="0.00"), "pric", id="price -0.01"),
    pytest.param(dict(det_item_fee_sumamt="-0.01", pric="0.000001", cnt="1"), "det_item_fee_sumamt",
                 id="amount -0.01"),
])
def test_places_and_signs(changes, field):
    refused("claim", claim(line(**changes)), f"fee_details.0.{field}")


@pytest.mark.parametrize("changes", [
    pytest.param(dict(pric="0.000001", cnt="10000", det_item_fee_sumamt="0.01"), id="price with 6 places"),
    pytest.param(dict(cnt="0.0001", pric="100.00", det_item_fee_sumamt="0.01"), id="count with 4 places"),
    pytest.param(dict(chrgitm_lv="02", selfpay_prop="0.1234"), id="ratio with 4 places"),
    pytest.param(dict(pric_uplmt_amt="0"), id="limit price 0 (a limit, not a price)"),
    pytest.param(dict(det_item_fee_sumamt="0.00", pric="0.001", cnt="1"), id="a line that rounds to 0.00"),
])
def test_at_the_precision_each_value_is_accepted(changes):
    assert accepted("claim", claim(line(**changes)))


def test_setl_time_may_be_the_tolerance_past_the_present_and_not_a_second_more():
    """Sample GONGJI_SETL_TIME_TOLERANCE_SECONDS 600, judged against the injected clock."""
    assert accepted("claim", claim(setl_time="2023-06-01T12:10:00+08:00"))
    assert accepted("claim", claim(setl_time="2023-06-01T04:10:00+00:00"))  # the same instant in UTC
    out = refused("claim", claim(setl_time="2023-06-01T12:10:01+08:00"), "setl_time")
    assert "GONGJI_SETL_TIME_TOLERANCE_SECONDS" in out.err_msg
    refused("reversal", reversal(setl_time="2023-06-01T12:10:01+08:00"), "setl_time")
    assert accepted("reversal", reversal(setl_time="2023-06-01T12:10:00+08:00"))
    strict = Bounds(setl_time_tolerance=timedelta(0))
    assert accepted("claim", claim(setl_time="2023-06-01T12:00:00+08:00"), strict)
    refused("claim", claim(setl_time="2023-06-01T12:00:01+08:00"), "setl_time", strict)


def test_the_clock_is_the_callers():
    """Without a given present, to_event reads the wall clock; the domain alone judges no time."""
    far = claim(setl_time="2999-01-01T00:00:00+08:00")
    assert isinstance(to_event("claim", far), Rejection)
    assert isinstance(to_event("claim", far, DEFAULT_BOUNDS, datetime(3000, 1, 1, tzinfo=timezone.utc)), Claim)
    assert Claim.model_validate(far).setl_time.year == 2999


def test_credit_months_are_real_and_not_to_come():
    assert accepted("credit", credit(ym="2023-06"))
    refused("credit", credit(ym="2023-07"), "ym")
    refused("credit", credit(ym="0000-01"), "ym")
    refused("credit", credit(ym="2999-01", crdt_type="monthly", amount=None, crdt_base="5000.00"), "ym")


def test_a_credit_month_begins_with_the_tolerance_in_asia_shanghai():
    """A month still to come is judged in Asia/Shanghai, with setl_time's tolerance (sample 600 s)."""
    def june_at(now: str):
        return to_event("credit", credit(ym="2023-06"), DEFAULT_BOUNDS, datetime.fromisoformat(now))
    assert isinstance(june_at("2023-05-31T23:50:00+08:00"), Credit)  # + 600 s = 1 June 00:00:00: June has begun
    assert isinstance(june_at("2023-05-31T23:49:59+08:00"), Rejection)  # + 600 s = 31 May 23:59:59
    # The same instants given in UTC: 15:50 on 31 May is 23:50 in Shanghai, still May in UTC
    assert isinstance(june_at("2023-05-31T15:50:00+00:00"), Credit)
    assert isinstance(june_at("2023-05-31T15:49:59+00:00"), Rejection)


def test_opening_balances_and_credit_bases_have_ceilings():
    """Samples: GONGJI_MAX_OPENING_AMOUNT 1,000,000.00, GONGJI_MAX_CREDIT_BASE 200,000.00 yuan."""
    assert accepted("credit", credit(amount="1000000.00")).amount == fen("1000000.00")
    out = refused("credit", credit(amount="1000000.01"), "amount")
    assert "GONGJI_MAX_OPENING_AMOUNT" in out.err_msg
    monthly = dict(crdt_type="monthly", amount=None)
    assert accepted("credit", credit(crdt_base="200000.00", **monthly)).crdt_base == fen("200000.00")
    out = refused("credit", credit(crdt_base="200000.01", **monthly), "crdt_base")
    assert "GONGJI_MAX_CREDIT_BASE" in out.err_msg
    refused("credit", credit(amount="-0.01"), "amount")
    assert accepted("credit", credit(crdt_base="0.00", **monthly)).crdt_base == 0
    refused("credit", credit(crdt_base="-0.01", **monthly), "crdt_base")


@pytest.mark.parametrize(("kind", "data", "field"), [
    # What a tester saw settled: 10^12-yuan claims, 10^15 (past the schema), opening credits of 10^12,
    # claims dated 2999 (under the latest policy), codes with trailing spaces (stripped).
    pytest.param("claim", claim(amount_line("1000000000000.00")), "GONGJI_MAX_LINE_AMOUNT", id="10^12 yuan claim"),
    pytest.param("claim", claim(amount_line("1000000000000000.00")), "decimal(16,2)", id="10^15 yuan claim"),
    pytest.param("credit", credit(amount="1000000000000.00"), "GONGJI_MAX_OPENING_AMOUNT", id="10^12 opening"),
    pytest.param("claim", claim(setl_time="2999-01-01T10:00:00+08:00"), "setl_time", id="claim dated 2999"),
    pytest.param("claim", claim(fixmedins_code="H1 "), "fixmedins_code", id="code with a trailing space"),
])
def test_what_the_tester_saw_settled_is_refused(kind, data, field):
    refused(kind, data, field)


# ---------------------------------------------------------------- ids and codes


ID_CASES = [
    pytest.param("P1 ", "surrounding spaces", id="trailing space"),
    pytest.param(" P1", "surrounding spaces", id="leading space"),
    pytest.param("P\x001", "U+0000", id="NUL"),
    pytest.param("P1\n", "U+000A", id="newline"),
    pytest.param("P\t1", "U+0009", id="tab"),
    pytest.param("P\u200b1", "U+200B", id="zero-width space"),
    pytest.param("P\u202e1", "U+202E", id="right-to-left override"),
    pytest.param("P\u30001", "U+3000", id="ideographic space"),
    # pydantic itself refuses a surrogate where a plain str is expected
    pytest.param("P\ud8001", ("U+D800", "valid string"), id="lone surrogate"),
    pytest.param("P" * 65, "at most 64 characters", id="65 characters"),
]


@pytest.mark.parametrize(("value", "reason"), ID_CASES)
@pytest.mark.parametrize(("kind", "build", "field"), [
    ("claim", lambda v: claim(psn_no=v), "psn_no"),
    ("claim", lambda v: claim(claim_id=v), "claim_id"),
    ("claim", lambda v: claim(line(med_list_codg=v)), "fee_details.0.med_list_codg"),
    ("claim", lambda v: claim(dise_codg=v, med_type="14"), "dise_codg"),
    ("reversal", lambda v: reversal(orig_claim_id=v), "orig_claim_id"),
    ("credit", lambda v: credit(credit_id=v), "credit_id"),
    ("person", lambda v: a_person(psn_no=v), "psn_no"),
    ("person", lambda v: a_person(mulaid_holder_psn_no=v, mulaid_relation="spouse"), "mulaid_holder_psn_no"),
    ("person", lambda v: a_person(chronic_diseases=["I10", v]), "chronic_diseases.1"),
    ("institution", lambda v: an_institution(fixmedins_code=v), "fixmedins_code"),
])
def test_ids_and_codes_are_refused_not_repaired(value, reason, kind, build, field):
    out = refused(kind, build(value), field)
    assert any(why in out.err_msg for why in ((reason,) if isinstance(reason, str) else reason)), out.err_msg
    # The rejection never echoes a hostile id.
    assert value not in (out.psn_no, out.claim_id, out.credit_id)


@settings(max_examples=2000, derandomize=True, deadline=None)
# Unassigned code points (Cn) left out: the regex engine's Unicode tables are newer than Python 3.11's
# (U+31350, CJK Extension H, is a letter to one and unassigned to the other).
@given(st.text(st.characters(blacklist_categories=("Cs", "Cn")), max_size=6)
       | st.text(st.sampled_from(" \t\x00\u00a0\u200b\u2028\u3000\ufeffa张"), max_size=4))
def test_the_id_pattern_pydantic_checks_is_the_rule_text_problem_states(value):
    """TEXT_PATTERN runs in pydantic's regex engine (no Python call per field); it must refuse
    exactly what text_problem explains: a non-printable character or surrounding spaces."""
    out = to_event("person", a_person(psn_idet_type=value), DEFAULT_BOUNDS, NOW)
    assert isinstance(out, Rejection) == (text_problem(value) is not None), (value, out)


def test_ids_at_the_length_limit_and_printable_text_are_accepted():
    assert accepted("claim", claim(claim_id="C" * 64, psn_no="P" * 64)).claim_id == "C" * 64
    assert accepted("person", a_person(psn_no="1525-01 张三")).psn_no == "1525-01 张三"
    assert accepted("institution", an_institution(fixmedins_name="名" * 200))
    refused("institution", an_institution(fixmedins_name="名" * 201), "fixmedins_name")
    refused("institution", an_institution(fixmedins_name="二连浩特\n市医院"), "U+000A")
    refused("institution", an_institution(fixmedins_name="二连浩特市医院\x00"), "U+0000")
    assert accepted("institution", an_institution(fixmedins_name=" 二连浩特 市医院 ")).fixmedins_name == " 二连浩特 市医院 "


def test_a_rejection_echoes_the_clean_ids_of_a_bad_record():
    out = refused("claim", claim(amount_line("2000000.01"), claim_id="C-9", psn_no="P9"), "det_item_fee_sumamt")
    assert (out.claim_id, out.psn_no, out.input_type) == ("C-9", "P9", "claim")


@pytest.mark.parametrize(("changes", "field"), [
    pytest.param(dict(insu_admdvs="١٥٢٥٠١"), "insu_admdvs", id="region in Arabic-Indic digits"),
    pytest.param(dict(insu_admdvs="152501\n"), "insu_admdvs", id="region with a newline"),
    pytest.param(dict(psn_type="١١٠١"), "psn_type", id="person type in Arabic-Indic digits"),
    pytest.param(dict(psn_insu_stas=" 1"), "psn_insu_stas", id="status with a space"),
])
def test_person_registry_hygiene(changes, field):
    refused("person", a_person(**changes), field)


# ================================================================ item 8: NO_POLICY


def test_no_policy_is_its_own_code_and_never_a_suspension_signal():
    """A region without a policy file: NO_POLICY, and the fraud rules raise nothing against the
    insured person; a real suspension (psn_insu_stas 2) is NOT_INSURED and raises SUSPENDED_BENEFITS."""
    hospital = Institution.model_validate(an_institution())
    visit = Claim.model_validate(claim())
    results = {}
    for name, who in (("no policy", person(psn_no="P1", insu_admdvs="110000")),
                      ("suspended", person(psn_no="P1", psn_insu_stas="2"))):
        out = settle_claim(visit, who, hospital, BOOK, PersonState())
        assert isinstance(out, Rejection)
        events = [ClaimFiled(visit.claim_id, "P1", "H1", visit.setl_time, ()),
                  ClaimRefused(visit.claim_id, "P1", out.err_code)]
        signals = detect(FraudSettings(), MemoryBuckets(), events).signals
        results[name] = (out.err_code, [s.rule_id for s in signals])
    assert results == {"no policy": ("NO_POLICY", []), "suspended": ("NOT_INSURED", ["SUSPENDED_BENEFITS"])}


def test_no_policy_goes_on_the_wire():
    out = settle_claim(Claim.model_validate(claim(insutype="390")), person(insutype="390"),
                       Institution.model_validate(an_institution()), BOOK, PersonState())
    assert isinstance(out, Rejection) and out.err_code == "NO_POLICY"
    assert "390" in out.err_msg
    assert_publishable(out)


# ================================================================ item 9: pharmacies


@pytest.mark.parametrize("level", [pytest.param({}, id="absent"), pytest.param({"medins_lv": None}, id="null"),
                                   pytest.param({"medins_lv": ""}, id="empty string on the wire")])
def test_a_pharmacy_needs_no_level_and_settles_in_the_pharmacy_band(level):
    """Erenhot, in-service, first visit of the year at a retail pharmacy: 1100.00 in scope, annual
    deductible 1000.00, the pharmacy band's 70% on the 100.00 left: 70.00 pooling."""
    data = {key: value for key, value in an_institution(fixmedins_code="P1", fixmedins_type="2").items()
            if key != "medins_lv"}
    pharmacy = accepted("institution", {**data, **level})
    assert pharmacy.medins_lv is None and pharmacy.band == "pharmacy"
    out = settle_claim(Claim.model_validate(claim(amount_line("1100.00"), fixmedins_code="P1")), person(), pharmacy,
                       BOOK, PersonState())
    assert isinstance(out, ClaimSettled), out
    s = out.settlement
    assert (s.act_pay_dedc, s.hifp_pay, s.pool_prop_selfpay, s.psn_cash_pay) == (
        fen("1000.00"), fen("70.00"), Decimal("0.7000"), fen("1030.00"))
    assert "band pharmacy" in s.setldetail[0].setl_proc_info


def test_a_hospital_still_needs_its_level():
    refused("institution", {**an_institution(), "medins_lv": ""}, "medins_lv")
    refused("institution", {k: v for k, v in an_institution().items() if k != "medins_lv"}, "medins_lv")
    refused("institution", an_institution(medins_lv="4"), "medins_lv")


def test_a_stored_pharmacy_without_level_reads_back():
    """The Redis store keeps institutions as JSON and reads them back without a validation context."""
    pharmacy = Institution.model_validate(an_institution(fixmedins_type="2", medins_lv=None))
    assert Institution.model_validate_json(pharmacy.model_dump_json()) == pharmacy


# ================================================================ settings


def test_bounds_come_from_the_settings():
    settings_ = Settings(max_line_amount="100.00", max_claim_amount="150.00", max_opening_amount="1.00",
                         max_credit_base="2.00", setl_time_tolerance_seconds=0)
    assert settings_.settlement_bounds() == Bounds(fen("100.00"), fen("150.00"), fen("1.00"), fen("2.00"), timedelta(0))
    assert Settings().settlement_bounds() == DEFAULT_BOUNDS


def test_bounds_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("GONGJI_MAX_LINE_AMOUNT", "500.00")
    monkeypatch.setenv("GONGJI_SETL_TIME_TOLERANCE_SECONDS", "30")
    bounds = Settings().settlement_bounds()
    assert (bounds.max_line_amount, bounds.setl_time_tolerance) == (fen("500.00"), timedelta(seconds=30))


@pytest.mark.parametrize(("name", "value"), [
    ("max_line_amount", "100000000000000.00"),  # past decimal(16,2)
    ("max_claim_amount", "0"),
    ("max_opening_amount", "1.001"),
    ("max_credit_base", "-1"),
    ("setl_time_tolerance_seconds", -1),
])
def test_bounds_settings_are_checked(name, value):
    with pytest.raises(ValueError):
        Settings(**{name: value})


def test_validated_events_are_the_same_as_before_for_valid_input():
    """Valid input validates to the same event with or without the bounds context."""
    for kind, model, data in (("claim", Claim, claim()), ("reversal", Reversal, reversal()),
                              ("credit", Credit, credit()), ("person", Person, a_person())):
        assert to_event(kind, data, DEFAULT_BOUNDS, NOW) == model.model_validate(data)
