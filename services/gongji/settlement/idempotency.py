"""Idempotency (CONTRACT.md): an event's content hash, and what a resend or a reused id is answered.

A claim, reversal or credit id is one request of one person: the same id with the same content (however
it was written) gets the identical result again, with other content a DUPLICATE_CONFLICT, and from
another person a DUPLICATE_CONFLICT too. Pure.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from decimal import Decimal

import orjson
from pydantic import BaseModel

from gongji.settlement.domain import CreditRecord, Output, Rejection
from gongji.settlement.events import Claim, Credit, FeeLine, Reversal
from gongji.settlement.store import Record


# Decimal → its canonical text: prices, counts and ratios repeat across claims, and normalize plus
# format is most of their cost. Keyed by value, so only non-zero ones (0 and -0 are equal keys but
# print apart); bounded.
_DECIMALS: dict[Decimal, str] = {}
_DECIMALS_MAX = 65_536
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
_EVENTS = frozenset((Claim, Reversal, Credit))


def _decimal(value: Decimal) -> str:  # 3 and 3.0000 are one count
    text = _DECIMALS.get(value) if value else None
    if text is None:
        text = format(value.normalize(), "f")
        if value and len(_DECIMALS) < _DECIMALS_MAX:
            _DECIMALS[value] = text
    return text


def _canonical(value):
    """What orjson cannot write itself, canonical: a model as its fields without the null ones
    (absent and null are the same: a field added later changes nothing), a Decimal by value, a time
    as its UTC instant (whatever offset it was written with)."""
    kind = type(value)  # exact types first: isinstance of a pydantic model's class costs a microsecond
    if kind is Decimal:
        return _decimal(value)
    if kind is FeeLine:
        return _line(value)
    if kind is datetime:
        return value.astimezone(timezone.utc).isoformat()
    if kind in _EVENTS or isinstance(value, BaseModel):
        return {key: item for key, item in value.__dict__.items() if item is not None}
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    raise TypeError(f"no canonical form for {type(value).__name__}")


# A fee line's canonical JSON, kept by the line object itself: claims share the lines that input
# checking kept (gongji.settlement.admission), so a line recurring across claims is written once.
# The line is held with it, so its id cannot be another's meanwhile; bounded.
_LINES: dict[int, tuple[FeeLine, orjson.Fragment]] = {}
_LINES_MAX = 8_192


def _line(line: FeeLine) -> orjson.Fragment:
    held = _LINES.get(id(line))
    if held is not None and held[0] is line:
        return held[1]
    fields = {key: item for key, item in line.__dict__.items() if item is not None}
    written = orjson.Fragment(orjson.dumps(fields, default=_canonical, option=_OPTIONS))
    if len(_LINES) >= _LINES_MAX:
        _LINES.clear()
    _LINES[id(line)] = (line, written)
    return written


def fingerprint(event: Claim | Reversal | Credit) -> str:
    """Content hash: the same id with other content is a DUPLICATE_CONFLICT. Canonical, so a resend
    written differently (decimal places, UTC offset, a newer schema's empty field) is the same.
    orjson walks the event (sorted keys), calling `_canonical` for models, Decimals and times."""
    return hashlib.blake2b(orjson.dumps(event, default=_canonical, option=_OPTIONS), digest_size=16).hexdigest()


def taken(event: Claim | Reversal | Credit, owner: str) -> Rejection:
    """CONTRACT Idempotency: an id is one request of one person; another person's use of it conflicts."""
    kind = "credit" if isinstance(event, Credit) else "reversal" if isinstance(event, Reversal) else "claim"
    ident = {"credit_id": event.credit_id} if isinstance(event, Credit) else {"claim_id": event.claim_id}
    return Rejection(err_code="DUPLICATE_CONFLICT", psn_no=event.psn_no, input_type=kind,
                     err_msg=f"{kind} id {next(iter(ident.values()))} already belongs to a {kind} of another "
                             f"person; the original stands. Send this one with a new id", **ident)


def _conflict(event: Claim | Reversal | Credit, kind: str) -> Rejection:
    ident = {"credit_id": event.credit_id} if isinstance(event, Credit) else {"claim_id": event.claim_id}
    name = next(iter(ident.values()))
    return Rejection(err_code="DUPLICATE_CONFLICT", psn_no=event.psn_no, input_type=kind,
                     err_msg=f"{kind} {name} was already processed with different content; the original stands. "
                             "Send a reversal and a new claim id to change it", **ident)


def same_content(stored: str, computed: str) -> bool:
    """A stored fingerprint is the whole digest, or its first 16 hex digits (a lean record in Redis
    keeps 8 bytes: a changed resend passes for the same with odds of 2^-64)."""
    return stored == computed or (len(stored) == 16 and computed.startswith(stored))


def replayed(event: Claim | Reversal | Credit, record: Record, kind: str) -> Output:
    """The event was processed before: the identical result again, or a conflict."""
    if not same_content(record.fingerprint, fingerprint(event)):
        return Output(event.psn_no, _conflict(event, kind))
    if isinstance(record, CreditRecord):
        return Output(event.psn_no, record.result)
    return Output(event.psn_no, record.settlement)
