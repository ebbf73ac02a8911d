"""A claim's or credit's record as Redis keeps it: packed, and read back in any form ever written.

The record hash has `fp` (the content fingerprint) and `data`. Written now: `fp` as its 16 raw bytes,
and for a claim or reversal `data` in the lean form (lean.py: `[3, ...]`, what the result is rebuilt
from, without what the effects or the other figures give); for a credit `[2, "k", ...]`. Read as
well: the packed form of claims before the lean one, `data` a JSON array `[2, effects..., settlement...]`: the fields by position in the frozen orders
below (never reorder them; a field added to Settlement or Effects goes at the end of its tuple,
read back as its default from records written before), trailing defaults left out, and no field
the key already says (the claim or credit id, the person) or that is derived from it (the setl_id
`rules.setl_id_for` gives, when it is that one). Read as well: the first form, `fp` as hex and
`data` a JSON object with named fields (records written before the packed form), so a live Redis
needs no migration: its old records are read as they are, every new one is packed.

The registry entry in a person's state hash (field `person`) is packed the same way, without its
psn_no: short enough (under 64 bytes, Redis's hash-max-listpack-value) that the whole state hash keeps
the compact listpack encoding. A JSON object there is the first form, read as well.
"""

from __future__ import annotations

import binascii
import dataclasses
import re
from decimal import Decimal

import orjson

from gongji.settlement import lean
from gongji.settlement.domain import ClaimRecord, CreditApplied, CreditRecord, Effects, SetlDetail, Settlement
from gongji.settlement.events import Person
from gongji.settlement.rules import setl_id_for
from gongji.settlement.window import year_of

Record = ClaimRecord | CreditRecord

PACKED = 2  # the first element of a packed `data`

# Settlement's fields by position, without claim_id and psn_no (the key says them).
SETTLEMENT_ORDER = (
    "setl_id", "mdtrt_id", "med_type", "psn_type", "insu_admdvs", "mdtrtarea_admvs", "fixmedins_code", "setl_time",
    "medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc",
    "hifp_pay", "pool_prop_selfpay", "hifob_pay", "cvlserv_pay", "maf_pay", "oth_pay", "fund_pay_sumamt",
    "psn_part_amt", "acct_pay", "acct_mulaid_pay", "psn_cash_pay", "balc", "clr_type", "clr_optins", "setldetail",
    "orig_claim_id", "orig_setl_id", "orig_setl_time", "mulaid_holder_psn_no", "psn_idet_type", "maf_pref_pay",
)
EFFECTS_ORDER = (
    "year", "deductible", "outpatient_pool", "fund_cap", "visits", "medfee", "acct_pay", "mulaid_holder", "mulaid_pay",
    "chronic_group", "chronic_deductible", "chronic_pool", "major_deductible", "hifob_deductible", "hifob",
    "cvlserv_deductible", "cvlserv", "maf_deductible", "maf", "maf_pref_burden", "maf_pref",
)
CREDIT_ORDER = ("ym", "amount", "balc", "insu_admdvs")
PERSON_ORDER = ("insutype", "psn_type", "insu_admdvs", "psn_insu_stas", "fd_fixmedins_code", "mulaid_holder_psn_no",
                "mulaid_relation", "psn_idet_type", "chronic_diseases", "cvlserv_flag", "chronic_since", "brdy",
                "aid_idet_type", "aid_begndate", "aid_enddate", "aid_apprv_org", "aid_apprv_date")
# The year has no default: it is always written.
_EFFECTS_DEFAULTS = (object(), *(getattr(Effects(year=0), name) for name in EFFECTS_ORDER[1:]))


def _trimmed(values: list, defaults: tuple = ()) -> list:
    """`values` without the trailing ones equal to their default (None where none is given)."""
    end = len(values)
    while end and values[end - 1] == (defaults[end - 1] if defaults else None):
        end -= 1
    return values[:end]


_is_digest = re.compile(r"[0-9a-f]{32}").fullmatch  # idempotency.fingerprint's hexdigest


def fields(record: Record, psn_no: str, event_id: str, used: dict[int, str] | None = None) -> tuple[bytes, bytes]:
    """`fp` and `data` of `record`, stored under `psn_no`'s key of `event_id` (its claim or credit id):
    packed, or in the first form for a record whose key does not say its ids or whose fingerprint is
    not a digest (the packed form has the 16 raw bytes, the squeezed lean one the first 8:
    idempotency.same_content). `used` collects the templates of its
    texts (lean.py); without it they are kept whole."""
    data = dump(record, psn_no, event_id, used) if _is_digest(record.fingerprint) else dump_named(record)
    if data.startswith(b"{"):
        return record.fingerprint.encode(), data
    fingerprint = bytes.fromhex(record.fingerprint)
    return (fingerprint[:8] if data[0] == SQUEEZED else fingerprint), data


def value(record: Record, psn_no: str, event_id: str, used: dict[int, str] | None = None) -> bytes:
    """The record as one field of the person's records hash: its year (4 digits), the fingerprint's
    length (one byte) and the fingerprint, then `data` (see `fields`). A reversal of it appends
    "\n" and the reversal's id (lua/commit.lua); JSON as orjson writes it holds no raw newline."""
    fingerprint, data = fields(record, psn_no, event_id, used)
    return b"%04d" % year_of(record) + bytes((len(fingerprint),)) + fingerprint + data


def _split(raw: bytes) -> tuple[bytes, bytes, bytes | None]:
    """A field of the records hash: its fingerprint, its data, and the reversal's id if it was reversed."""
    start = 5 + raw[4]
    if raw[start] == SQUEEZED:
        end = start + 5 + int.from_bytes(raw[start + 1:start + 3], "big") + int.from_bytes(raw[start + 3:start + 5], "big")
    else:
        end = raw.find(b"\n", start)
        end = len(raw) if end < 0 else end
    return raw[5:start], raw[start:end], raw[end + 1:] if end < len(raw) else None


def load_value(raw: bytes, psn_no: str, event_id: str) -> Record:
    """A record from its field in the records hash (`value`, and a reversal's mark if any); raises
    lean.MissingTemplates when it names a template this process has not read yet."""
    fingerprint, data, reversed_by = _split(raw)
    parts = {b"fp": fingerprint, b"data": data, b"year": raw[:4]}
    if reversed_by is not None:
        parts[b"reversed_by"] = reversed_by
    return load(parts, psn_no, event_id)


def template_ids(raw: bytes) -> set[int]:
    """The templates a field of the records hash names (none but in the lean form)."""
    data = _split(raw)[1]
    if data[:1] == bytes((SQUEEZED,)):
        return lean.template_ids(unsqueeze(data))
    return lean.template_ids(orjson.loads(data)) if data.startswith(b"[3,") else set()


# The lean form squeezed: its JSON without its strings holds only digits, ",[]-" and null; four of
# the hex digits stand for those four characters, "f" for null and "e" for a string, and two go in
# a byte. The strings follow as JSON has them (escaped: no NUL), joined by NUL. `data` is then
# SQUEEZED, the two parts' lengths (2 bytes each), the two parts.
SQUEEZED = 3
_TO_HEX = bytes.maketrans(b",[]-", b"abcd")
_FROM_HEX = bytes.maketrans(b"abcd", b",[]-")
_STRING = re.compile(rb'"((?:[^"\\]|\\.)*)"')


def squeeze(data: list) -> bytes:
    """Lean `data` squeezed (as JSON when it would not fit the two lengths)."""
    parts = _STRING.split(orjson.dumps(data))  # text, string, text, ...
    text = b"e".join(parts[::2]).replace(b"null", b"f").translate(_TO_HEX)
    tail = b"\0".join(parts[1::2])
    if len(text) > 131_000 or len(tail) > 65_535:
        return orjson.dumps(data)
    body = binascii.unhexlify(text if len(text) % 2 == 0 else text + b"a")
    return bytes((SQUEEZED,)) + len(body).to_bytes(2, "big") + len(tail).to_bytes(2, "big") + body + tail


def unsqueeze(data: bytes) -> list:
    size = int.from_bytes(data[1:3], "big")
    parts = binascii.hexlify(data[5:5 + size]).translate(_FROM_HEX).replace(b"f", b"null").split(b"e")
    if parts[-1].endswith(b","):
        parts[-1] = parts[-1][:-1]
    strings = data[5 + size:].split(b"\0") if len(parts) > 1 else ()
    out = [parts[0]]
    for string, part in zip(strings, parts[1:]):
        out += [b'"', string, b'"', part]
    return orjson.loads(b"".join(out))


def dump(record: Record, psn_no: str, event_id: str, used: dict[int, str] | None = None) -> bytes:
    """The `data` of `record`: lean for a claim or reversal, packed for a credit, or the first form
    (see `fields`)."""
    result = record.result if isinstance(record, CreditRecord) else record.settlement
    if (result.credit_id if isinstance(record, CreditRecord) else result.claim_id) != event_id \
            or result.psn_no != psn_no:
        return dump_named(record)
    if isinstance(record, CreditRecord):
        credit = record.result
        return orjson.dumps([PACKED, "k", *_trimmed([getattr(credit, name) for name in CREDIT_ORDER])])
    return squeeze(lean.dump(record, used))


def dump_packed(record: ClaimRecord) -> bytes:
    """The packed form of a claim's record, as written before the lean form (its key says its ids)."""
    settlement = record.settlement
    event_id = settlement.claim_id
    values = [getattr(settlement, name) for name in SETTLEMENT_ORDER]
    if settlement.setl_id == setl_id_for(event_id):
        values[0] = None
    values[SETTLEMENT_ORDER.index("pool_prop_selfpay")] = str(settlement.pool_prop_selfpay)
    values[SETTLEMENT_ORDER.index("setldetail")] = [
        [row.fund_pay_type, row.fund_payamt, row.crt_payb_lmt_amt, row.setl_proc_info] for row in settlement.setldetail]
    effects = _trimmed([getattr(record.effects, name) for name in EFFECTS_ORDER], _EFFECTS_DEFAULTS)
    return orjson.dumps([PACKED, len(effects), *effects, *_trimmed(values)])


def load(raw: dict[bytes, bytes], psn_no: str, event_id: str) -> Record | None:
    """The record in a record hash as HGETALL returns it (empty: no record), in either form."""
    if not raw:
        return None
    reversed_by = raw.get(b"reversed_by")
    reversed_by = reversed_by.decode() if reversed_by else None
    data = raw[b"data"]
    data = unsqueeze(data) if data[:1] == bytes((SQUEEZED,)) else orjson.loads(data)
    if isinstance(data, dict):
        return _load_named(data, raw[b"fp"].decode(), reversed_by)
    fingerprint = raw[b"fp"].hex()
    if data[0] == lean.LEAN:
        return lean.load(data, int(raw[b"year"]), psn_no, event_id, fingerprint, reversed_by)
    if data[1] == "k":
        values = dict(zip(CREDIT_ORDER, data[2:]))
        return CreditRecord(fingerprint, CreditApplied(credit_id=event_id, psn_no=psn_no, **values))
    count = data[1]
    effects = Effects(**dict(zip(EFFECTS_ORDER, data[2:2 + count])))
    values = dict.fromkeys(SETTLEMENT_ORDER)
    values.update(zip(SETTLEMENT_ORDER, data[2 + count:]))
    if values["setl_id"] is None:
        values["setl_id"] = setl_id_for(event_id)
    values["pool_prop_selfpay"] = Decimal(values["pool_prop_selfpay"])
    values["setldetail"] = tuple(SetlDetail(*row) for row in values["setldetail"] or ())
    return ClaimRecord(fingerprint, Settlement(claim_id=event_id, psn_no=psn_no, **values), effects, reversed_by)


def dump_named(record: Record) -> bytes:
    """The first form (written before the packed one; kept for records whose key does not say their ids)."""
    if isinstance(record, CreditRecord):
        return orjson.dumps({"credit": dataclasses.asdict(record.result)})
    return orjson.dumps({"settlement": record.settlement.to_record(), "effects": record.effects.to_record()})


def _load_named(data: dict, fingerprint: str, reversed_by: str | None) -> Record:
    """The first form: `{"credit": {...}}` or `{"settlement": {...}, "effects": {...}}`."""
    if "credit" in data:
        return CreditRecord(fingerprint, CreditApplied(**data["credit"]))
    return ClaimRecord(fingerprint, Settlement.from_record(data["settlement"]), Effects(**data["effects"]), reversed_by)


def dump_person(person: Person) -> bytes:
    """The packed registry entry of `person`, stored in their own state hash (which says the psn_no)."""
    return orjson.dumps(_trimmed([getattr(person, name) for name in PERSON_ORDER]))


def load_person(raw: bytes, psn_no: str) -> Person:
    """A registry entry as it was accepted when written, in either form. Not validated again: a rule
    added since (a tighter id pattern, a new bound) must not make a stored person unreadable, which
    would refuse every later claim of theirs."""
    data = orjson.loads(raw)
    if isinstance(data, list):
        data = {"psn_no": psn_no, **dict.fromkeys(PERSON_ORDER), **dict(zip(PERSON_ORDER, data))}
    if data.get("chronic_diseases") is not None:
        data["chronic_diseases"] = tuple(data["chronic_diseases"])
    return Person.model_construct(**data)
