"""Avro schemas and the single-object codec: round trips, wire header, evolution, junk input."""

from __future__ import annotations

import copy
import io
import json
from decimal import Decimal as D
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gongji.common import avro
from gongji.common.avro import (
    DecodeError,
    EncodeError,
    SchemaCatalog,
    SchemaError,
    fingerprint_of,
    load_packaged_schema,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog()


def old_catalog() -> SchemaCatalog:
    """A service still on Claim v1: it knows nothing of the current claim schema."""
    return SchemaCatalog(current=[load_packaged_schema("history/claim.v1.avsc")], history=[])


# -- realistic records ------------------------------------------------------------------------

FEE_LINES = [
    {"feedetl_sn": "0001", "med_list_codg": "XA02BCA056A001010100445", "list_type": "101",
     "chrgitm_lv": "01", "det_item_fee_sumamt": D("120.00"), "cnt": D("2.0000"),
     "pric": D("60.00"), "pric_uplmt_amt": None, "selfpay_prop": None, "non_med_flag": None},
    {"feedetl_sn": "0002", "med_list_codg": "XC09AAA070A001010104000", "list_type": "101",
     "chrgitm_lv": "02", "det_item_fee_sumamt": D("88.50"), "cnt": D("1.5"),
     "pric": D("59.00"), "pric_uplmt_amt": D("50.00"), "selfpay_prop": D("0.1")},
    {"feedetl_sn": "0003", "med_list_codg": "ZF0300000001", "list_type": "301",
     "chrgitm_lv": "03", "det_item_fee_sumamt": D("30.00"), "cnt": D("1"),
     "pric": D("30.00"), "non_med_flag": "1"},
]

CLAIM = {
    "claim_id": "990100-H0001-20230301-000017", "mdtrt_id": "MDTRT-20230301-0017",
    "psn_no": "99010000000000001234", "fixmedins_code": "H99010000001", "med_type": "11",
    "insutype": "310", "setl_time": "2023-03-01T10:15:00+08:00", "acct_used_flag": "1",
    "fee_details": FEE_LINES,
}

SETL_FIELDS = {
    "claim_id": "990100-H0001-20230301-000017", "setl_id": "S-5f0c2a9e1b7d",
    "psn_no": "99010000000000001234", "mdtrt_id": "MDTRT-20230301-0017", "med_type": "11",
    "psn_type": "1101", "insu_admdvs": "990100", "mdtrtarea_admvs": "990100",
    "fixmedins_code": "H99010000001", "setl_time": "2023-03-01T10:15:00+08:00",
    "medfee_sumamt": D("238.50"), "fulamt_ownpay_amt": D("30.00"), "overlmt_selfpay": D("13.50"),
    "preselfpay_amt": D("7.50"), "inscp_scp_amt": D("187.50"), "act_pay_dedc": D("50.00"),
    "hifp_pay": D("68.75"), "pool_prop_selfpay": D("0.5000"), "hifob_pay": D("0.00"),
    "cvlserv_pay": D("0.00"), "maf_pay": D("0.00"), "oth_pay": D("0.00"),
    "fund_pay_sumamt": D("68.75"), "psn_part_amt": D("169.75"), "acct_pay": D("100.00"),
    "acct_mulaid_pay": D("39.75"), "psn_cash_pay": D("30.00"), "balc": D("0.00"),
    "clr_type": "11", "clr_optins": "990100",
    "setldetail": [
        {"fund_pay_type": "310100", "fund_payamt": D("68.75"), "crt_payb_lmt_amt": D("1431.25"),
         "setl_proc_info": "inscp 187.50 - per-visit deductible 50.00 = 137.50 x 50% = 68.75"},
        {"fund_pay_type": "310200", "fund_payamt": D("100.00"), "crt_payb_lmt_amt": None,
         "setl_proc_info": "own account 100.00 of eligible 139.75 (non-medical 30.00 excluded)"},
    ],
}


def negated(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in record.items():
        if isinstance(value, D) and key not in ("pool_prop_selfpay", "balc"):
            value = -value
        out[key] = value
    out["setldetail"] = [
        {**line, "fund_payamt": -line["fund_payamt"]} for line in record["setldetail"]
    ]
    return out


REVERSAL_RESULT = {
    **negated(SETL_FIELDS), "claim_id": "990100-H0001-20230302-000003", "setl_id": "S-77ad30c41e02",
    "orig_claim_id": SETL_FIELDS["claim_id"], "orig_setl_id": SETL_FIELDS["setl_id"],
    "setl_time": "2024-01-03T09:00:00+08:00", "balc": D("100.00"),
}

RECORDS: dict[str, dict[str, Any]] = {
    "Institution": {"fixmedins_code": "H15250100003", "fixmedins_name": "二连浩特市社区卫生服务中心",
                    "fixmedins_type": "1", "medins_lv": "1", "grassroots": True, "admdvs": "152501"},
    "Person": {"psn_no": "15250100000000000042", "insutype": "310", "psn_type": "1201",
               "insu_admdvs": "152501", "psn_insu_stas": "1", "fd_fixmedins_code": "H15250100003",
               "mulaid_holder_psn_no": "15250100000000000041", "mulaid_relation": "spouse",
               "psn_idet_type": None, "chronic_diseases": ["M03900", "M01600"]},
    "Claim": CLAIM,
    "Reversal": {"claim_id": "990100-H0001-20230302-000003", "orig_claim_id": CLAIM["claim_id"],
                 "psn_no": CLAIM["psn_no"], "setl_time": "2024-01-03T09:00:00+08:00"},
    "Credit": {"credit_id": "CR-152501-202301-0042", "psn_no": "15250100000000000042",
               "ym": "2023-01", "crdt_type": "monthly", "crdt_base": D("3850.00")},
    "Settlement": SETL_FIELDS,
    "ReversalResult": REVERSAL_RESULT,
    "Rejection": {"claim_id": "990100-H0001-20230301-000018", "psn_no": "99010000000000001234",
                  "err_code": "UNKNOWN_INSTITUTION",
                  "err_msg": "Institution H99019999999 is not in the registry; send its "
                             "registry.institutions record, then resend the claim.",
                  "input_type": "claim"},
    "CreditResult": {"credit_id": "CR-152501-202301-0042", "psn_no": "15250100000000000042",
                     "ym": "2023-01", "amount": D("77.00"), "balc": D("1277.35")},
    "DeadLetter": {"topic": "claims", "partition": 3, "offset": 1_234_567_890_123,
                   "key": b"99010000000000001234", "reason": "unknown writer schema fingerprint",
                   "original": b"\xc3\x01\x00\x11\x22\x33\x44\x55\x66\x77\x02ab",
                   "failed_at": "2023-03-01T10:15:02.120+08:00", "service": "settlement"},
    "ClearingStatement": {
        "statement_id": "CLR2023030A1B2C3D4E5F6A7B8C9D0", "ym": "2023-03", "region_a": "152501",
        "region_b": "990100",
        "a_to_b": {"treatment_admdvs": "152501", "insured_admdvs": "990100", "settlements": 12, "adjustments": 1,
                   "medfee_sumamt": D("5432.10"), "hifp_pay": D("1200.00"), "hifob_pay": D("0.00"),
                   "cvlserv_pay": D("0.00"), "maf_pay": D("30.00"), "fund_pay_sumamt": D("1230.00"),
                   "acct_pay": D("410.50"), "owed": D("1640.50")},
        "b_to_a": {"treatment_admdvs": "990100", "insured_admdvs": "152501", "settlements": -1, "adjustments": 1,
                   "medfee_sumamt": D("-20.00"), "hifp_pay": D("-5.00"), "hifob_pay": D("0.00"),
                   "cvlserv_pay": D("0.00"), "maf_pay": D("0.00"), "fund_pay_sumamt": D("-5.00"),
                   "acct_pay": D("0.00"), "owed": D("-5.00")},
        "net_to_a": D("1645.50"), "closed_at": "2023-04-01T00:00:00+00:00"},
    "FraudSignal": {
        "signal_id": "FS-IMPOSSIBLE_TRAVEL-15250100000000000042-20230301", "rule_id": "IMPOSSIBLE_TRAVEL",
        "category": "fraud", "severity": "high", "subject_type": "person", "subject_id": "15250100000000000042",
        "admdvs": "152501", "window_start": "2023-03-01T09:00:00+08:00", "window_end": "2023-03-01T11:00:00+08:00",
        "claim_ids": ["C-152501-0001", "C-990100-0007"], "count": 2, "threshold": "< 4 h between regions",
        "amount": None, "reason": "Settled in 152501 at 09:12 and in 990100 at 10:40, 88 minutes apart.",
        "detected_at": "2026-11-23T15:00:00+00:00", "status": "raised"},
    "AccumulatorQuery": {"query_id": "q-5f0c2a9e1b7d", "psn_no": "15250100000000000042", "year": "2023"},
    "Accumulators": {
        "query_id": "q-5f0c2a9e1b7d", "psn_no": "15250100000000000042", "year": "2023", "insutype": "310",
        "insu_admdvs": "152501", "balc": D("1277.35"), "visits": 2,
        "cuminfo": [{"cum_type_code": "deductible", "cum_type_name": "普通门诊统筹起付线", "cum": D("200.00"),
                     "payb_lmt_amt": D("200.00"), "crt_payb_lmt_amt": D("0.00")},
                    {"cum_type_code": "medfee", "cum_type_name": "医疗费总额", "cum": D("900.00"),
                     "payb_lmt_amt": None, "crt_payb_lmt_amt": None}]},
}

# Field names exactly as CONTRACT.md (and the brief) spell them; order as in the schema.
SETTLEMENT_NAMES = [
    "claim_id", "setl_id", "psn_no", "mdtrt_id", "med_type", "psn_type", "insu_admdvs",
    "mdtrtarea_admvs", "fixmedins_code", "setl_time", "medfee_sumamt", "fulamt_ownpay_amt",
    "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc", "hifp_pay",
    "pool_prop_selfpay", "hifob_pay", "cvlserv_pay", "maf_pay", "oth_pay", "fund_pay_sumamt",
    "psn_part_amt", "acct_pay", "acct_mulaid_pay", "psn_cash_pay", "balc", "clr_type",
    "clr_optins", "setldetail", "mulaid_holder_psn_no",
]
FIELD_NAMES = {
    "Institution": ["fixmedins_code", "fixmedins_name", "fixmedins_type", "medins_lv",
                    "grassroots", "admdvs"],
    "Person": ["psn_no", "insutype", "psn_type", "insu_admdvs", "psn_insu_stas",
               "fd_fixmedins_code", "mulaid_holder_psn_no", "mulaid_relation", "psn_idet_type",
               "chronic_diseases", "cvlserv_flag"],
    "Claim": ["claim_id", "mdtrt_id", "psn_no", "fixmedins_code", "med_type", "insutype",
              "setl_time", "acct_used_flag", "fee_details", "dise_codg", "rx_fixmedins_code"],
    "FeeDetail": ["feedetl_sn", "med_list_codg", "list_type", "chrgitm_lv",
                  "det_item_fee_sumamt", "cnt", "pric", "pric_uplmt_amt", "selfpay_prop",
                  "non_med_flag"],
    "Reversal": ["claim_id", "orig_claim_id", "psn_no", "setl_time"],
    "Credit": ["credit_id", "psn_no", "ym", "crdt_type", "amount", "crdt_base"],
    "Settlement": SETTLEMENT_NAMES,
    "SetlDetail": ["fund_pay_type", "fund_payamt", "crt_payb_lmt_amt", "setl_proc_info"],
    "ReversalResult": SETTLEMENT_NAMES[:2] + ["orig_claim_id", "orig_setl_id", "orig_setl_time"]
    + SETTLEMENT_NAMES[2:],
    "Rejection": ["claim_id", "credit_id", "psn_no", "err_code", "err_msg", "input_type"],
    "CreditResult": ["credit_id", "psn_no", "ym", "amount", "balc", "insu_admdvs"],
    "ClearingStatement": ["statement_id", "ym", "region_a", "region_b", "a_to_b", "b_to_a", "net_to_a",
                          "closed_at"],
    "ClearingFlow": ["treatment_admdvs", "insured_admdvs", "settlements", "adjustments", "medfee_sumamt",
                     "hifp_pay", "hifob_pay", "cvlserv_pay", "maf_pay", "fund_pay_sumamt", "acct_pay", "owed"],
    "DeadLetter": ["topic", "partition", "offset", "key", "reason", "original", "failed_at",
                   "service"],
    "FraudSignal": ["signal_id", "rule_id", "category", "severity", "subject_type", "subject_id", "admdvs",
                    "window_start", "window_end", "claim_ids", "count", "threshold", "amount", "reason",
                    "detected_at", "status"],
    "AccumulatorQuery": ["query_id", "psn_no", "year"],
    "Accumulators": ["query_id", "psn_no", "year", "insutype", "insu_admdvs", "balc", "visits", "cuminfo"],
    "Cumulative": ["cum_type_code", "cum_type_name", "cum", "payb_lmt_amt", "crt_payb_lmt_amt"],
}
OPTIONAL = {
    ("FeeDetail", "pric_uplmt_amt"), ("FeeDetail", "selfpay_prop"), ("FeeDetail", "non_med_flag"),
    ("Person", "fd_fixmedins_code"), ("Person", "mulaid_holder_psn_no"),
    ("Person", "mulaid_relation"), ("Person", "psn_idet_type"), ("Person", "chronic_diseases"),
    ("Person", "cvlserv_flag"), ("Claim", "dise_codg"), ("Claim", "rx_fixmedins_code"),
    ("Credit", "amount"), ("Credit", "crdt_base"), ("Rejection", "claim_id"),
    ("Rejection", "credit_id"), ("Rejection", "input_type"), ("Rejection", "psn_no"),
    ("ReversalResult", "orig_setl_time"), ("DeadLetter", "key"),
    ("SetlDetail", "crt_payb_lmt_amt"), ("FraudSignal", "admdvs"), ("FraudSignal", "amount"),
    ("Settlement", "mulaid_holder_psn_no"), ("ReversalResult", "mulaid_holder_psn_no"), ("CreditResult", "insu_admdvs"),
    ("Cumulative", "payb_lmt_amt"), ("Cumulative", "crt_payb_lmt_amt"),
}
MONEY = (16, 2)
DECIMALS = {
    # Prices carry 6 places, as in the national 2204 interface (a tablet can cost 0.0125 yuan).
    "det_item_fee_sumamt": MONEY, "pric": (20, 6), "pric_uplmt_amt": (20, 6), "cnt": (12, 4),
    "selfpay_prop": (6, 4), "pool_prop_selfpay": (6, 4), "amount": MONEY, "crdt_base": MONEY,
    "balc": MONEY, "fund_payamt": MONEY, "crt_payb_lmt_amt": MONEY, "owed": MONEY, "net_to_a": MONEY,
    "cum": MONEY, "payb_lmt_amt": MONEY,
    **{name: MONEY for name in SETTLEMENT_NAMES[10:28] if name != "pool_prop_selfpay"},
}


def schema_records(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every record definition inside a raw .avsc, by short name."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch)
        elif isinstance(node, dict):
            if node.get("type") == "record":
                found[node["name"]] = node
                for field in node["fields"]:
                    walk(field["type"])
            elif node.get("type") in ("array", "map"):
                walk(node.get("items", node.get("values")))

    walk(schema)
    return found


def raw_schemas() -> dict[str, dict[str, Any]]:
    from importlib.resources import files

    folder = files("gongji.schemas")
    return {
        entry.name: json.loads(entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir() if entry.name.endswith(".avsc")
    }


def with_defaults(record: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """What decode must return: omitted optional fields come back as None."""
    out = {}
    for field in schema["fields"]:
        value = record.get(field["name"], field.get("default"))
        ftype = field["type"]
        if isinstance(ftype, dict) and ftype.get("type") == "array" and isinstance(ftype["items"], dict):
            value = [with_defaults(item, ftype["items"]) for item in value]
        out[field["name"]] = value
    return out


# -- schemas ----------------------------------------------------------------------------------

def test_catalog_holds_every_contract_record(catalog: SchemaCatalog) -> None:
    assert catalog.names == {f"gongji.{name}" for name in RECORDS}


def test_field_names_are_the_contract_names() -> None:
    records: dict[str, dict[str, Any]] = {}
    for schema in raw_schemas().values():
        assert schema["namespace"] == "gongji"
        records.update(schema_records(schema))
    assert {name: [f["name"] for f in rec["fields"]] for name, rec in records.items()} == FIELD_NAMES


def test_types_optionality_and_decimals() -> None:
    for file_name, schema in raw_schemas().items():
        for rec_name, rec in schema_records(schema).items():
            assert rec.get("doc"), f"{rec_name} in {file_name} has no doc"
            for field in rec["fields"]:
                name, ftype = field["name"], field["type"]
                where = f"{rec_name}.{name}"
                optional = isinstance(ftype, list)
                assert optional == ((rec_name, name) in OPTIONAL), where
                if optional:
                    assert ftype[0] == "null" and len(ftype) == 2, where
                    assert "default" in field and field["default"] is None, where
                    ftype = ftype[1]
                if name in DECIMALS:
                    assert ftype == {"type": "bytes", "logicalType": "decimal",
                                     "precision": DECIMALS[name][0], "scale": DECIMALS[name][1]}, where
                elif name == "grassroots":
                    assert ftype == "boolean"
                elif name in ("partition", "offset", "key", "original", "fee_details",
                              "setldetail", "chronic_diseases", "settlements", "adjustments", "a_to_b", "b_to_a",
                              "claim_ids", "count", "visits", "cuminfo"):
                    continue
                else:  # codes, ids, times: strings, never ints
                    assert ftype == "string", where


def test_schema_files_are_parsed_once(monkeypatch: pytest.MonkeyPatch, catalog: SchemaCatalog) -> None:
    data = catalog.encode("Claim", CLAIM)

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("schema work per message")

    monkeypatch.setattr(avro.fastavro, "parse_schema", forbidden)
    monkeypatch.setattr(avro, "to_parsing_canonical_form", forbidden)
    monkeypatch.setattr(avro, "files", forbidden)
    for _ in range(3):
        assert catalog.decode(catalog.encode("Claim", CLAIM)) == catalog.decode(data)


# -- round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(RECORDS))
def test_round_trip(catalog: SchemaCatalog, name: str) -> None:
    record = RECORDS[name]
    data = catalog.encode(name, record)
    decoded_name, decoded = catalog.decode(data)
    assert decoded_name == name
    assert decoded == with_defaults(record, catalog.schema(name))
    # Exact types: money stays Decimal with its schema scale, strings stay strings.
    for key, value in decoded.items():
        if key in DECIMALS and value is not None:
            assert isinstance(value, D) and value.as_tuple().exponent == -DECIMALS[key][1], key


def test_round_trip_nested_lines_and_nulls(catalog: SchemaCatalog) -> None:
    _, claim = catalog.decode(catalog.encode("gongji.Claim", CLAIM))
    lines = claim["fee_details"]
    assert [line["feedetl_sn"] for line in lines] == ["0001", "0002", "0003"]
    assert lines[0]["pric_uplmt_amt"] is None and lines[0]["non_med_flag"] is None
    assert lines[1]["cnt"] == D("1.5") and str(lines[1]["cnt"]) == "1.5000"
    assert str(lines[1]["selfpay_prop"]) == "0.1000"
    assert lines[2]["non_med_flag"] == "1" and lines[2]["selfpay_prop"] is None
    _, person = catalog.decode(catalog.encode("Person", {**RECORDS["Person"], "chronic_diseases": None}))
    assert person["chronic_diseases"] is None


def test_negative_amounts_round_trip(catalog: SchemaCatalog) -> None:
    _, rev = catalog.decode(catalog.encode("ReversalResult", REVERSAL_RESULT))
    assert rev["hifp_pay"] == D("-68.75") and rev["setldetail"][0]["fund_payamt"] == D("-68.75")
    assert rev["balc"] == D("100.00") and rev["pool_prop_selfpay"] == D("0.5000")


@given(st.decimals(min_value=D("-99999999999999.99"), max_value=D("99999999999999.99"), places=2))
def test_any_money_round_trips_exactly(amount: D) -> None:
    catalog = _shared_catalog()
    record = {**RECORDS["CreditResult"], "amount": amount, "balc": -amount}
    _, decoded = catalog.decode(catalog.encode("CreditResult", record))
    assert decoded["amount"] == amount and decoded["balc"] == -amount


_CATALOG: list[SchemaCatalog] = []


def _shared_catalog() -> SchemaCatalog:
    if not _CATALOG:
        _CATALOG.append(SchemaCatalog())
    return _CATALOG[0]


def test_decode_accepts_bytearray_and_memoryview(catalog: SchemaCatalog) -> None:
    data = catalog.encode("Reversal", RECORDS["Reversal"])
    assert catalog.decode(bytearray(data)) == catalog.decode(memoryview(data)) == ("Reversal", RECORDS["Reversal"])


# -- wire header ------------------------------------------------------------------------------

def rabin64(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification gives it (independent of fastavro)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_rabin_reference_matches_the_spec_vectors() -> None:
    # From the Avro test suite (share/test/data/schema-tests.txt), as signed 64-bit numbers.
    assert rabin64(b'"null"') == 7195948357588979594
    assert rabin64(b'"int"') == 8247732601305521295


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_header_is_marker_and_little_endian_fingerprint(catalog: SchemaCatalog, name: str) -> None:
    data = catalog.encode(name, RECORDS[name])
    canonical = fastavro.schema.to_parsing_canonical_form(catalog.schema(name))
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == rabin64(canonical.encode()).to_bytes(8, "little")
    assert data[2:10] == catalog.fingerprint(name) == fingerprint_of(load_packaged_schema(
        {"ReversalResult": "reversal_result", "CreditResult": "credit_result",
         "DeadLetter": "dead_letter", "ClearingStatement": "clearing_statement",
         "FraudSignal": "fraud_signal", "AccumulatorQuery": "accumulator_query"}.get(name, name.lower()) + ".avsc"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, catalog.schema(name), RECORDS[name])
    assert data[10:] == body.getvalue()


def test_canonical_form_ignores_docs_defaults_and_logical_types(catalog: SchemaCatalog) -> None:
    canonical = fastavro.schema.to_parsing_canonical_form(catalog.schema("Claim"))
    assert canonical.startswith('{"name":"gongji.Claim","type":"record","fields":[')
    assert "doc" not in canonical and "default" not in canonical and "logicalType" not in canonical


def test_fingerprints_differ_between_records(catalog: SchemaCatalog) -> None:
    fps = {catalog.fingerprint(name) for name in RECORDS}
    assert len(fps) == len(RECORDS)


# -- evolution --------------------------------------------------------------------------------

def test_current_claim_only_adds_optional_fields_to_v1() -> None:
    old = schema_records(load_packaged_schema("history/claim.v1.avsc"))
    new = schema_records(load_packaged_schema("claim.avsc"))
    assert old.keys() == new.keys() == {"Claim", "FeeDetail"}
    added = []
    for rec_name, old_rec in old.items():
        old_fields = {f["name"]: f for f in old_rec["fields"]}
        new_fields = {f["name"]: f for f in new[rec_name]["fields"]}
        assert old_fields.keys() <= new_fields.keys(), "a field was removed"
        for name, field in new_fields.items():
            if name in old_fields:
                if name == "fee_details":  # the array itself; its FeeDetail items are compared apart
                    assert field["type"]["type"] == old_fields[name]["type"]["type"] == "array"
                else:
                    assert field["type"] == old_fields[name]["type"], f"{name} changed"
                    assert field.get("default") == old_fields[name].get("default"), f"{name} default"
            else:
                assert field["type"][0] == "null" and field["default"] is None, name
                added.append(f"{rec_name}.{name}")
    assert added == ["Claim.dise_codg", "Claim.rx_fixmedins_code", "FeeDetail.non_med_flag"]
    assert fingerprint_of(load_packaged_schema("history/claim.v1.avsc")) != fingerprint_of(
        load_packaged_schema("claim.avsc"))


def test_old_reader_decodes_new_claims_once_it_registered_the_writer(catalog: SchemaCatalog) -> None:
    old = old_catalog()
    new_bytes = catalog.encode("Claim", CLAIM)
    with pytest.raises(DecodeError, match=catalog.fingerprint("Claim").hex()):
        old.decode(new_bytes)
    # The writer schema arrives as JSON text, e.g. from a schema topic.
    fp = old.register(json.dumps(load_packaged_schema("claim.avsc"), ensure_ascii=False))
    assert fp == new_bytes[2:10]
    name, claim = old.decode(new_bytes)
    assert name == "Claim"
    for line, sent in zip(claim["fee_details"], FEE_LINES, strict=True):
        assert "non_med_flag" not in line
        assert line["det_item_fee_sumamt"] == sent["det_item_fee_sumamt"]
        assert line["selfpay_prop"] == sent.get("selfpay_prop")
    assert {k: v for k, v in claim.items() if k != "fee_details"} == {
        k: v for k, v in CLAIM.items() if k != "fee_details"}
    # Its own writes stay v1.
    assert old.encode("Claim", claim)[2:10] == old.fingerprint("Claim") != fp


def test_new_reader_fills_the_default_for_old_claims(catalog: SchemaCatalog) -> None:
    old = old_catalog()
    v1_claim = copy.deepcopy(CLAIM)
    for line in v1_claim["fee_details"]:
        line.pop("non_med_flag", None)
    with pytest.raises(EncodeError, match="non_med_flag"):
        old.encode("Claim", CLAIM)  # v1 has no such field: refused, not silently dropped
    old_bytes = old.encode("Claim", v1_claim)
    assert old_bytes[2:10] != catalog.fingerprint("Claim")
    # The default catalog knows v1 from schemas/history/ without any registration.
    name, claim = catalog.decode(old_bytes)
    assert name == "Claim"
    assert [line["non_med_flag"] for line in claim["fee_details"]] == [None, None, None]
    assert claim == with_defaults(v1_claim, catalog.schema("Claim"))
    # Without history, the same bytes are unknown until registered.
    bare = SchemaCatalog(history=[])
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        bare.decode(old_bytes)
    bare.register(load_packaged_schema("history/claim.v1.avsc"))
    assert bare.decode(old_bytes) == (name, claim)


def test_fraud_signal_adds_only_status_with_its_default_to_v1(catalog: SchemaCatalog) -> None:
    """Issue 14's withdrawals: `status` added with a default, so a v1 signal reads as "raised"; a v1
    reader that registered the writer still reads a withdrawal, but without its status (it cannot tell
    it from a raise: readers of fraud.signals must read the current schema to net withdrawals)."""
    old_schema, new_schema = (schema_records(load_packaged_schema(name))["FraudSignal"]
                              for name in ("history/fraud_signal.v1.avsc", "fraud_signal.avsc"))
    old_fields = {f["name"]: f for f in old_schema["fields"]}
    new_fields = {f["name"]: f for f in new_schema["fields"]}
    assert [name for name in new_fields if name not in old_fields] == ["status"]
    assert all(new_fields[name]["type"] == field["type"] and new_fields[name].get("default") == field.get("default")
               for name, field in old_fields.items())
    assert (new_fields["status"]["type"], new_fields["status"]["default"]) == ("string", "raised")
    v1_signal = {k: v for k, v in RECORDS["FraudSignal"].items() if k != "status"}
    v1 = SchemaCatalog(current=[load_packaged_schema("history/fraud_signal.v1.avsc")], history=[])
    assert catalog.decode(v1.encode("FraudSignal", v1_signal)) == ("FraudSignal", {**v1_signal, "status": "raised"})
    withdrawal = {**RECORDS["FraudSignal"], "status": "withdrawn"}
    v1.register(json.dumps(load_packaged_schema("fraud_signal.avsc"), ensure_ascii=False))
    assert v1.decode(catalog.encode("FraudSignal", withdrawal)) == ("FraudSignal", v1_signal)
    assert catalog.decode(catalog.encode("FraudSignal", withdrawal)) == ("FraudSignal", withdrawal)


def test_register_is_idempotent_and_guards_decimal_scale() -> None:
    cat = SchemaCatalog(history=[])
    v1 = load_packaged_schema("history/claim.v1.avsc")
    assert cat.register(v1) == cat.register(json.dumps(v1)) == fingerprint_of(v1)
    # Same canonical form (so same fingerprint) but pric in fen-precision: would silently
    # misread every amount by a factor of 100 if accepted.
    rescaled = copy.deepcopy(v1)
    fee = rescaled["fields"][-1]["type"]["items"]
    next(f for f in fee["fields"] if f["name"] == "pric")["type"]["scale"] = 4
    assert fingerprint_of(rescaled) == fingerprint_of(v1)
    with pytest.raises(SchemaError, match="scale"):
        cat.register(rescaled)
    with pytest.raises(SchemaError):
        cat.register("{not json")
    with pytest.raises(SchemaError):
        cat.register({"type": "record", "name": "Broken", "fields": [{"name": "x", "type": "nope"}]})


def test_unknown_record_name_is_read_as_written() -> None:
    cat = SchemaCatalog()
    extra = {"type": "record", "name": "LedgerAudit", "namespace": "gongji",
             "fields": [{"name": "psn_no", "type": "string"}]}
    writer = SchemaCatalog(current=[extra], history=[])
    data = writer.encode("LedgerAudit", {"psn_no": "p1"})
    with pytest.raises(DecodeError):
        cat.decode(data)
    cat.register(extra)
    assert cat.decode(data) == ("LedgerAudit", {"psn_no": "p1"})


# -- encode errors ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "change", "needle"),
    [
        ("Claim", {"med_type": 11}, "med_type"),  # codes are strings, never ints
        ("Claim", {"claim_id": None}, "claim_id"),
        ("Claim", {"extra_personal_data": "x"}, "extra_personal_data"),
        ("CreditResult", {"amount": 77.0}, "amount"),  # no binary floats for money
        ("CreditResult", {"amount": D("77.005")}, "Scale"),  # no silent rounding
        ("CreditResult", {"amount": "77.00"}, "amount"),
        ("Nope", {}, "no current schema named 'Nope'"),
    ],
)
def test_encode_refuses_bad_records(catalog: SchemaCatalog, name: str, change: dict, needle: str) -> None:
    record = {**RECORDS.get(name, {}), **change}
    with pytest.raises(EncodeError, match=needle):
        catalog.encode(name, record)


def test_encode_refuses_missing_required_field(catalog: SchemaCatalog) -> None:
    record = {k: v for k, v in RECORDS["Reversal"].items() if k != "orig_claim_id"}
    with pytest.raises(EncodeError, match="orig_claim_id"):
        catalog.encode("Reversal", record)
    assert issubclass(EncodeError, ValueError) and issubclass(DecodeError, ValueError)


# -- junk input -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty message"),
        (None, "empty message"),
        (b"\xc3\x01\x00", "only 3 byte"),
        (b'{"event_type": "claim", "claim_id": "x"}', "looks like JSON"),
        (b"\x00\x00\x00\x00\x07\x02ab\x02cd", "Confluent"),
        (b"\xc3\x02" + bytes(8) + b"\x02a", "expected marker c3 01, got c3 02"),
        (b"\xc3\x01\x01\x23\x45\x67\x89\xab\xcd\xef\x02a",
         "unknown writer schema fingerprint 0123456789abcdef .*0xefcdab8967452301"),
    ],
)
def test_junk_is_refused_with_a_reason(catalog: SchemaCatalog, data: bytes | None, needle: str) -> None:
    with pytest.raises(DecodeError, match=needle):
        catalog.decode(data)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_every_truncation_is_refused(catalog: SchemaCatalog, name: str) -> None:
    data = catalog.encode(name, RECORDS[name])
    for cut in range(10, len(data)):
        with pytest.raises(DecodeError, match=f"does not match writer schema gongji.{name} "):
            catalog.decode(data[:cut])


def test_truncated_body_says_it_ended_early(catalog: SchemaCatalog) -> None:
    data = catalog.encode("Claim", CLAIM)
    with pytest.raises(DecodeError, match="ends too early"):
        catalog.decode(data[:-5])


@pytest.mark.parametrize("garbage", [b"\x00", b"\x02ab", b"\xc3\x01"])
def test_trailing_bytes_are_refused(catalog: SchemaCatalog, garbage: bytes) -> None:
    data = catalog.encode("Claim", CLAIM)
    with pytest.raises(DecodeError, match=rf"{len(garbage)} trailing byte\(s\) after a complete gongji.Claim"):
        catalog.decode(data + garbage)


def test_invalid_utf8_is_refused(catalog: SchemaCatalog) -> None:
    data = catalog.encode("Reversal", {**RECORDS["Reversal"], "claim_id": "ab"})
    bad = data[:11] + b"\xff\xfe" + data[13:]
    with pytest.raises(DecodeError, match="UnicodeDecodeError"):
        catalog.decode(bad)


@settings(max_examples=500, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_random_bytes_raise_decode_error(catalog: SchemaCatalog, data: bytes) -> None:
    with pytest.raises(DecodeError):
        catalog.decode(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(RECORDS)), st.binary(max_size=300))
def test_random_body_behind_a_valid_header_never_escapes(catalog: SchemaCatalog, name: str, body: bytes) -> None:
    data = b"\xc3\x01" + catalog.fingerprint(name) + body
    try:
        decoded_name, record = catalog.decode(data)
    except DecodeError as exc:
        assert str(exc)
    else:  # some random bodies happen to be valid records
        assert decoded_name == name
        assert isinstance(record, dict)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(RECORDS)), st.data())
def test_mutated_messages_decode_or_raise_decode_error(catalog: SchemaCatalog, name: str, data: st.DataObject) -> None:
    message = bytearray(catalog.encode(name, RECORDS[name]))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(10, len(message) - 1))
        op = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if op == "flip":
            message[pos] ^= data.draw(st.integers(1, 255))
        elif op == "drop" and len(message) > 11:
            del message[pos]
        else:
            message.insert(pos, data.draw(st.integers(0, 255)))
    try:
        catalog.decode(bytes(message))
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1))
def test_decimal_bytes_encode_exactly_as_the_decimal_does(fen):
    """The service encodes money as unscaled bytes (encode_unscaled + decimal_bytes); the bytes
    on the wire, header included, must be those of the Decimal, and read back as it."""
    from gongji.common.avro import decimal_bytes

    catalog = SchemaCatalog()
    record = {"credit_id": "K1", "psn_no": "P1", "ym": "2023-01"}
    as_decimal = catalog.encode("CreditResult", {**record, "amount": D(fen).scaleb(-2), "balc": D("0.00")})
    as_bytes = catalog.encode_unscaled("CreditResult",
                                       {**record, "amount": decimal_bytes(fen), "balc": decimal_bytes(0)})
    assert as_bytes == as_decimal
    assert catalog.decode(as_bytes)[1]["amount"] == D(fen).scaleb(-2)


def test_claims_written_before_rx_fixmedins_code_decode_without_it(catalog: SchemaCatalog) -> None:
    """双通道 added Claim.rx_fixmedins_code (null by default); claims already on the topic, written with
    the schema before it (history/claim.v2.avsc), still decode, with the field absent."""
    v2 = SchemaCatalog(current=[load_packaged_schema("history/claim.v2.avsc")], history=[])
    sent = {k: v for k, v in CLAIM.items() if k != "rx_fixmedins_code"}
    old_bytes = v2.encode("Claim", sent)
    assert old_bytes[2:10] != catalog.fingerprint("Claim")
    name, claim = catalog.decode(old_bytes)
    assert name == "Claim" and claim.get("rx_fixmedins_code") is None
    assert claim["dise_codg"] == sent.get("dise_codg")
