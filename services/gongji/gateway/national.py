"""The national interface's shape, pure: the `{infno, msgid, input: {data}}` envelope in, the
`{infcode, err_msg, output}` answer out, and the one mapper between them and Gongji's published
language (a 2207 request becomes a `Claim` record; a result on `settlements` becomes `setlinfo` and
`setldetail`). Local times are "yyyy-MM-dd HH:mm:ss" in Asia/Shanghai both ways; money in is a
string or a number, money out a string with two places (exact, as `gongji replay` writes it).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from gongji.contract.wire import ID_MAX_LENGTH, MONEY_FIELDS, SHANGHAI

LOCAL_TIME = "%Y-%m-%d %H:%M:%S"
#: msgid: the caller's message id (the national platform's is 30 characters: institution code,
#: time, serial); with the institution's code it names the claim, so a retry names the same one.
MSGID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
CODE = re.compile(r"^[A-Za-z0-9_-]{1,20}$")  # the national code is 12; with a msgid, a claim_id of at most 64
SUPPORTED = ("2206", "2207", "2208", "5206")
#: What a read-only question (2206, 5206) is answered with when settlement did not answer in time.
UNANSWERED = "no answer in time; nothing was changed, ask again"
PENDING = "accepted, result pending; query again with the same msgid"
CENT = Decimal("0.01")


class Refused(ValueError):
    """A request that cannot be taken: the err_msg names the field."""


def answer(infcode: int, err_msg: str = "", output: dict | None = None) -> dict:
    return {"infcode": infcode, "err_msg": err_msg, "output": output or {}}


def refusal(message: str) -> dict:
    return answer(-1, message)


def claim_id(fixmedins_code: str, msgid: str) -> str:
    """The claim a request settles: the same institution and msgid always name the same claim, so a
    retried request is the same claim and settlement's idempotency answers it without settling again."""
    ident = f"gw-{fixmedins_code}-{msgid}"
    assert len(ident) <= ID_MAX_LENGTH  # CODE and MSGID bound it
    return ident


def local_time(text: Any, field: str) -> datetime:
    """A "yyyy-MM-dd HH:mm:ss" local time (Asia/Shanghai), or ISO 8601 with an offset."""
    if not isinstance(text, str):
        raise Refused(f"{field}: a time \"yyyy-MM-dd HH:mm:ss\" is required")
    try:
        return datetime.strptime(text, LOCAL_TIME).replace(tzinfo=SHANGHAI)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(f"{field}: {text!r} is not \"yyyy-MM-dd HH:mm:ss\" nor ISO 8601 with an offset") from None
    if moment.tzinfo is None:
        raise Refused(f"{field}: {text!r} has no offset (write \"yyyy-MM-dd HH:mm:ss\" for Asia/Shanghai)")
    return moment


def shown_time(iso: str) -> str:
    """An ISO 8601 time from the wire as the national interface writes it, in Asia/Shanghai."""
    return datetime.fromisoformat(iso).astimezone(SHANGHAI).strftime(LOCAL_TIME)


def _text(data: dict, field: str, where: str, required: bool = True) -> str | None:
    value = data.get(field)
    if value is None or value == "":
        if required:
            raise Refused(f"{where}{field}: required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Refused(f"{where}{field}: a string is required")
    value = str(value)
    if len(value) > ID_MAX_LENGTH:
        raise Refused(f"{where}{field}: longer than {ID_MAX_LENGTH} characters")
    return value


def _number(data: dict, field: str, where: str, required: bool = True) -> Decimal | None:
    value = data.get(field)
    if value is None or value == "":
        if required:
            raise Refused(f"{where}{field}: required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise Refused(f"{where}{field}: a number (or a string holding one) is required")
    try:  # a float is taken by its shortest text (what the caller wrote), never its binary value
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise Refused(f"{where}{field}: {value!r} is not a number") from None
    if not number.is_finite():
        raise Refused(f"{where}{field}: {value!r} is not a number")
    return number


def envelope(body: Any) -> tuple[str, str, str, dict]:
    """infno, msgid, fixmedins_code and input.data of a request body (parsed JSON)."""
    if not isinstance(body, dict):
        raise Refused("the body is not a JSON object {infno, msgid, fixmedins_code, input: {data}}")
    infno = _text(body, "infno", "")
    if infno not in SUPPORTED:
        raise Refused(f"infno: {infno!r} is not served here (served: {', '.join(SUPPORTED)})")
    msgid = _text(body, "msgid", "")
    if not MSGID.match(msgid):
        raise Refused("msgid: 1 to 40 of A-Z a-z 0-9 _ -")
    fixmedins_code = _text(body, "fixmedins_code", "")
    if not CODE.match(fixmedins_code):
        raise Refused("fixmedins_code: 1 to 20 of A-Z a-z 0-9 _ -")
    given = body.get("input")
    data = given.get("data") if isinstance(given, dict) else None
    if not isinstance(data, dict):
        raise Refused("input.data: an object is required")
    return infno, msgid, fixmedins_code, data


def _quantized(value: Decimal, places: str, where: str) -> Decimal:
    rounded = value.quantize(Decimal(places))
    if rounded != value:
        raise Refused(f"{where}: {value} has more than {len(places) - 2} decimal places")
    return rounded


def claim_2207(msgid: str, fixmedins_code: str, data: dict, inf_time: Any = None) -> dict:
    """The `Claim` record (schemas/claim.avsc) a 2207 request's input.data asks to settle: see
    `claim_record`, its id `gw-<fixmedins_code>-<msgid>`."""
    return claim_record(claim_id(fixmedins_code, msgid), fixmedins_code, data, inf_time)


def claim_record(ident: str, fixmedins_code: str, data: dict, inf_time: Any = None) -> dict:
    """The `Claim` record of a 2207 or 2206 request's input.data (a 2206 is the same claim, priced and
    not settled, under the question's own id).

    data: psn_no, mdtrt_id, med_type, insutype (default "310"), acct_used_flag (default "0"),
    setl_time (default the envelope's inf_time), optional dise_codg and oprn_oprt_code (日间手术), and
    `feedetail`: the visit's 2204 fee lines (feedetl_sn, med_list_codg, list_type, det_item_fee_sumamt,
    cnt, pric, optional chrgitm_lv, pric_uplmt_amt, selfpay_prop, non_med_flag: a line without
    chrgitm_lv is classified by the treatment region's catalogue). Settlement judges the rest (bounds,
    sums, the catalogue)."""
    where = "input.data."
    when = data.get("setl_time") if data.get("setl_time") not in (None, "") else inf_time
    lines = data.get("feedetail")
    if not isinstance(lines, list) or not lines:
        raise Refused(f"{where}feedetail: a non-empty list of fee lines is required")
    fee_details = []
    for index, line in enumerate(lines):
        at = f"{where}feedetail[{index}]."
        if not isinstance(line, dict):
            raise Refused(f"{at[:-1]}: an object is required")
        fee_details.append({
            "feedetl_sn": _text(line, "feedetl_sn", at), "med_list_codg": _text(line, "med_list_codg", at),
            "list_type": _text(line, "list_type", at), "chrgitm_lv": _text(line, "chrgitm_lv", at, required=False),
            "det_item_fee_sumamt": _quantized(_number(line, "det_item_fee_sumamt", at), "0.01",
                                              f"{at}det_item_fee_sumamt"),
            "cnt": _quantized(_number(line, "cnt", at), "0.0001", f"{at}cnt"),
            "pric": _quantized(_number(line, "pric", at), "0.000001", f"{at}pric"),
            "pric_uplmt_amt": _optional(line, "pric_uplmt_amt", "0.000001", at),
            "selfpay_prop": _optional(line, "selfpay_prop", "0.0001", at),
            "non_med_flag": _text(line, "non_med_flag", at, required=False),
        })
    return {
        "claim_id": ident, "mdtrt_id": _text(data, "mdtrt_id", where),
        "psn_no": _text(data, "psn_no", where), "fixmedins_code": fixmedins_code,
        "med_type": _text(data, "med_type", where), "insutype": _text(data, "insutype", where, False) or "310",
        "setl_time": local_time(when, f"{where}setl_time").isoformat(),
        "acct_used_flag": _text(data, "acct_used_flag", where, False) or "0",
        "fee_details": fee_details, "dise_codg": _text(data, "dise_codg", where, required=False),
        "oprn_oprt_code": _text(data, "oprn_oprt_code", where, required=False),
    }


def reversal_2208(msgid: str, fixmedins_code: str, data: dict, inf_time: Any, orig_claim_id: str) -> dict:
    """The `Reversal` record (schemas/reversal.avsc) of a 2208 request whose original the gateway
    has found (`orig_claim_id`: by the data's setl_id, or given). data: psn_no, setl_id or
    orig_claim_id, setl_time (default the envelope's inf_time)."""
    where = "input.data."
    when = data.get("setl_time") if data.get("setl_time") not in (None, "") else inf_time
    return {"claim_id": claim_id(fixmedins_code, msgid), "orig_claim_id": orig_claim_id,
            "psn_no": _text(data, "psn_no", where), "setl_time": local_time(when, f"{where}setl_time").isoformat()}


def original_2208(fixmedins_code: str, data: dict) -> tuple[str | None, str | None]:
    """(setl_id, orig_claim_id) a 2208 names: one of the two. An orig_claim_id the gateway made for
    another institution is refused (a caller acts for its own)."""
    setl_id = _text(data, "setl_id", "input.data.", required=False)
    orig = _text(data, "orig_claim_id", "input.data.", required=False)
    if (setl_id is None) == (orig is None):
        raise Refused("input.data: setl_id (or orig_claim_id), one of them, is required")
    if orig and orig.startswith("gw-") and not orig.startswith(f"gw-{fixmedins_code}-"):
        raise Refused(f"input.data.orig_claim_id: {orig} was not settled for {fixmedins_code}")
    return setl_id, orig


def _optional(line: dict, field: str, places: str, at: str) -> Decimal | None:
    value = _number(line, field, at, required=False)
    return None if value is None else _quantized(value, places, f"{at}{field}")


def digest(record: dict) -> str:
    """What a msgid was first used for: a retry with other content is refused, not settled."""
    canonical = repr(sorted((key, repr(value)) for key, value in record.items()))
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENT))


SETLINFO_TEXT = ("setl_id", "mdtrt_id", "psn_no", "med_type", "psn_type", "insu_admdvs", "mdtrtarea_admvs",
                 "fixmedins_code", "clr_type", "clr_optins", "mulaid_holder_psn_no")


def settled(kind: str, record: dict) -> dict:
    """The answer for a result on `settlements` (a settlement, or a rejection of the claim)."""
    if kind == "rejection":
        return answer(-1, f"{record['err_code']}: {record['err_msg']}", {"claim_id": record["claim_id"]})
    setlinfo: dict[str, Any] = {name: record.get(name) for name in SETLINFO_TEXT}
    setlinfo.update({name: _money(record[name]) for name in MONEY_FIELDS})
    setlinfo.update(setl_time=shown_time(record["setl_time"]), balc=_money(record["balc"]),
                    pool_prop_selfpay=str(record["pool_prop_selfpay"]), claim_id=record["claim_id"])
    if kind == "reversal":  # 2208: the reversal's own setl_id, and the settlement it takes back
        setlinfo.update(orig_setl_id=record["orig_setl_id"], orig_claim_id=record["orig_claim_id"])
    setldetail = [{"fund_pay_type": line["fund_pay_type"], "fund_payamt": _money(line["fund_payamt"]),
                   "crt_payb_lmt_amt": _money(line.get("crt_payb_lmt_amt")),
                   "setl_proc_info": line.get("setl_proc_info")} for line in record["setldetail"]]
    return answer(0, "", {"setlinfo": setlinfo, "setldetail": setldetail})


def query_5206(ident: str, data: dict, inf_time: Any = None) -> dict:
    """The `AccumulatorQuery` record (schemas/accumulator_query.avsc) of a 5206 request. data: psn_no,
    and the year as `year` ("yyyy") or `cum_ym` ("yyyyMM" or "yyyy-MM"); without either, the year
    of the envelope's inf_time."""
    where = "input.data."
    psn_no = _text(data, "psn_no", where)
    year = _text(data, "year", where, required=False)
    month = _text(data, "cum_ym", where, required=False)
    if year is None and month is not None:
        if not re.fullmatch(r"[0-9]{4}-?(0[1-9]|1[0-2])", month):
            raise Refused(f"{where}cum_ym: {month!r} is not yyyyMM")
        year = month[:4]
    if year is None:
        if inf_time in (None, ""):
            raise Refused(f"{where}year: required (or cum_ym, or the envelope's inf_time)")
        year = f"{local_time(inf_time, 'inf_time').astimezone(SHANGHAI).year:04d}"
    if not re.fullmatch(r"[0-9]{4}", year) or year == "0000":
        raise Refused(f"{where}year: {year!r} is not a year yyyy")
    return {"query_id": ident, "psn_no": psn_no, "year": year}


def presettled(kind: str, record: dict) -> dict:
    """The 2206 answer: the 2207 answer's `setlinfo` and `setldetail`, without a settlement's ids (a
    pre-settlement settled nothing), or the refusal."""
    answered = settled(kind, record)
    if kind == "rejection":
        answered["output"] = {}
    else:
        for name in ("setl_id", "claim_id"):
            answered["output"]["setlinfo"].pop(name, None)
    return answered


def accumulated(kind: str, record: dict) -> dict:
    """The 5206 answer for an `Accumulators` record (or a rejection): the person's year, the account
    balance, and `cuminfo`, one row per accumulator (docs/CONTRACT.md, "Inquiries"), money as text."""
    if kind == "rejection":
        return answer(-1, f"{record['err_code']}: {record['err_msg']}")
    rows = [{"cum_type_code": row["cum_type_code"], "cum_type_name": row["cum_type_name"], "cum": _money(row["cum"]),
             "payb_lmt_amt": _money(row["payb_lmt_amt"]), "crt_payb_lmt_amt": _money(row["crt_payb_lmt_amt"])}
            for row in record["cuminfo"]]
    return answer(0, "", {"psn_no": record["psn_no"], "insutype": record["insutype"],
                          "insu_admdvs": record["insu_admdvs"], "year": record["year"], "balc": _money(record["balc"]),
                          "visits": record["visits"], "cuminfo": rows})


def pending(ident: str) -> dict:
    return answer(-1, PENDING, {"claim_id": ident, "pending": True})
