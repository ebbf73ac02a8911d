"""The generated Avro writer (gongji.common.avro_codegen) writes exactly fastavro's bytes: over every
result of the bench's synthetic traffic (from the engine's object, as the service does), over records
generated from every current schema, and it refuses what fastavro refuses."""

from __future__ import annotations

import io
from decimal import Decimal

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gongji.common.avro import EncodeError, SchemaCatalog, decimal_bytes
from gongji.common.avro_codegen import _long, compile_writer
from gongji.contract.wire import ACCUMULATORS, ACCUMULATORS_RECORD, OUTPUT_RECORDS
from gongji.settlement.codec import ResultEncoder, from_output
from gongji.settlement.domain import Settlement
from tests.unit.traffic import CATALOG, settled

pytestmark = pytest.mark.unit
RECORDS = {**OUTPUT_RECORDS, ACCUMULATORS: ACCUMULATORS_RECORD}
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fastavro_unscaled(name: str, record: dict) -> bytes:
    writer = CATALOG._writer(name)
    buf = io.BytesIO()
    buf.write(writer.header)
    fastavro.schemaless_writer(buf, writer.unscaled, record, strict_allow_default=True)
    return buf.getvalue()


def test_every_result_of_synthetic_traffic_is_written_as_fastavro_writes_it():
    outputs = settled(1500, 600)
    encoder = ResultEncoder(CATALOG, RECORDS)
    kinds = set()
    for output in outputs:
        kind, value, ident = encoder.encode(output)
        wire_kind, wire = from_output(output)  # yuan Decimals: fastavro's own decimal logic
        assert (kind, value) == (wire_kind, CATALOG.encode(RECORDS[kind], wire)), output
        assert ident == (wire.get("claim_id") or wire.get("credit_id") or "")
        kinds.add((kind, type(output.value) is Settlement and output.value.mulaid_holder_psn_no is not None))
    assert {"settlement", "reversal", "rejection", "credit"} <= {kind for kind, _ in kinds}
    assert ("settlement", True) in kinds  # a family account paid: the optional string is set


def test_every_current_schema_compiles():
    for name in sorted(CATALOG.names):
        assert compile_writer(CATALOG.schema(name)) is not None, name


def _value(schema, names) -> st.SearchStrategy:
    if isinstance(schema, list):
        return st.one_of(*(_value(branch, names) for branch in schema))
    if isinstance(schema, str):
        if schema in names:
            return _value(names[schema], names)
        schema = {"type": schema}
    kind = schema["type"]
    if isinstance(kind, (dict, list)):
        return _value(kind, names)
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "int":
        return st.integers(-(2**31), 2**31 - 1)
    if kind == "long":
        return st.one_of(st.integers(-70, 70), st.integers(-(2**63), 2**63 - 1))
    if kind == "string":
        return st.text(max_size=80)
    if kind == "bytes":
        if schema.get("logicalType") == "decimal":
            return st.integers(-(10**15), 10**15).map(decimal_bytes)
        return st.binary(max_size=80)
    if kind == "array":
        return st.lists(_value(schema["items"], names), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=12), _value(schema["values"], names), max_size=3)
    if kind == "record":
        names[schema["name"]] = schema
        fields = {field["name"]: _value(field["type"], names) for field in schema["fields"]}
        return st.fixed_dictionaries(fields)
    raise AssertionError(f"no strategy for {kind}")


@SETTINGS
@given(st.data())
def test_generated_records_of_every_schema_are_written_as_fastavro_writes_them(data):
    name = data.draw(st.sampled_from(sorted(CATALOG.names)))
    record = data.draw(_value(CATALOG.schema(name), {}))
    assert CATALOG.encode_unscaled(name, record) == fastavro_unscaled(name, record)


@SETTINGS
@given(st.integers(-(2**63), 2**63 - 1))
def test_longs_are_fastavros_zigzag_varints(n):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", n)
    assert _long(n) == buf.getvalue()


def test_a_decimal_may_be_given_as_its_unscaled_int():
    record = {"credit_id": "K1", "psn_no": "P1", "ym": "2023-01"}
    for fen in (0, 1, -1, 127, 128, -129, 12345678901):
        as_int = CATALOG.encode_unscaled("CreditResult", {**record, "amount": fen, "balc": 0})
        assert as_int == CATALOG.encode("CreditResult", {**record, "amount": Decimal(fen).scaleb(-2),
                                                           "balc": Decimal("0.00")})


@pytest.mark.parametrize("change, needle", [
    ({"surprise": "x"}, "surprise"),  # an unknown key fails loudly, as fastavro's strict mode does
    ({"amount": Decimal("1.00")}, "unscaled"),  # a Decimal where its unscaled form is due
    ({"ym": 202301}, "int"),
    ({"psn_no": None}, "NoneType"),
])
def test_what_fastavro_refuses_is_refused(change, needle):
    record = {"credit_id": "K1", "psn_no": "P1", "ym": "2023-01", "amount": 1, "balc": 0, **change}
    with pytest.raises(EncodeError, match=needle):
        CATALOG.encode_unscaled("CreditResult", record)


def test_a_missing_field_takes_its_default_and_a_required_one_fails():
    record = {"credit_id": "K1", "psn_no": "P1", "ym": "2023-01", "amount": decimal_bytes(5), "balc": decimal_bytes(0)}
    assert CATALOG.encode_unscaled("CreditResult", record) == fastavro_unscaled("CreditResult", record)
    with pytest.raises(EncodeError, match="credit_id"):
        CATALOG.encode_unscaled("CreditResult", {k: v for k, v in record.items() if k != "credit_id"})
    # insu_admdvs (defaulted) missing and an unknown key instead: the same count of keys, still refused.
    with pytest.raises(EncodeError, match="surprise"):
        CATALOG.encode_unscaled("CreditResult", {**record, "surprise": None})


def test_an_uncompiled_union_falls_back_to_fastavro():
    schema = {"type": "record", "name": "gongji.Odd", "fields": [
        {"name": "either", "type": ["null", "string", "long"]}]}
    assert compile_writer(schema) is None
    catalog = SchemaCatalog(current=[schema], history=[])
    assert catalog.decode(catalog.encode_unscaled("Odd", {"either": 5}))[1] == {"either": 5}


def fastavro_read(message: bytes) -> dict:
    route = CATALOG._routes[message[2:10]]
    return fastavro.schemaless_reader(io.BytesIO(message[10:]), route.writer, route.reader)


def same(a, b) -> bool:
    """Equal, and every Decimal with the same digits and exponent (1.50 is not 1.5 here)."""
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return type(a) is type(b) and a.as_tuple() == b.as_tuple()
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return type(b) is list and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


def test_every_synthetic_message_decodes_to_fastavros_record():
    from tests.unit.traffic import wire

    messages = wire(1500, 600)
    names = set()
    for message in messages:
        name, record = CATALOG.decode(message)
        names.add(name)
        assert same(record, fastavro_read(message)), record
    assert {"Claim", "Reversal", "Credit", "Person", "Institution"} <= names


@SETTINGS
@given(st.data())
def test_generated_records_of_every_schema_decode_to_fastavros_record(data):
    name = data.draw(st.sampled_from(sorted(CATALOG.names)))
    record = data.draw(_value(CATALOG.schema(name), {}))
    message = CATALOG.encode_unscaled(name, record)
    assert same(CATALOG.decode(message)[1], fastavro_read(message))


def test_a_decimal_beyond_its_precision_is_rounded_as_fastavro_rounds_it():
    record = {"credit_id": "K1", "psn_no": "P1", "ym": "2023-01", "amount": 10**17 + 5, "balc": -(10**20) - 7}
    message = CATALOG.encode_unscaled("CreditResult", record)
    decoded = CATALOG.decode(message)[1]
    assert same(decoded, fastavro_read(message)) and decoded["amount"] != Decimal(10**17 + 5).scaleb(-2)


def test_claims_are_read_through_the_generated_decimals_and_older_writers_through_fastavro():
    from gongji.common.avro import load_packaged_schema

    assert CATALOG._routes[CATALOG.fingerprint("Claim")].decimals is not None
    old = SchemaCatalog(current=[load_packaged_schema("history/claim.v2.avsc")], history=[])
    route = CATALOG._routes[old.fingerprint("Claim")]
    assert route.reader is not None and route.decimals is None


def test_an_amount_written_before_is_written_alike_and_what_is_kept_stays_bounded(monkeypatch):
    """Amounts given as unscaled integers are kept by value once written (avro_codegen._SizedUnscaled)."""
    from gongji.common import avro_codegen

    kept = avro_codegen._SizedUnscaled()
    for number in [0, 1, -1, 63, 64, -65, 127, 128, 10**15, -(2**70), 0, 1, -1, 128, -(2**70)]:
        assert kept[number] == _long(len(decimal_bytes(number))) + decimal_bytes(number)
    monkeypatch.setattr(avro_codegen._SizedUnscaled, "__len__", lambda self: 65_536)
    assert kept[12345] == _long(2) + decimal_bytes(12345) and 12345 not in kept
    write = CATALOG.encode_unscaled
    credit = {"credit_id": "K1", "psn_no": "P1", "ym": "2024-01", "amount": 5, "balc": -7, "insu_admdvs": None}
    for _ in range(2):
        assert write("CreditResult", credit) == fastavro_unscaled("CreditResult", {
            **credit, "amount": decimal_bytes(5), "balc": decimal_bytes(-7)})
    with pytest.raises(EncodeError):
        write("CreditResult", {**credit, "amount": True})
