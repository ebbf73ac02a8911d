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
from gongji.settlement.events import Claim, Credit, Reversal
from gongji.settlement.store import Record


_AS_IS = frozenset({str, int, bool})  # most of a claim's fields: kept as they are, with no call
# Decimal → its canonical text: prices, counts and ratios repeat across claims, and normalize plus
# format is most of a line's cost. Keyed by value, so only non-zero ones (0 and -0 are equal keys
# but print apart); bounded.
_DECIMALS: dict[Decimal, str] = {}
_DECIMALS_MAX = 65_536


def _decimal(value: Decimal) -> str:  # 3 and 3.0000 are one count
    text = _DECIMALS.get(value) if value else None
    if text is None:
        text = format(value.normalize(), "f")
        if value and len(_DECIMALS) < _DECIMALS_MAX:
            _DECIMALS[value] = text
    return text


def _canonical(value):
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is Decimal:
        return _decimal(value)
    if isinstance(value, (BaseModel, dict)):
        # A model's fields as model_dump gives them, without its copy. Absent and null are the
        # same: a field added later changes nothing.
        items = value.__dict__ if isinstance(value, BaseModel) else value
        return {key: item if type(item) in _AS_IS else _canonical(item)
                for key, item in items.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [item if type(item) in _AS_IS else _canonical(item) for item in value]
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, datetime):  # one instant, whatever the offset it was written with
        return value.astimezone(timezone.utc).isoformat()
    return value


def fingerprint(event: Claim | Reversal | Credit) -> str:
    """Content hash: the same id with other content is a DUPLICATE_CONFLICT. Canonical, so a resend
    written differently (decimal places, UTC offset, a newer schema's empty field) is the same."""
    canonical = orjson.dumps(_canonical(event), option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


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


def replayed(event: Claim | Reversal | Credit, record: Record, kind: str) -> Output:
    """The event was processed before: the identical result again, or a conflict."""
    if record.fingerprint != fingerprint(event):
        return Output(event.psn_no, _conflict(event, kind))
    if isinstance(record, CreditRecord):
        return Output(event.psn_no, record.result)
    return Output(event.psn_no, record.settlement)
