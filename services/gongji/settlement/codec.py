"""The one mapper between the wire (Avro records or replay's JSON objects) and the domain.

Inputs: a wire dict and its event type → a validated domain event, or a Rejection naming what is
wrong. Outputs: a domain result → (event type, wire dict) in the national field names, money as
yuan Decimals. What is listed here is exactly what goes on the wire.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from gongji.common.avro import decimal_bytes
from gongji.common.money import to_yuan
from gongji.settlement.domain import (
    MONEY_FIELDS,
    Claim,
    Credit,
    CreditApplied,
    Institution,
    Person,
    Rejection,
    Reversal,
    Settlement,
)
from gongji.settlement.handler import Event, Output

INPUT_TYPES: dict[str, type] = {
    "institution": Institution, "person": Person, "claim": Claim, "reversal": Reversal, "credit": Credit,
}
# Avro record name of each event type, inputs and outputs.
INPUT_RECORDS = {"institution": "Institution", "person": "Person", "claim": "Claim", "reversal": "Reversal",
                 "credit": "Credit"}
RECORD_INPUTS = {record: kind for kind, record in INPUT_RECORDS.items()}
OUTPUT_RECORDS = {"settlement": "Settlement", "reversal": "ReversalResult", "rejection": "Rejection",
                  "credit": "CreditResult"}

_SETTLEMENT_FIELDS = (
    "claim_id", "setl_id", "psn_no", "mdtrt_id", "med_type", "psn_type", "insu_admdvs", "mdtrtarea_admvs",
    "fixmedins_code", "setl_time", *MONEY_FIELDS, "pool_prop_selfpay", "balc", "clr_type", "clr_optins",
    "mulaid_holder_psn_no",
)
_REVERSAL_FIELDS = ("orig_claim_id", "orig_setl_id", "orig_setl_time")
_MONEY_OUT = (*MONEY_FIELDS, "balc")


def describe(error: ValidationError, limit: int = 3) -> str:
    """A pydantic error as a sentence: which fields, what is wrong."""
    parts = []
    for problem in error.errors()[:limit]:
        where = ".".join(str(part) for part in problem["loc"]) or "event"
        parts.append(f"{where}: {problem['msg']}")
    more = error.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def to_event(kind: str, data: dict[str, Any]) -> Event | Rejection:
    """Validate one input. Anything wrong becomes an INVALID_CLAIM rejection saying what."""
    model = INPUT_TYPES.get(kind)
    if model is None:
        return Rejection(err_code="INVALID_CLAIM", psn_no=_text(data.get("psn_no")), input_type=kind,
                         err_msg=f"unknown event_type {kind!r}; expected one of {', '.join(INPUT_TYPES)}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        ids = {"credit_id": _text(data.get("credit_id"))} if kind == "credit" else {"claim_id": _text(data.get("claim_id"))}
        return Rejection(err_code="INVALID_CLAIM", psn_no=_text(data.get("psn_no")), input_type=kind,
                         err_msg=f"invalid {kind}: {describe(error)}", **ids)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def from_output(output: Output, unscaled: bool = False) -> tuple[str, dict[str, Any]]:
    """A result → (event type, wire dict), money as yuan Decimals; or, with `unscaled`, every
    decimal as the bytes of its unscaled integer, for SchemaCatalog.encode_unscaled."""
    value = output.value
    money = decimal_bytes if unscaled else to_yuan
    if isinstance(value, Settlement):
        data: dict[str, Any] = {name: getattr(value, name) for name in _SETTLEMENT_FIELDS}
        for name in _MONEY_OUT:
            data[name] = money(data[name])
        if unscaled:
            data["pool_prop_selfpay"] = decimal_bytes(int(value.pool_prop_selfpay.scaleb(4)))
        data["setldetail"] = [
            {"fund_pay_type": row.fund_pay_type, "fund_payamt": money(row.fund_payamt),
             "crt_payb_lmt_amt": money(row.crt_payb_lmt_amt), "setl_proc_info": row.setl_proc_info}
            for row in value.setldetail
        ]
        if value.is_reversal:
            data.update({name: getattr(value, name) for name in _REVERSAL_FIELDS})
            return "reversal", data
        return "settlement", data
    if isinstance(value, Rejection):
        return "rejection", {"claim_id": value.claim_id, "credit_id": value.credit_id, "psn_no": value.psn_no,
                             "err_code": value.err_code, "err_msg": value.err_msg, "input_type": value.input_type}
    if isinstance(value, CreditApplied):
        return "credit", {"credit_id": value.credit_id, "psn_no": value.psn_no, "ym": value.ym,
                          "amount": money(value.amount), "balc": money(value.balc),
                          "insu_admdvs": value.insu_admdvs}
    raise TypeError(f"not a settlement result: {value!r}")


def json_ready(data: Any) -> Any:
    """Decimals as strings with their places ("12.30"), for the JSON form."""
    if isinstance(data, Decimal):
        return str(data)
    if isinstance(data, dict):
        return {key: json_ready(item) for key, item in data.items()}
    if isinstance(data, list):
        return [json_ready(item) for item in data]
    return data
