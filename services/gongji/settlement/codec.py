"""The one mapper between the wire (Avro records or replay's JSON objects) and the domain.

Inputs: a wire dict and its event type → a validated domain event, or a Rejection naming what is
wrong; and back (`to_wire`), for the tools that publish what they validated. Outputs: a domain result → (event type, wire dict) in the national field names, money as
yuan Decimals; the service writes them as Avro bytes with `ResultEncoder`, a settlement straight
from the engine's object (its field names are the wire's), and replay writes their JSON lines with
`json_line`, straight from the objects too. What is listed here is exactly what goes on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from pydantic import ValidationError

from gongji.common.avro import SchemaCatalog, decimal_bytes
from gongji.common.money import shown, to_yuan, yuan_text
from gongji.contract.wire import DEFAULT_BOUNDS, MONEY_FIELDS, NAME_MAX_LENGTH, Bounds
from gongji.settlement.admission import validated
from gongji.settlement.catalogue import CatalogueItem
from gongji.settlement.domain import Accumulators, CreditApplied, Output, Rejection, Settlement
from gongji.settlement.events import (
    NAME_PATTERN,
    TEXT_PATTERN,
    AccumulatorQuery,
    Claim,
    Credit,
    Event,
    Institution,
    Person,
    PreSettlement,
    Reversal,
    text_problem,
)

INPUT_TYPES: dict[str, type] = {
    "institution": Institution, "person": Person, "claim": Claim, "reversal": Reversal, "credit": Credit,
    "catalogue": CatalogueItem,
}
#: The gateway's questions on `inquiries` (contract.wire.INQUIRY_RECORDS), answered without effect.
INQUIRY_TYPES: dict[str, type] = {"presettlement": PreSettlement, "accumulator-query": AccumulatorQuery}

_SETTLEMENT_FIELDS = (
    "claim_id", "setl_id", "psn_no", "mdtrt_id", "med_type", "psn_type", "insu_admdvs", "mdtrtarea_admvs",
    "fixmedins_code", "setl_time", *MONEY_FIELDS, "pool_prop_selfpay", "balc", "clr_type", "clr_optins",
    "mulaid_holder_psn_no", "psn_idet_type", "maf_pref_pay",
)
_REVERSAL_FIELDS = ("orig_claim_id", "orig_setl_id", "orig_setl_time")
_MONEY_OUT = (*MONEY_FIELDS, "balc", "maf_pref_pay")


def describe(error: ValidationError, limit: int = 3) -> str:
    """A pydantic error as a sentence: which fields, what is wrong."""
    parts = []
    for problem in error.errors()[:limit]:
        where = ".".join(str(part) for part in problem["loc"]) or "event"
        message = problem["msg"]
        pattern = problem.get("ctx", {}).get("pattern") if problem["type"] == "string_pattern_mismatch" else None
        if pattern == TEXT_PATTERN:
            message = text_problem(problem["input"]) or message
        elif pattern == NAME_PATTERN:
            message = text_problem(problem["input"], NAME_MAX_LENGTH, name=True) or message
        parts.append(f"{where}: {message}")
    more = error.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def to_event(kind: str, data: dict[str, Any], bounds: Bounds = DEFAULT_BOUNDS,
             now: datetime | None = None, decimals: Callable[[dict], None] | None = None) -> Event | Rejection:
    """Validate one input against the bounds, at `now` (the wall clock if None). Never raises:
    anything wrong, whatever exception it raises, becomes an INVALID_CLAIM rejection saying what.
    `decimals`: what SchemaCatalog.decode_unscaled gave with `data` (admission.validated)."""
    model = INPUT_TYPES.get(kind) or INQUIRY_TYPES.get(kind)
    if model is None:
        return Rejection(err_code="INVALID_CLAIM", input_type=_code(kind), **_ids(kind, data),
                         err_msg=f"unknown event_type {shown(kind)}; expected one of {', '.join(INPUT_TYPES)}")
    if not isinstance(data, dict):
        problem = f"not a record but {type(data).__name__}"
    else:
        try:
            return validated(model, data, bounds, now or datetime.now(timezone.utc), decimals)
        except ValidationError as error:
            problem = describe(error)
        except Exception as error:  # not a validator's ValueError: still the input's fault, never an outage
            problem = f"cannot be read ({type(error).__name__})"
    return Rejection(err_code="INVALID_CLAIM", input_type=kind, **_ids(kind, data), err_msg=f"invalid {kind}: {problem}")


def _ids(kind: str, data: Any) -> dict[str, str | None]:
    """The ids a rejection echoes: only those that are clean ids themselves."""
    get = data.get if isinstance(data, dict) else (lambda name: None)
    ids = {"credit_id": _code(get("credit_id"))} if kind == "credit" else {
        "claim_id": _code(get("query_id" if kind == "accumulator-query" else "claim_id"))}
    return {"psn_no": _code(get("psn_no")), **ids}


def _code(value: Any) -> str | None:
    return value if isinstance(value, str) and value and text_problem(value) is None else None


def to_wire(event: Event) -> dict[str, Any]:
    """A validated input event → its wire dict (what `to_event` reads back to the same event): money
    as yuan Decimals with two places, times as ISO 8601 with their offset."""
    data = event.model_dump()
    if isinstance(event, (Claim, Reversal)):
        data["setl_time"] = event.setl_time.isoformat()
    if isinstance(event, Claim):
        data["fee_details"] = [{**line, "det_item_fee_sumamt": to_yuan(line["det_item_fee_sumamt"])}
                               for line in data["fee_details"]]
    elif isinstance(event, Credit):
        data.update({name: None if data[name] is None else to_yuan(data[name]) for name in ("crdt_base", "amount")})
    elif isinstance(event, Institution):
        data["medins_lv"] = data["medins_lv"] or ""  # a pharmacy's: the wire's field is a plain string
    elif isinstance(event, Person) and data["chronic_diseases"] is not None:
        data["chronic_diseases"] = list(data["chronic_diseases"])
    elif isinstance(event, CatalogueItem):
        data.update({name: None if data[name] is None else data[name].isoformat() for name in ("begndate", "enddate")})
    return data


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
    if isinstance(value, Accumulators):
        return "accumulators", {
            "query_id": value.query_id, "psn_no": value.psn_no, "year": f"{value.year:04d}", "insutype": value.insutype,
            "insu_admdvs": value.insu_admdvs, "balc": money(value.balc), "visits": value.visits,
            "cuminfo": [{"cum_type_code": row.cum_type_code, "cum_type_name": row.cum_type_name, "cum": money(row.cum),
                         "payb_lmt_amt": None if row.payb_lmt_amt is None else money(row.payb_lmt_amt),
                         "crt_payb_lmt_amt": None if row.crt_payb_lmt_amt is None else money(row.crt_payb_lmt_amt)}
                        for row in value.cuminfo]}
    raise TypeError(f"not a settlement result: {value!r}")


def _ratio(value: Decimal) -> int:
    return int(value.scaleb(4))  # pool_prop_selfpay's unscaled integer, as from_output gives it


class ResultEncoder:
    """An output → (event type, Avro bytes, the id its headers carry): the bytes of `from_output`
    written by `catalog.encode_unscaled`. A settlement or reversal (nearly every output) is written
    straight from the engine's Settlement by a writer generated from its schema, with no wire dict
    in between; the wire's field names are the Settlement's, tested byte for byte over synthetic
    traffic. Anything else goes through from_output."""

    def __init__(self, catalog: SchemaCatalog, records: dict[str, str]):
        self.catalog = catalog
        self.records = records  # event type → record name
        self.direct = {kind: catalog.object_encoder(records[kind], {f"gongji.{records[kind]}.pool_prop_selfpay": _ratio})
                       for kind in ("settlement", "reversal")}

    def encode(self, output: Output) -> tuple[str, bytes, str]:
        value = output.value
        if type(value) is Settlement:
            kind = "reversal" if value.is_reversal else "settlement"
            return kind, self.direct[kind](value), value.claim_id
        kind, wire = from_output(output, unscaled=True)
        ident = wire.get("claim_id") or wire.get("credit_id") or wire.get("query_id") or ""
        return kind, self.catalog.encode_unscaled(self.records[kind], wire), ident


def json_ready(data: Any) -> Any:
    """Decimals as strings with their places ("12.30"), for the JSON form."""
    if isinstance(data, Decimal):
        return str(data)
    if isinstance(data, dict):
        return {key: json_ready(item) for key, item in data.items()}
    if isinstance(data, list):
        return [json_ready(item) for item in data]
    return data


# ---------------------------------------------------------------- results as JSON lines


class _YuanText(dict):
    """Fen → its JSON form as json_ready writes it ('"-12.05"'); amounts repeat (0 above all), so met
    ones are kept, a bounded number."""

    def __missing__(self, fen: int) -> str:
        text = f'"{yuan_text(fen)}"'
        if len(self) < 65_536:
            self[fen] = text
        return text


def _field(name: str, kind: str, place: str = "v") -> str:
    """The f-string piece writing one field: `"name": value`, as json.dumps(ensure_ascii=False) does."""
    value = f"{place}.{name}"
    writes = {"text": f"_q({value})", "text?": f"_t({value})", "yuan": f"_y[{value}]",
              "decimal": f"_d({value})", "number": value}[kind]
    return f'"{name}": {{{writes}}}'


def _writer(template: str) -> Callable:
    def _t(value: str | None) -> str:
        return "null" if value is None else encode_basestring(value)
    def _d(value: Decimal) -> str:
        return f'"{value}"'
    scope = {"_q": encode_basestring, "_t": _t, "_d": _d, "_y": _YuanText()}
    exec(f"def write(v, kind, rows):\n    return f'{template}'", scope)  # noqa: S102 (a template of our own)
    return scope["write"]


_KINDS = {name: "yuan" for name in _MONEY_OUT} | {"pool_prop_selfpay": "decimal",
                                                   "mulaid_holder_psn_no": "text?", "psn_idet_type": "text?"}
_ROW = _writer("{{" + ", ".join(_field(name, kind) for name, kind in (
    ("fund_pay_type", "text"), ("fund_payamt", "yuan"), ("crt_payb_lmt_amt", "yuan"),
    ("setl_proc_info", "text"))) + "}}")
_HEAD = '{{"event_type": "{kind}", '
_SETTLED = ", ".join(_field(name, _KINDS.get(name, "text")) for name in _SETTLEMENT_FIELDS) + ', "setldetail": [{rows}]'
_SETTLEMENT_JSON = _writer(_HEAD + _SETTLED + "}}")
_REVERSAL_JSON = _writer(_HEAD + _SETTLED + ", " + ", ".join(_field(name, "text") for name in _REVERSAL_FIELDS) + "}}")
_CREDIT_JSON = _writer(_HEAD + ", ".join(_field(name, kind) for name, kind in (
    ("credit_id", "text"), ("psn_no", "text"), ("ym", "text"), ("amount", "yuan"), ("balc", "yuan"),
    ("insu_admdvs", "text?"))) + "}}")


def json_line(output: Output) -> str:
    """A result as its JSON line (what `gongji replay` prints): the text of
    json.dumps({"event_type": kind, **json_ready(wire)}, ensure_ascii=False) for `from_output`'s
    (kind, wire), written straight from a settlement, reversal or credit (nearly every output)."""
    value = output.value
    kind = type(value)
    if kind is Settlement:
        rows = ", ".join(_ROW(row, None, None) for row in value.setldetail)
        if value.orig_claim_id is None:
            return _SETTLEMENT_JSON(value, "settlement", rows)
        return _REVERSAL_JSON(value, "reversal", rows)
    if kind is CreditApplied:
        return _CREDIT_JSON(value, "credit", None)
    kind_name, wire = from_output(output)
    return json.dumps({"event_type": kind_name, **json_ready(wire)}, ensure_ascii=False)
