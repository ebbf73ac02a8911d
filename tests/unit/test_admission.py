"""The fast input checks (gongji.settlement.admission) against pydantic's models (events.py).

Whatever the fast path accepts, pydantic accepts, and builds the same object: the same field values
(their types and reprs: Decimal places, the datetime's tzinfo), the same fields set. Everything
else goes to pydantic, so every refusal keeps pydantic's words. Inputs: the synthetic traffic's
events, then the same with one field or two replaced by awkward values (hypothesis, derandomized).
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gongji.contract.wire import DEFAULT_BOUNDS, Bounds
from gongji.local.synthetic import Traffic
from gongji.settlement import admission
from gongji.common.avro import SchemaCatalog
from gongji.settlement.codec import INPUT_TYPES, INQUIRY_TYPES, to_event, to_wire
from gongji.settlement.events import Claim, validation_context

pytestmark = pytest.mark.unit

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
SETTINGS = settings(max_examples=3000, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _events() -> list[tuple[str, dict]]:
    traffic = Traffic(persons=60, seed=11, family=0.3)
    stream = list(traffic.stream(300, reversals=0.1, resends=0.05))
    return traffic.registry() + traffic.openings() + stream


EVENTS = _events()
MODELS = {**INPUT_TYPES, **INQUIRY_TYPES}


def _same(fast, slow) -> None:
    """Two validated models alike in everything the code after them may read."""
    assert type(fast) is type(slow)
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert fast.model_fields_set == slow.model_fields_set
    assert list(fast.__dict__) == list(slow.__dict__)
    for name, value in slow.__dict__.items():
        mine = fast.__dict__[name]
        assert type(mine) is type(value), name
        if isinstance(value, datetime):
            assert type(mine.tzinfo) is type(value.tzinfo) and mine.isoformat() == value.isoformat()
        if isinstance(value, tuple):
            for a, b in zip(mine, value):
                if hasattr(b, "model_fields_set"):
                    _same(a, b)
    assert fast.model_dump() == slow.model_dump()


def _compare(kind: str, data: dict, bounds: Bounds = DEFAULT_BOUNDS, now: datetime | None = NOW) -> bool:
    """Fast path against pydantic on one input; whether the fast path took it."""
    model = MODELS[kind]
    try:
        slow = model.model_validate(copy.deepcopy(data), context=validation_context(bounds, now))
    except Exception as error:
        slow = error
    try:
        fast = admission.FAST[model](model, copy.deepcopy(data), bounds, now)
    except Exception:
        fast = None
    if fast is not None:
        assert not isinstance(slow, Exception), f"fast path accepted what pydantic refuses: {slow}"
        _same(fast, slow)
    # And through to_event, what the service and replay call: refusals word for word.
    assert repr(to_event(kind, copy.deepcopy(data), bounds, now)) == repr(_pydantic_to_event(kind, data, bounds, now))
    return fast is not None


def _pydantic_to_event(kind, data, bounds, now):
    saved = dict(admission.FAST)
    admission.FAST.clear()
    try:
        return to_event(kind, copy.deepcopy(data), bounds, now)
    finally:
        admission.FAST.update(saved)


def test_every_model_is_checked_fast_as_written():
    """Fails when events.py changes a model (a field, a constraint, a validator): bring
    admission.py's checks up to date with it, then its digest in WRITTEN_FOR (admission.shape)."""
    stale = {model.__name__: admission.shape(model) for model, (digest, _) in admission.WRITTEN_FOR.items()
             if admission.shape(model) != digest}
    assert not stale, f"admission.py was written for other models: {stale}"


def test_the_usual_traffic_takes_the_fast_path_and_builds_the_same_events():
    taken = {kind: 0 for kind, _ in EVENTS}
    for kind, data in EVENTS:
        taken[kind] += _compare(kind, data)
    # All but the institutions, whose synthetic names are Chinese: those go to pydantic.
    assert taken == {kind: 0 if kind == "institution" else sum(k == kind for k, _ in EVENTS) for kind in taken}


def test_non_ascii_names_and_numbers_as_numbers_still_agree():
    institution = next(data for kind, data in EVENTS if kind == "institution")
    assert not _compare("institution", institution)  # a Chinese name: pydantic's
    assert _compare("institution", {**institution, "fixmedins_name": "H 1"})
    claim = next(data for kind, data in EVENTS if kind == "claim")
    numeric = {**claim, "fee_details": [{**line, "cnt": int(Decimal(line["cnt"])), "pric": Decimal(line["pric"]),
                                         "det_item_fee_sumamt": Decimal(line["det_item_fee_sumamt"])}
                                        for line in claim["fee_details"]]}
    assert _compare("claim", numeric)


# Values that are wrong, or right in an unusual way, for some field of some event.
AWKWARD_VALUES = [
    None, "", " ", "a", " a", "a ", "a b", "x" * 64, "x" * 65, "é", "名", "\x00", "a\nb", "\u200b", "\u3000", "Ａ",
    0, 1, -1, 2, 10**20, True, False, 1.5, 0.1, [], {}, ["a"], ("a",), [" a"], [1],
    "0", "1", "2", "3", "01", "02", "03", "04", "11", "1101", "1201", "1301", "110", "11011", "١١٠١",
    "310", "390", "152501", "99010", "1525011", "15250a", "monthly", "opening", "weekly",
    "2023-01", "2023-13", "0000-01", "2024-01", "2024-02", "2030-12", "2023-1",
    Decimal("0"), Decimal("0.01"), Decimal("0.001"), Decimal("-0.01"), Decimal("1E+3"), Decimal("NaN"),
    Decimal("12.30"), Decimal("100000000000000"), Decimal("0.0001"), Decimal("0.00001"), Decimal("1.0000"),
    "0.00", "0.01", "0.005", "-1", "1e3", "1_0", " 1.00", "12.3", "99999999999999.99", "100000000000000.00",
    "0.1250", "0.12500001", "1.0000", "0.5", "1.5", "2000000.00", "2000000.01", "10000000.01",
    "2023-03-01T10:00:00+08:00", "2023-03-01T10:00:00Z", "2023-03-01T10:00:00", "2023-03-01 10:00:00",
    "2023-03-01T10:00:00.5+08:00", "2023-02-29T10:00:00+08:00", "2023-03-01T24:00:00+08:00",
    "2023-03-01T10:00:60+08:00", "2023-03-01T10:00:00+23:59", "2023-03-01T10:00:00+24:00",
    "2023-03-01T10:00:00-00:00", "2023-03-01T10:00:00+08:60", "0000-01-01T00:00:00+08:00",
    "0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00", "2023-03-01 24:00:00", "2023-3-01 10:00:00",
    "2024-01-01T08:09:59+08:00", "2024-01-01T08:10:01+08:00", "2024-01-01 08:10:01", "2023-03-01t10:00:00+08:00",
    "2023-03-01T10:00:00+0800", "2023-03-01T10:00+08:00", "\uff12023-03-01T10:00:00+08:00",
]
AWKWARD = st.sampled_from(AWKWARD_VALUES)


def _mutated(draw, data: dict) -> dict:
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 2))):
        target = data
        lines = [line for line in data.get("fee_details") or () if isinstance(line, dict)] \
            if isinstance(data.get("fee_details"), list) else []
        if lines and draw(st.booleans()):
            target = draw(st.sampled_from(lines))
        name = draw(st.sampled_from(sorted(target) + ["absent"]))
        if draw(st.integers(0, 5)) == 0:
            target.pop(name, None)
        else:
            target[name] = draw(AWKWARD)
    return data


@st.composite
def _cases(draw):
    kind, data = draw(st.sampled_from(EVENTS))
    if kind == "claim" and draw(st.integers(0, 9)) == 0:
        kind = "presettlement"
    return kind, _mutated(draw, data) if draw(st.integers(0, 4)) else data


@SETTINGS
@given(_cases())
def test_fast_path_and_pydantic_agree_on_awkward_input(case):
    kind, data = case
    _compare(kind, data)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_cases(), st.sampled_from([None, NOW, datetime(2023, 3, 1, 2, 5, tzinfo=timezone.utc)]),
       st.sampled_from([DEFAULT_BOUNDS, Bounds(max_line_amount=500_00, max_claim_amount=800_00,
                                               max_opening_amount=100_00, max_credit_base=4000_00,
                                               setl_time_tolerance=timedelta(0))]))
def test_fast_path_and_pydantic_agree_under_other_bounds_and_clocks(case, now, bounds):
    kind, data = case
    _compare(kind, data, bounds, now)


def test_a_claim_the_fast_path_takes_is_a_claim():
    claim = next(data for kind, data in EVENTS if kind == "claim")
    event = to_event("claim", claim, DEFAULT_BOUNDS, NOW)
    assert isinstance(event, Claim) and admission.FAST[Claim] is not None


def _samples() -> list[tuple[str, dict]]:
    """One event of each kind (a claim with every line field set), and a national-time reversal."""
    found: dict[str, dict] = {}
    for kind, data in EVENTS:
        if kind == "claim" and not any(line.get("selfpay_prop") and line.get("pric_uplmt_amt")
                                       for line in data["fee_details"]):
            continue
        found.setdefault(kind, data)
    found["institution"] = {**found["institution"], "fixmedins_name": "H 1"}
    found["opening"] = next(data for kind, data in EVENTS if kind == "credit" and data["crdt_type"] == "opening")
    cases = [("credit" if kind == "opening" else kind, data) for kind, data in found.items()]
    return cases + [("reversal", {**found["reversal"], "setl_time": "2023-06-01 10:00:00"}),
                    ("presettlement", found["claim"])]


@pytest.mark.parametrize("kind, data", _samples(), ids=lambda value: value if isinstance(value, str) else "")
def test_every_awkward_value_in_every_field(kind, data):
    assert _compare(kind, data)
    for name in sorted(data):
        for value in AWKWARD_VALUES:
            _compare(kind, {**data, name: value})
        _compare(kind, {key: item for key, item in data.items() if key != name})
    for line_name in sorted(data.get("fee_details", [{}])[0]):
        for value in AWKWARD_VALUES:
            for index in range(len(data["fee_details"])):
                lines = [dict(line) for line in data["fee_details"]]
                lines[index][line_name] = value
                _compare(kind, {**data, "fee_details": lines})


def _claim_with(line_changes: dict) -> dict:
    claim = copy.deepcopy(next(data for kind, data in EVENTS if kind == "claim"))
    claim["fee_details"][0].update(line_changes)
    return claim


def test_a_line_met_before_is_not_taken_for_one_merely_equal_to_it():
    """The checked lines are kept by the exact text of their input: 6, 6.0 and True are equal in
    Python, and a line kept under looser bounds is no line under tighter ones."""
    line = _claim_with({})["fee_details"][0]
    fen = admission._money(line["det_item_fee_sumamt"], DEFAULT_BOUNDS.max_line_amount)
    price, count = Decimal(line["pric"]), Decimal(line["cnt"])
    for changes in ({"cnt": count, "pric": price}, {"cnt": count.quantize(Decimal("0.0001")), "pric": price},
                    {"cnt": 1, "pric": Decimal(fen) / 100, "det_item_fee_sumamt": Decimal(fen) / 100},
                    {"cnt": True, "pric": Decimal(fen) / 100, "det_item_fee_sumamt": Decimal(fen) / 100},
                    {"cnt": Decimal(1), "pric": Decimal(fen) / 100, "det_item_fee_sumamt": Decimal(fen) / 100}):
        for _ in range(2):  # the second time from what was kept
            assert _compare("claim", _claim_with(changes)) is (changes["cnt"] is not True)
    tight = Bounds(max_line_amount=fen - 1)
    for bounds in (DEFAULT_BOUNDS, tight, DEFAULT_BOUNDS, tight):
        assert _compare("claim", _claim_with({}), bounds) is (bounds is DEFAULT_BOUNDS)


def test_what_is_kept_of_checked_lines_is_bounded(monkeypatch):
    monkeypatch.setattr(admission, "_LINES_MAX", 50)
    for serial in range(120):
        assert _compare("claim", _claim_with({"feedetl_sn": f"L{serial}"}))
        assert 0 < len(admission._LINES) <= 50


CATALOG = SchemaCatalog()
_RECORDS = {"claim": "Claim", "presettlement": "Claim", "credit": "Credit", "reversal": "Reversal",
            "person": "Person", "institution": "Institution"}


def _unscaled(number: int) -> bytes:
    return number.to_bytes(max(1, (number.bit_length() + 8) // 8), "big", signed=True)


def _raw_and_decoded(kind: str, data: dict) -> tuple:
    """The event from a record read as the service reads it (decimals as the wire's bytes) and from
    the same record read with Decimals (SchemaCatalog.decode), both through to_event."""
    wire = to_wire(to_event(kind, data, DEFAULT_BOUNDS, NOW))
    value = CATALOG.encode(_RECORDS[kind], wire)
    name, raw, decimals = CATALOG.decode_unscaled(value)
    return raw, decimals, CATALOG.decode(value)[1]


@pytest.mark.parametrize("kind, data", _samples(), ids=lambda value: value if isinstance(value, str) else "")
def test_a_record_with_its_decimals_as_the_wires_bytes_is_the_same_event(kind, data):
    raw, decimals, decoded = _raw_and_decoded(kind, data)
    assert decimals is not None or kind in ("reversal", "person", "institution")
    model = MODELS[kind]
    fast = admission.FAST[model](model, copy.deepcopy(raw), DEFAULT_BOUNDS, NOW, True)  # taken, not referred
    _same(fast, to_event(kind, decoded, DEFAULT_BOUNDS, NOW))
    _same(to_event(kind, copy.deepcopy(raw), DEFAULT_BOUNDS, NOW, decimals), fast)
    lines = raw.get("fee_details") or [raw]
    for name in [name for name in lines[0] if type(lines[0][name]) is bytes]:
        text = copy.deepcopy(data)  # bytes in input that is not an Avro record's: pydantic's to judge
        (text.get("fee_details") or [text])[0][name] = lines[0][name]
        _compare(kind, text)
        for number in (0, 1, -1, 10**8, 10**14, 10**16 - 1, 10**16, 10**30, -(10**20)):
            changed = copy.deepcopy(raw)
            (changed.get("fee_details") or [changed])[0][name] = _unscaled(number)
            slow = copy.deepcopy(changed)
            decimals(slow)
            assert repr(to_event(kind, changed, DEFAULT_BOUNDS, NOW, decimals)) == \
                repr(_pydantic_to_event(kind, slow, DEFAULT_BOUNDS, NOW)), (name, number)


def test_every_synthetic_claim_and_credit_read_with_the_wires_bytes_is_the_same_event():
    taken = 0
    for kind, data in EVENTS:
        if kind in ("claim", "credit"):
            raw, decimals, decoded = _raw_and_decoded(kind, data)
            fast = admission.FAST[MODELS[kind]](MODELS[kind], raw, DEFAULT_BOUNDS, NOW, True)
            _same(fast, to_event(kind, decoded, DEFAULT_BOUNDS, NOW))
            taken += 1
    assert taken > 300
