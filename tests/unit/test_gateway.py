"""The gateway's pure parts: the national envelope and the 2207 → Claim mapper (times, money, fields
named on error), the answer from a result, and the callers' request signatures."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gongji.common.avro import SchemaCatalog
from gongji.gateway import national
from gongji.gateway.callers import CALLER_HEADER, Caller, Callers, CallersFileError, Unauthenticated, load_callers
from gongji.gateway.national import Refused

pytestmark = pytest.mark.unit

LINE = {"feedetl_sn": "1", "med_list_codg": "XA01", "list_type": "101", "chrgitm_lv": "01",
        "det_item_fee_sumamt": "7.00", "cnt": 20, "pric": 0.35}
DATA = {"psn_no": "P1", "mdtrt_id": "M1", "med_type": "11", "setl_time": "2026-03-01 10:15:00", "feedetail": [LINE]}
BODY = {"infno": "2207", "msgid": "MSG1", "fixmedins_code": "H1", "input": {"data": DATA}}


def test_a_2207_becomes_a_claim_the_wire_takes_with_local_time_and_exact_money():
    infno, msgid, code, data = national.envelope(BODY)
    claim = national.claim_2207(msgid, code, data)
    assert claim["claim_id"] == "gw-H1-MSG1" and claim["fixmedins_code"] == "H1"
    assert claim["setl_time"] == "2026-03-01T10:15:00+08:00"
    assert (claim["insutype"], claim["acct_used_flag"]) == ("310", "0")
    line = claim["fee_details"][0]
    assert (line["det_item_fee_sumamt"], line["cnt"], line["pric"]) == (Decimal("7.00"), Decimal("20"), Decimal("0.35"))
    assert SchemaCatalog().decode(SchemaCatalog().encode("Claim", claim))[1]["claim_id"] == "gw-H1-MSG1"


def test_the_day_surgery_procedure_reaches_the_claim():
    """日间手术 (seed 001) is recognised by input.data.oprn_oprt_code; absent, the field is null."""
    claim = national.claim_2207("M", "H1", {**DATA, "med_type": "14", "oprn_oprt_code": "13.41"})
    assert SchemaCatalog().decode(SchemaCatalog().encode("Claim", claim))[1]["oprn_oprt_code"] == "13.41"
    assert national.claim_2207("M", "H1", DATA)["oprn_oprt_code"] is None


def test_setl_time_falls_back_to_inf_time_and_takes_iso_with_an_offset():
    data = {**DATA, "setl_time": None}
    assert national.claim_2207("M", "H1", data, "2026-03-01 00:30:00")["setl_time"] == "2026-03-01T00:30:00+08:00"
    iso = national.claim_2207("M", "H1", {**DATA, "setl_time": "2026-02-28T16:30:00+00:00"})["setl_time"]
    assert iso == "2026-02-28T16:30:00+00:00"
    with pytest.raises(Refused, match="no offset"):
        national.claim_2207("M", "H1", {**DATA, "setl_time": "2026-02-28T16:30:00"})


@pytest.mark.parametrize("body, field", [
    ({**BODY, "infno": "9999"}, "infno"),
    ({**BODY, "msgid": "a b"}, "msgid"),
    ({**BODY, "input": {}}, "input.data"),
    ("[]", "the body"),
])
def test_a_bad_envelope_names_the_field(body, field):
    with pytest.raises(Refused, match=field.replace(".", r"\.")):
        national.envelope(body)


@pytest.mark.parametrize("change, field", [
    ({"psn_no": None}, "input.data.psn_no: required"),
    ({"feedetail": []}, "input.data.feedetail"),
    ({"feedetail": [{**LINE, "pric": "abc"}]}, r"feedetail\[0\]\.pric"),
    ({"feedetail": [{**LINE, "det_item_fee_sumamt": "7.001"}]}, r"feedetail\[0\]\.det_item_fee_sumamt: 7.001 has more"),
    ({"feedetail": [{**LINE, "cnt": True}]}, r"feedetail\[0\]\.cnt"),
    ({"setl_time": "01/03/2026"}, "setl_time"),
])
def test_a_bad_2207_names_the_field(change, field):
    with pytest.raises(Refused, match=field):
        national.claim_2207("M", "H1", {**DATA, **change})


def test_a_float_is_taken_by_its_text_not_its_binary_value():
    claim = national.claim_2207("M", "H1", {**DATA, "feedetail": [{**LINE, "det_item_fee_sumamt": 0.1}]})
    assert claim["fee_details"][0]["det_item_fee_sumamt"] == Decimal("0.10")


def test_a_settlement_is_answered_with_national_names_local_time_and_money_as_text():
    result = {"claim_id": "gw-H1-MSG1", "setl_id": "S1", "psn_no": "P1", "mdtrt_id": "M1", "med_type": "11",
              "psn_type": "1101", "insu_admdvs": "152501", "mdtrtarea_admvs": "152501", "fixmedins_code": "H1",
              "setl_time": "2026-03-01T02:15:00+00:00", "pool_prop_selfpay": Decimal("0.1500"),
              "balc": Decimal("10.5"), "clr_type": "11", "clr_optins": "152501",
              **{name: Decimal("1.00") for name in national.MONEY_FIELDS},
              "setldetail": [{"fund_pay_type": "310100", "fund_payamt": Decimal("1"), "crt_payb_lmt_amt": None,
                              "setl_proc_info": "pooling"}]}
    answer = national.settled("settlement", result)
    assert (answer["infcode"], answer["err_msg"]) == (0, "")
    setlinfo = answer["output"]["setlinfo"]
    assert setlinfo["setl_time"] == "2026-03-01 10:15:00"
    assert (setlinfo["balc"], setlinfo["hifp_pay"], setlinfo["pool_prop_selfpay"]) == ("10.50", "1.00", "0.1500")
    assert answer["output"]["setldetail"][0]["fund_payamt"] == "1.00"
    refused = national.settled("rejection", {"claim_id": "c", "psn_no": "P1", "err_code": "NOT_INSURED",
                                             "err_msg": "benefits suspended"})
    assert (refused["infcode"], refused["err_msg"]) == (-1, "NOT_INSURED: benefits suspended")


CALLER = Caller("his", b"s" * 32, frozenset({"H1"}))
CALLERS = Callers({"his": CALLER}, skew=300)


def test_a_signed_request_authenticates_and_anything_else_does_not():
    body = b'{"infno": "2207"}'
    assert CALLERS.authenticate(CALLER.headers(1000, body), body, 1100) is CALLER
    wrong = [
        {},  # nothing
        CALLER.headers(1000, b"another body"),
        Caller("his", b"t" * 32).headers(1000, body),  # another secret
        {**CALLER.headers(1000, body), CALLER_HEADER: "nobody"},
    ]
    for headers in wrong:
        with pytest.raises(Unauthenticated):
            CALLERS.authenticate(headers, body, 1100)
    with pytest.raises(Unauthenticated, match="300 s"):
        CALLERS.authenticate(CALLER.headers(1000, body), body, 1301)


def test_the_callers_file_names_what_is_wrong(tmp_path: Path):
    (tmp_path / "his.key").write_text("x" * 40 + "\n")
    (tmp_path / "short.key").write_text("x" * 8)
    path = tmp_path / "callers.toml"
    path.write_text('[callers.his]\nsecret_file = "his.key"\nfixmedins_codes = ["H1"]\n')
    assert load_callers(path).by_id["his"].fixmedins_codes == {"H1"}
    for text, message in [('[callers.his]\nsecret_file = "short.key"\nfixmedins_codes = ["H1"]\n', "at least 32"),
                          ('[callers.his]\nsecret_file = "his.key"\n', "fixmedins_codes"),
                          ('[callers.his]\nsecret_file = "his.key"\nfixmedins_codes = ["H1"]\nextra = 1\n', "extra"),
                          ("nothing = 1\n", "no \\[callers")]:
        path.write_text(text)
        with pytest.raises(CallersFileError, match=message):
            load_callers(path)


def test_a_2208_names_its_original_once_and_only_its_own_institutions():
    assert national.original_2208("H1", {"setl_id": "S1"}) == ("S1", None)
    assert national.original_2208("H1", {"orig_claim_id": "gw-H1-MSG1"}) == (None, "gw-H1-MSG1")
    assert national.original_2208("H1", {"orig_claim_id": "legacy-7"}) == (None, "legacy-7")
    for data, message in [({}, "one of them"), ({"setl_id": "S1", "orig_claim_id": "c"}, "one of them"),
                          ({"orig_claim_id": "gw-H2-MSG1"}, "not settled for H1")]:
        with pytest.raises(Refused, match=message):
            national.original_2208("H1", data)
    reversal = national.reversal_2208("MSG2", "H1", {"psn_no": "P1"}, "2026-03-02 08:00:00", "gw-H1-MSG1")
    assert reversal == {"claim_id": "gw-H1-MSG2", "orig_claim_id": "gw-H1-MSG1", "psn_no": "P1",
                        "setl_time": "2026-03-02T08:00:00+08:00"}
    assert SchemaCatalog().decode(SchemaCatalog().encode("Reversal", reversal))[0].endswith("Reversal")


async def test_a_result_the_reply_consumer_cannot_decode_fails_its_waiters_not_the_loop():
    from types import SimpleNamespace

    from gongji.common.observe import Metrics
    from gongji.gateway.service import Replies
    from gongji.settings import Settings

    catalog = SchemaCatalog()
    replies = Replies(Settings(), catalog, Metrics("gateway"))
    broken, fine = replies.expect("c1"), replies.expect("c2")
    rejection = {"claim_id": "c2", "psn_no": "P1", "err_code": "UNKNOWN_PERSON", "err_msg": "not in the registry"}
    replies.take(SimpleNamespace(headers=[("gongji-id", b"c1"), ("gongji-type", b"settlement")], value=b"\xc3\x01junk"))
    replies.take(SimpleNamespace(headers=[("gongji-id", b"c2"), ("gongji-type", b"rejection")],
                                 value=catalog.encode("Rejection", rejection)))
    with pytest.raises(ValueError, match="cannot be read"):
        broken.result()
    kind, record = fine.result()
    assert kind == "rejection" and rejection.items() <= record.items()
    assert not replies.waiting


def test_the_longest_code_and_msgid_accepted_still_make_a_claim_id_the_wire_takes():
    code, msgid = "H" * 20, "M" * 40
    assert national.envelope({**BODY, "fixmedins_code": code, "msgid": msgid})[1:3] == (msgid, code)
    claim = national.claim_2207(msgid, code, DATA)
    assert len(claim["claim_id"]) <= 64
    with pytest.raises(Refused, match="fixmedins_code: 1 to 20"):
        national.envelope({**BODY, "fixmedins_code": "H" * 21})


def test_a_2206_is_the_2207_claim_under_the_questions_own_id_and_its_answer_names_no_settlement():
    infno, msgid, code, data = national.envelope({**BODY, "infno": "2206"})
    asked = national.claim_record("q-1", code, data)
    assert infno == "2206" and asked == {**national.claim_2207(msgid, code, data), "claim_id": "q-1"}
    record = {"claim_id": "q-1", "setl_id": "SETL1", "psn_no": "P1", "mdtrt_id": "M1", "med_type": "11",
              "psn_type": "1101", "insu_admdvs": "152501", "mdtrtarea_admvs": "152501", "fixmedins_code": "H1",
              "setl_time": "2026-03-01T02:15:00+00:00", "clr_type": "11", "clr_optins": "152501",
              "mulaid_holder_psn_no": None, "balc": Decimal("3"), "pool_prop_selfpay": Decimal("0.7000"),
              **{name: Decimal("1.5") for name in national.MONEY_FIELDS},
              "setldetail": [{"fund_pay_type": "310100", "fund_payamt": Decimal("1.5"), "crt_payb_lmt_amt": None,
                              "setl_proc_info": "x"}]}
    answer = national.presettled("settlement", record)
    settled = national.settled("settlement", record)
    assert answer["infcode"] == 0 and "setl_id" not in answer["output"]["setlinfo"]
    assert answer["output"]["setlinfo"] == {k: v for k, v in settled["output"]["setlinfo"].items()
                                            if k not in ("setl_id", "claim_id")}
    assert answer["output"]["setlinfo"]["setl_time"] == "2026-03-01 10:15:00"
    assert answer["output"]["setldetail"] == settled["output"]["setldetail"]
    refused = national.presettled("rejection", {"claim_id": "q-1", "err_code": "UNKNOWN_PERSON", "err_msg": "no"})
    assert refused == {"infcode": -1, "err_msg": "UNKNOWN_PERSON: no", "output": {}}


@pytest.mark.parametrize("data, inf_time, year", [
    ({"psn_no": "P1", "year": "2023"}, None, "2023"),
    ({"psn_no": "P1", "cum_ym": "202305"}, None, "2023"),
    ({"psn_no": "P1", "cum_ym": "2024-01"}, "2023-12-31 23:00:00", "2024"),
    ({"psn_no": "P1"}, "2022-12-31 23:30:00", "2022"),  # local time: still 2022 in Asia/Shanghai
    ({"psn_no": "P1"}, "2022-12-31T16:30:00+00:00", "2023"),  # 2023-01-01 00:30 in Asia/Shanghai
])
def test_a_5206_asks_for_a_year_given_or_the_envelopes(data, inf_time, year):
    query = national.query_5206("q-2", data, inf_time)
    assert query == {"query_id": "q-2", "psn_no": "P1", "year": year}
    assert SchemaCatalog().decode(SchemaCatalog().encode("AccumulatorQuery", query))[1] == query


@pytest.mark.parametrize("data, field", [
    ({"year": "2023"}, r"input\.data\.psn_no: required"),
    ({"psn_no": "P1"}, r"input\.data\.year: required"),
    ({"psn_no": "P1", "year": "23"}, r"input\.data\.year: '23' is not a year"),
    ({"psn_no": "P1", "cum_ym": "202313"}, r"input\.data\.cum_ym"),
])
def test_a_bad_5206_names_the_field(data, field):
    with pytest.raises(Refused, match=field):
        national.query_5206("q", data)


def test_a_5206_answer_has_the_rows_in_national_names_and_money_as_text():
    record = {"query_id": "q", "psn_no": "P1", "year": "2023", "insutype": "310", "insu_admdvs": "152501",
              "balc": Decimal("12.5"), "visits": 2,
              "cuminfo": [{"cum_type_code": "deductible", "cum_type_name": "普通门诊统筹起付线", "cum": Decimal("400"),
                           "payb_lmt_amt": Decimal("1000"), "crt_payb_lmt_amt": Decimal("600")},
                          {"cum_type_code": "medfee", "cum_type_name": "医疗费总额", "cum": Decimal("900.1"),
                           "payb_lmt_amt": None, "crt_payb_lmt_amt": None}]}
    answer = national.accumulated("accumulators", record)
    assert answer["infcode"] == 0 and answer["err_msg"] == ""
    output = answer["output"]
    assert (output["psn_no"], output["year"], output["balc"], output["visits"]) == ("P1", "2023", "12.50", 2)
    assert output["cuminfo"] == [
        {"cum_type_code": "deductible", "cum_type_name": "普通门诊统筹起付线", "cum": "400.00", "payb_lmt_amt": "1000.00",
         "crt_payb_lmt_amt": "600.00"},
        {"cum_type_code": "medfee", "cum_type_name": "医疗费总额", "cum": "900.10", "payb_lmt_amt": None,
         "crt_payb_lmt_amt": None}]
    refused = national.accumulated("rejection", {"claim_id": "q", "err_code": "UNKNOWN_PERSON", "err_msg": "not in"})
    assert refused == {"infcode": -1, "err_msg": "UNKNOWN_PERSON: not in", "output": {}}
