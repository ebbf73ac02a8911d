"""Input validation without pydantic on the hot path: plain checks on the decoded dict.

`validated(model, data, bounds, now)` is what `Model.model_validate(data, context=...)` returns for
the inputs that are well-formed in the usual way (ASCII ids and codes, money and prices as decimal
text, Decimals or integers, times as "yyyy-MM-ddTHH:mm:ss±hh:mm" or the national form), built as the
same objects pydantic builds (the same field values, field order and fields set). Anything else,
every refusal above all, goes to pydantic itself, so what is refused and the words saying why stay
those of gongji.settlement.events. A check here may only be stricter than the model's, never looser:
tests/unit/test_admission.py compares the two over generated inputs.

A model whose definition changed since these checks were written (a field, a constraint, a
validator) is left to pydantic entirely (`FAST`): a change to events.py cannot be skipped here
silently; the same test fails until these checks are brought up to date.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic_core import TzInfo

from gongji.common.money import yuan_to_fen
from gongji.contract.wire import ID_MAX_LENGTH, SHANGHAI, WIRE_MAX_COUNT, WIRE_MAX_FEN, WIRE_MAX_PRICE, Bounds
from gongji.settlement import events
from gongji.settlement.domain import SettlementError
from gongji.settlement.events import Claim, Credit, FeeLine, Institution, Person, PreSettlement, Reversal


class _Refer(SettlementError):
    """Not for the fast path: pydantic decides."""


def validated(model: type, data: Any, bounds: Bounds, now: datetime | None,
              decimals: Callable[[dict], None] | None = None):
    """`model.model_validate(data, context=validation_context(bounds, now))`, faster for usual input.

    `decimals`: `data` is an Avro record whose decimals are still the bytes of their unscaled
    integers at the schema's scale (SchemaCatalog.decode_unscaled), and this makes them the Decimals
    pydantic reads, in place: called only if pydantic is to read the record."""
    check = FAST.get(model)
    if check is not None and type(data) is dict:
        try:
            return check(model, data, bounds, now, decimals is not None)
        except Exception:  # _Refer, or a value these checks do not know: pydantic says what it is
            pass
    if decimals is not None:
        decimals(data)
    return model.model_validate(data, context=events.validation_context(bounds, now))


# ---------------------------------------------------------------- building the models


_setattr = object.__setattr__


def _build(model: type, values: dict, present: set):
    """The model as validation leaves it: its fields in order, the fields the input named."""
    made = model.__new__(model)
    _setattr(made, "__dict__", values)
    _setattr(made, "__pydantic_fields_set__", present)
    _setattr(made, "__pydantic_extra__", None)
    _setattr(made, "__pydantic_private__", None)
    return made


def _present(data: dict, names: frozenset) -> set:
    return names & data.keys()


# ---------------------------------------------------------------- fields


def _code(value: Any, required: bool = False) -> str:
    """An id or code (events.Code): ASCII here, printable, no surrounding spaces, bounded."""
    if type(value) is not str or len(value) > ID_MAX_LENGTH or not value.isascii() or not value.isprintable():
        raise _Refer
    if value and (value[0] == " " or value[-1] == " "):
        raise _Refer
    if required and not value:
        raise _Refer
    return value


def _optional_code(data: dict, name: str) -> str | None:
    value = data.get(name)
    return None if value is None else _code(value)


def _name(value: Any) -> str:
    if type(value) is not str or len(value) > events.NAME_MAX_LENGTH or not value.isascii() or not value.isprintable():
        raise _Refer
    return value


def _one_of(value: Any, allowed: frozenset) -> str:
    if type(value) is not str or value not in allowed:
        raise _Refer
    return value


def _region(value: Any) -> str:
    if type(value) is not str or len(value) != 6 or not value.isascii() or not value.isdigit():
        raise _Refer
    return value


# Decimal text as the usual input writes it: digits, a point, at most the field's places.
_FEN_TEXT = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,2}))?", re.ASCII)
_PRICE_TEXT = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,6})?", re.ASCII)
_COUNT_TEXT = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,4})?", re.ASCII)
_RATIO_TEXT = re.compile(r"[01](?:\.[0-9]{1,4})?", re.ASCII)


_PLACES = {2: Decimal("0.01"), 4: Decimal("0.0001"), 6: Decimal("0.000001")}


def _exact(value: Decimal, places: int) -> Decimal:
    """A Decimal input with at most `places` decimals (gongji.common.money's test), not negative,
    below 10^15: itself, as to_decimal keeps the very object. NaN and infinities raise here."""
    if value.is_signed() or value.adjusted() >= 15 or value.quantize(_PLACES[places]) != value:
        raise _Refer
    return value


def _unscaled(value: bytes) -> int:
    """A decimal's unscaled integer as the Avro wire holds it (big-endian two's complement), not negative."""
    number = int.from_bytes(value, "big", signed=True)
    if number < 0:
        raise _Refer
    return number


def _money(value: Any, ceiling: int, raw: bool = False) -> int:
    """Fen (events.LineAmount and the like): what to_fen gives, at least 0, within the wire and `ceiling`.
    `raw`: a bytes value is the Avro decimal's unscaled integer, at the wire's scale for money (2)."""
    kind = type(value)
    if kind is bytes and raw:
        fen = _unscaled(value)
    elif kind is str:
        parts = _FEN_TEXT.fullmatch(value)
        if parts is None:
            raise _Refer
        whole, cents = parts.groups()
        fen = int(whole) * 100 + (0 if cents is None else int(cents) * (10 if len(cents) == 1 else 1))
    elif kind is Decimal:
        fen = int(_exact(value, 2).scaleb(2))
    elif kind is int and 0 <= value < 10**15:
        fen = value * 100
    else:
        raise _Refer
    if fen > WIRE_MAX_FEN or fen > ceiling:
        raise _Refer
    return fen


def _number(value: Any, text: re.Pattern, places: int, raw: bool) -> Decimal:
    """A non-negative Decimal as to_decimal reads it, from text, a Decimal or an integer; with `raw`,
    from an Avro decimal's bytes at the scale `places` (the Decimal the catalog's reader makes of them,
    its precision never reached within the bounds checked after)."""
    kind = type(value)
    if kind is bytes and raw:
        return Decimal(_unscaled(value)).scaleb(-places)
    if kind is str:
        if text.fullmatch(value) is None:
            raise _Refer
        return Decimal(value)
    if kind is Decimal:
        return _exact(value, places)
    if kind is int and 0 <= value < 10**9:
        return Decimal(value)
    raise _Refer


def _price(value: Any, strictly_positive: bool, raw: bool = False) -> Decimal:
    price = _number(value, _PRICE_TEXT, 6, raw)
    if price > WIRE_MAX_PRICE or not (price > 0 if strictly_positive else price >= 0):
        raise _Refer
    return price


def _count(value: Any, raw: bool = False) -> Decimal:
    count = _number(value, _COUNT_TEXT, 4, raw)
    if not 0 < count <= WIRE_MAX_COUNT:
        raise _Refer
    return count


def _ratio(value: Any, raw: bool = False) -> Decimal:
    ratio = _number(value, _RATIO_TEXT, 4, raw)
    if ratio > 1:
        raise _Refer
    return ratio


_FLAGS = frozenset(("0", "1"))
_TYPES = frozenset(("1", "2"))
_LEVELS = frozenset(("1", "2", "3"))
_CLASSES = frozenset(("01", "02", "03"))
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-9]{2}", re.ASCII)
_OFFSETS: dict[int, TzInfo] = {}
_ZONES: dict[str, TzInfo] = {}  # an offset's text → its TzInfo


def _offset(seconds: int) -> TzInfo:
    zone = _OFFSETS.get(seconds)
    if zone is None:
        zone = _OFFSETS[seconds] = TzInfo(seconds)
    return zone


def _setl_time(value: Any, bounds: Bounds, now: datetime | None) -> datetime:
    """events.SetlTime for "yyyy-MM-ddTHH:mm:ss±hh:mm" (pydantic's TzInfo, as pydantic parses it) and
    the national "yyyy-MM-dd HH:mm:ss" (Asia/Shanghai)."""
    if type(value) is not str:
        raise _Refer
    if len(value) == 19 and value[10] == " " and events.NATIONAL_TIME.fullmatch(value):
        when = datetime(int(value[:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]), int(value[14:16]),
                        int(value[17:]), tzinfo=SHANGHAI)
    else:
        if _TIME.fullmatch(value) is None or value[-5:-3] > "23" or value[-2:] > "59":  # offsets pydantic reads
            raise _Refer
        zone = _ZONES.get(value[19:])  # "+08:00": at most 2 × 24 × 60 texts
        if zone is None:
            zone = _ZONES[value[19:]] = _offset(int(datetime.fromisoformat(value).utcoffset().total_seconds()))
        when = datetime.fromisoformat(value[:19]).replace(tzinfo=zone)
    when.astimezone(SHANGHAI)  # out of range there: OverflowError, and pydantic words it
    if now is not None and when > now + bounds.setl_time_tolerance:
        raise _Refer
    return when


# ---------------------------------------------------------------- the models


_INSTITUTION = ("fixmedins_code", "fixmedins_name", "fixmedins_type", "medins_lv", "grassroots", "admdvs")
_INSTITUTION_NAMES = frozenset(_INSTITUTION)


def _institution(model, data: dict, bounds: Bounds, now, raw: bool = False):
    kind = _one_of(data["fixmedins_type"], _TYPES)
    level = data.get("medins_lv")
    level = None if level is None or level == "" else _one_of(level, _LEVELS)
    if kind == "1" and level is None:
        raise _Refer
    grassroots = data["grassroots"]
    if type(grassroots) is not bool:
        raise _Refer
    values = {"fixmedins_code": _code(data["fixmedins_code"], True), "fixmedins_name": _name(data["fixmedins_name"]),
              "fixmedins_type": kind, "medins_lv": level, "grassroots": grassroots, "admdvs": _region(data["admdvs"])}
    return _build(model, values, _present(data, _INSTITUTION_NAMES))


_PERSON = ("psn_no", "insutype", "psn_type", "insu_admdvs", "psn_insu_stas", "fd_fixmedins_code",
           "mulaid_holder_psn_no", "mulaid_relation", "psn_idet_type", "chronic_diseases", "cvlserv_flag",
           "chronic_since", "brdy", "aid_idet_type", "aid_begndate", "aid_enddate", "aid_apprv_org", "aid_apprv_date")
# A grant on application: rare in a registry entry, left to pydantic.
_PERSON_RARE = ("aid_idet_type", "aid_begndate", "aid_enddate", "aid_apprv_org", "aid_apprv_date")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def _day(value: Any) -> str:
    if type(value) is not str or not _DAY.fullmatch(value):
        raise _Refer
    date.fromisoformat(value)  # a ValueError: pydantic says what is wrong
    return value
_PERSON_NAMES = frozenset(_PERSON)


def _person(model, data: dict, bounds: Bounds, now, raw: bool = False):
    if any(data.get(name) is not None for name in _PERSON_RARE):
        raise _Refer
    psn_type = data["psn_type"]
    if (type(psn_type) is not str or len(psn_type) != 4 or psn_type[0] != "1" or psn_type[1] not in "12"
            or not psn_type.isascii() or not psn_type[2:].isdigit()):
        raise _Refer
    diseases = data.get("chronic_diseases")
    if diseases is not None:
        if type(diseases) is not list and type(diseases) is not tuple:
            raise _Refer
        diseases = tuple(_code(code) for code in diseases)
    since, born = data.get("chronic_since"), data.get("brdy")
    if since is not None:
        if type(since) is not dict or not since.keys() <= set(diseases or ()):
            raise _Refer
        since = {_code(code): _day(day) for code, day in since.items()}
    flag = data.get("cvlserv_flag")
    values = {"psn_no": _code(data["psn_no"], True), "insutype": _code(data["insutype"]), "psn_type": psn_type,
              "insu_admdvs": _region(data["insu_admdvs"]), "psn_insu_stas": _code(data["psn_insu_stas"]),
              "fd_fixmedins_code": _optional_code(data, "fd_fixmedins_code"),
              "mulaid_holder_psn_no": _optional_code(data, "mulaid_holder_psn_no"),
              "mulaid_relation": _optional_code(data, "mulaid_relation"),
              "psn_idet_type": _optional_code(data, "psn_idet_type"), "chronic_diseases": diseases,
              "cvlserv_flag": None if flag is None else _one_of(flag, _FLAGS), "chronic_since": since,
              "brdy": None if born is None else _day(born), **dict.fromkeys(_PERSON_RARE)}
    return _build(model, values, _present(data, _PERSON_NAMES))


_LINE = ("feedetl_sn", "med_list_codg", "list_type", "chrgitm_lv", "det_item_fee_sumamt", "cnt", "pric",
         "pric_uplmt_amt", "selfpay_prop", "non_med_flag")
_LINE_NAMES = frozenset(_LINE)


class _Lines(dict):
    """Fee lines checked already, by the exact text of their input (`repr`: every key, and every
    value's type and digits), under one set of bounds: the same item at the same price and count
    recurs across claims, and checking a line was most of a claim's cost. A FeeLine is frozen, so
    claims may share one. Bounded: emptied when full (each entry ~1 kB)."""

    bounds: Bounds | None = None


_LINES, _RAW_LINES = _Lines(), _Lines()  # lines of text or Decimals; of Avro decimals' bytes
_LINES_MAX = 8_192


def _line(data: Any, bounds: Bounds, raw: bool) -> FeeLine:
    if type(data) is not dict:
        raise _Refer
    kept = _RAW_LINES if raw else _LINES
    if kept.bounds is not bounds:
        kept.clear()
        kept.bounds = bounds
    key = repr(data)
    line = kept.get(key)
    if line is None:
        line = _checked_line(data, bounds, raw)
        if len(kept) >= _LINES_MAX:
            kept.clear()
        kept[key] = line
    return line


def _checked_line(data: dict, bounds: Bounds, raw: bool) -> FeeLine:
    amount = _money(data["det_item_fee_sumamt"], bounds.max_line_amount, raw)
    count = _count(data["cnt"], raw)
    price = _price(data["pric"], True, raw)
    if abs(yuan_to_fen(price * count) - amount) > 1:
        raise _Refer
    limit = data.get("pric_uplmt_amt")
    ratio = data.get("selfpay_prop")
    if ratio is not None:
        ratio = _ratio(ratio, raw)
    flag = data.get("non_med_flag")
    level = data.get("chrgitm_lv")  # none: the treatment region's catalogue classifies the line
    values = {"feedetl_sn": _code(data["feedetl_sn"], True), "med_list_codg": _code(data["med_list_codg"]),
              "list_type": _code(data["list_type"]), "chrgitm_lv": None if level is None else _one_of(level, _CLASSES),
              "det_item_fee_sumamt": amount, "cnt": count, "pric": price,
              "pric_uplmt_amt": None if limit is None else _price(limit, False, raw), "selfpay_prop": ratio,
              "non_med_flag": None if flag is None else _one_of(flag, _FLAGS)}
    return _build(FeeLine, values, _present(data, _LINE_NAMES))


_CLAIM = ("claim_id", "mdtrt_id", "psn_no", "fixmedins_code", "med_type", "insutype", "setl_time", "acct_used_flag",
          "fee_details", "dise_codg", "rx_fixmedins_code", "oprn_oprt_code")
_CLAIM_NAMES = frozenset(_CLAIM)


def _claim(model, data: dict, bounds: Bounds, now, raw: bool = False):
    details = data["fee_details"]
    if (type(details) is not list and type(details) is not tuple) or not details:
        raise _Refer
    lines = tuple(_line(line, bounds, raw) for line in details)
    total = 0
    serials = set()
    for line in lines:
        total += line.det_item_fee_sumamt
        serials.add(line.feedetl_sn)
    if total > WIRE_MAX_FEN or total > bounds.max_claim_amount or len(serials) != len(lines):
        raise _Refer
    values = {"claim_id": _code(data["claim_id"], True), "mdtrt_id": _code(data["mdtrt_id"]),
              "psn_no": _code(data["psn_no"], True), "fixmedins_code": _code(data["fixmedins_code"], True),
              "med_type": _code(data["med_type"], True), "insutype": _code(data["insutype"]),
              "setl_time": _setl_time(data["setl_time"], bounds, now),
              "acct_used_flag": _one_of(data["acct_used_flag"], _FLAGS), "fee_details": lines,
              "dise_codg": _optional_code(data, "dise_codg"),
              "rx_fixmedins_code": _optional_code(data, "rx_fixmedins_code"),
              "oprn_oprt_code": _optional_code(data, "oprn_oprt_code")}
    return _build(model, values, _present(data, _CLAIM_NAMES))


_REVERSAL = ("claim_id", "orig_claim_id", "psn_no", "setl_time")
_REVERSAL_NAMES = frozenset(_REVERSAL)


def _reversal(model, data: dict, bounds: Bounds, now, raw: bool = False):
    values = {"claim_id": _code(data["claim_id"], True), "orig_claim_id": _code(data["orig_claim_id"], True),
              "psn_no": _code(data["psn_no"], True), "setl_time": _setl_time(data["setl_time"], bounds, now)}
    return _build(model, values, _present(data, _REVERSAL_NAMES))


_CREDIT = ("credit_id", "psn_no", "ym", "crdt_type", "crdt_base", "amount")
_CREDIT_NAMES = frozenset(_CREDIT)
_CREDIT_TYPES = frozenset(("monthly", "opening"))
_MONTH = re.compile(r"[0-9]{4}-(?:0[1-9]|1[0-2])", re.ASCII)


def _credit(model, data: dict, bounds: Bounds, now, raw: bool = False):
    ym = data["ym"]
    if type(ym) is not str or not _MONTH.fullmatch(ym) or ym.startswith("0000"):
        raise _Refer
    if now is not None:
        present = (now + bounds.setl_time_tolerance).astimezone(SHANGHAI)
        if ym > f"{present.year:04d}-{present.month:02d}":
            raise _Refer
    kind = _one_of(data["crdt_type"], _CREDIT_TYPES)
    base, amount = data.get("crdt_base"), data.get("amount")
    base = None if base is None else _money(base, bounds.max_credit_base, raw)
    amount = None if amount is None else _money(amount, bounds.max_opening_amount, raw)
    if (base if kind == "monthly" else amount) is None:
        raise _Refer
    values = {"credit_id": _code(data["credit_id"], True), "psn_no": _code(data["psn_no"], True), "ym": ym,
              "crdt_type": kind, "crdt_base": base, "amount": amount}
    return _build(model, values, _present(data, _CREDIT_NAMES))


# ---------------------------------------------------------------- which models are checked here


def shape(model: type) -> str:
    """A digest of everything pydantic checks for `model` (its core schema, validators named), with
    no memory address or id in it: it changes when events.py changes the model."""
    text = re.sub(r" at 0x[0-9a-f]+|:[0-9]+'", "", repr(model.__pydantic_core_schema__))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


#: The models these checks were written against, by the digest of their definition then.
WRITTEN_FOR: dict[type, tuple[str, Any]] = {
    Institution: ("9cb95511c1468198", _institution),
    Person: ("ebe8b44315a1c5d5", _person),
    Claim: ("2b2e883605d420d6", _claim),
    PreSettlement: ("ca2f44a94977c41c", _claim),
    Reversal: ("bf79015cfd241036", _reversal),
    Credit: ("87f711adc1497e6c", _credit),
}
#: The models checked here: those whose definition is still the one these checks were written for.
FAST = {model: check for model, (digest, check) in WRITTEN_FOR.items() if shape(model) == digest}
