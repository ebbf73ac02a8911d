"""A claim's record in its lean form (packed.py's third): what a resend's identical result and a
reversal's restore need, in as few bytes as lets them be rebuilt exactly.

`data` is a JSON array `[3, n, effects..., settlement...]`. Nothing is stored that the rest gives:
the year (the record's value starts with it), the ids the key says, setl_id and orig_setl_id when
`rules.setl_id_for` gives them, and every figure that follows from the effects or from the other
figures (medfee_sumamt, the subsidies, the accounts, fund_pay_sumamt, psn_part_amt, psn_cash_pay,
clr_type, clr_optins, the holder) unless it differs: those are stored as their difference from that
prediction, 0 when they agree, and trailing zeros are left out. Codes of digits are numbers, a
setl_time in Beijing time its minute (or, negated, its second) since 1970, pool_prop_selfpay its ten
thousandths; any value that would not read back as the same text stays text.

A setldetail row's setl_proc_info is a template and its figures: the text with each amount in
yuan ("1000.00") cut out as fen, and the holder's psn_no and a reversal's orig_setl_id as marks.
Templates are few (one per policy, band, category and path through the rules) and shared by all
records: kept once in Redis under their 32-bit hash (redis_store writes the ones a batch uses
before its records unless it did in the last few seconds, and reads one it has not seen), and cached
here. A text whose template does not read
back exactly, or whose hash another template holds, is kept whole in the row.

Orders are frozen: never reorder; a field added goes at the end of its tuple, predicted as 0.
"""

from __future__ import annotations

import hashlib
import re
from operator import attrgetter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from gongji.common.money import yuan_text
from gongji.contract.wire import ACCOUNT, ASSISTANCE, CIVIL_SERVANT, LARGE_AMOUNT, POOLING
from gongji.settlement.domain import ClaimRecord, Effects, SetlDetail, Settlement, SettlementError
from gongji.settlement.rules import setl_id_for

LEAN = 3  # the first element of a lean `data`

# Effects by position without the year; visits stored less one (a claim is one visit).
EFFECTS = ("medfee", "deductible", "outpatient_pool", "fund_cap", "acct_pay", "visits", "mulaid_pay", "mulaid_holder",
           "chronic_group", "chronic_deductible", "chronic_pool", "major_deductible", "hifob_deductible", "hifob",
           "cvlserv_deductible", "cvlserv", "maf_deductible", "maf", "maf_pref_burden", "maf_pref")
# Settlement's fields by position: first those always stored, then those stored as a difference from
# their prediction (see _predict), then the optional ones (0: absent or predicted).
STORED = ("mdtrt_id", "med_type", "psn_type", "insu_admdvs", "fixmedins_code", "setl_time", "fulamt_ownpay_amt",
          "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "pool_prop_selfpay",
          "balc", "setldetail")
PREDICTED = ("medfee_sumamt", "hifob_pay", "cvlserv_pay", "maf_pay", "maf_pref_pay", "acct_pay", "acct_mulaid_pay",
             "oth_pay", "fund_pay_sumamt", "psn_part_amt", "psn_cash_pay")
OPTIONAL = ("mdtrtarea_admvs", "clr_type", "clr_optins", "setl_id", "mulaid_holder_psn_no", "psn_idet_type",
            "orig_claim_id", "orig_setl_id", "orig_setl_time")
FUNDS = (POOLING, ACCOUNT, ASSISTANCE, LARGE_AMOUNT, CIVIL_SERVANT)  # a row's fund_pay_type by index

_EFFECTS_DEFAULTS = {name: getattr(Effects(year=0), name) for name in EFFECTS}  # 0, or None for the two ids
_VISITS = EFFECTS.index("visits")
_EFFECT_IDS = (EFFECTS.index("mulaid_holder"), EFFECTS.index("chronic_group"))
_EFFECTS_OF = attrgetter(*EFFECTS)
_PREDICTED_ALL = attrgetter(*PREDICTED)
_OPTIONAL_OF = attrgetter(*OPTIONAL)
_FUND_INDEX = {code: index for index, code in enumerate(FUNDS)}
_BEIJING = timezone(timedelta(hours=8))
# An amount in yuan; one that yuan_text would write otherwise (a leading zero) stays in the template.
_AMOUNT = re.compile(r"([0-9]+\.[0-9][0-9])")
_SLOT, _ORIG, _HOLDER = "\x00", "\x01", "\x02"

# Templates by their id, and ids by template (content-addressed: an entry is never wrong, only absent).
TEMPLATES: dict[int, str] = {}
_IDS: dict[str, int] = {}
_CACHE_MAX = 100_000
REFUSED: set[str] = set()  # templates whose id another template holds in Redis: kept whole


class MissingTemplates(SettlementError):
    """A record names templates this process has not read (redis_store reads them first: one still
    missing is one Redis lost)."""

    def __init__(self, ids: set[int]):
        super().__init__(f"a record names setl_proc_info templates {sorted(ids)} that are not in the store")
        self.ids = ids


def template_id(template: str) -> int:
    return int.from_bytes(hashlib.blake2b(template.encode(), digest_size=4).digest(), "big")


def remember(template_ids: dict[int, str]) -> None:
    """Templates read from Redis, each checked against its id."""
    if len(TEMPLATES) > _CACHE_MAX:
        TEMPLATES.clear()
        _IDS.clear()
    for tid, template in template_ids.items():
        if template_id(template) == tid:
            TEMPLATES[tid] = template


def _code(text: str | None):
    """A code of digits as its number (shorter in JSON), when it reads back as the same text."""
    code = _CODES.get(text, _NONE)
    if code is _NONE:
        code = int(text) if text and text.isdigit() and text.isascii() and text[0] != "0" and len(text) < 16 else text
        if len(_CODES) > 10_000:
            _CODES.clear()
        _CODES[text] = code
    return code


_CODES: dict = {}
_NONE = object()


def _text(value) -> str | None:
    return str(value) if isinstance(value, int) else value


def _time(text: str):
    """setl_time as its minute since 1970 (negated: its second) when it is Beijing time written as
    isoformat writes it (which is then what _untime gives back), else the text."""
    if len(text) != 25 or text[19:] != "+08:00" or text[10] != "T" or text[13] != ":" or text[16] != ":":
        return text
    day = _DAYS.get(text[:10])
    if day is None:
        try:
            day = int(datetime.fromisoformat(text[:10] + "T00:00:00+08:00").timestamp())
        except ValueError:
            return text
        if len(_DAYS) > 10_000:
            _DAYS.clear()
        _DAYS[text[:10]] = day
    hour, minute, second = text[11:13], text[14:16], text[17:19]
    digits = hour + minute + second
    if not (digits.isascii() and digits.isdigit()) or hour > "23" or minute > "59" or second > "59":
        return text
    seconds = day + int(hour) * 3600 + int(minute) * 60 + int(second)
    if seconds <= 0:
        return text
    return seconds // 60 if second == "00" else -seconds


_DAYS: dict[str, int] = {}  # "2023-07-20" → its first second in Beijing time, since 1970


def _untime(value) -> str:
    if isinstance(value, str):
        return value
    seconds = value * 60 if value >= 0 else -value
    return datetime.fromtimestamp(seconds, _BEIJING).isoformat()


def _ratio(ratio: Decimal):
    text = str(ratio)
    number = _RATIOS.get(text)
    if number is None:
        if len(_RATIOS) > 1000:
            _RATIOS.clear()
        number = _RATIOS[text] = _ratio_of(ratio)
    return number


def _ratio_of(ratio: Decimal):
    number = int(ratio.scaleb(4)) if ratio.as_tuple().exponent == -4 else None
    return number if number is not None and str(Decimal(number).scaleb(-4)) == str(ratio) else str(ratio)


_RATIOS: dict[str, int | str] = {}  # by text (0.7 and 0.7000 are equal Decimals, written apart)


def _unratio(value) -> Decimal:
    return Decimal(value) if isinstance(value, str) else Decimal(value).scaleb(-4)


def _fill(template: str, figures: list[int], orig_setl_id: str | None, holder: str | None) -> str:
    parts = template.split(_SLOT)
    if len(parts) != len(figures) + 1:
        raise ValueError("a template's figures do not fit it")
    out = [parts[0]]
    for figure, part in zip(figures, parts[1:]):
        out += [yuan_text(figure), part]
    text = "".join(out)
    if _ORIG in text:
        text = text.replace(_ORIG, orig_setl_id or "")
    return text.replace(_HOLDER, holder or "") if _HOLDER in text else text


def _cut(note: str) -> tuple[str, tuple[int, ...]]:
    """A note without its amounts (slots where they were), and the amounts in fen."""
    parts = _AMOUNT.split(note)
    pieces, figures = [parts[0]], []
    for index in range(1, len(parts), 2):
        amount = parts[index]
        if amount[0] != "0" or amount[1] == ".":
            figures.append(int(amount.replace(".", "")))
            pieces.append(parts[index + 1])
        else:
            pieces[-1] += amount + parts[index + 1]
    return _SLOT.join(pieces), tuple(figures)


_NOTES: dict[str, tuple[str, tuple[int, ...]]] = {}


def _proc_info(text: str, settlement: Settlement, used: dict[int, str] | None):
    """A row's text as [template id, figures...], or whole (see the module's doc). Exact by
    construction: each amount cut out is one yuan_text writes back the same, and the marks put in
    for the two ids are characters the text did not hold."""
    if used is None or _SLOT in text or _ORIG in text or _HOLDER in text:
        return text
    template, orig, holder = text, settlement.orig_setl_id, settlement.mulaid_holder_psn_no
    if orig and orig in template:
        template = template.replace(orig, _ORIG)
    if holder and holder in template:
        template = template.replace(holder, _HOLDER)
    pieces, figures = [], []
    for note in template.split("; "):  # the rules' notes: most recur whole (a policy, a band, a ratio)
        cut = _NOTES.get(note)
        if cut is None:
            cut = _NOTES[note] = _cut(note)
            if len(_NOTES) > 50_000:
                _NOTES.clear()
        pieces.append(cut[0])
        figures += cut[1]
    template = "; ".join(pieces)
    if template in REFUSED:
        return text
    tid = _IDS.get(template)
    if tid is None:
        tid = template_id(template)
        if len(_IDS) > _CACHE_MAX:
            TEMPLATES.clear()
            _IDS.clear()
        _IDS[template] = tid
        TEMPLATES[tid] = template
    used[tid] = template
    return [tid, *figures]


def _trimmed(values: list) -> list:
    """`values` without their trailing zeros (compared four at a time first: most are zeros)."""
    end = len(values)
    while end >= 4 and values[end - 4:end] == _ZEROS:
        end -= 4
    while end and values[end - 1] == 0:
        end -= 1
    return values[:end]


_ZEROS = [0, 0, 0, 0]


def _predict(effects: Effects, reversal: bool) -> dict[str, int]:
    """What the PREDICTED fields follow from the effects (a reversal's record keeps the original's
    effects, its figures negated); the last three follow from the fields before them."""
    sign = -1 if reversal else 1
    return {"medfee_sumamt": sign * effects.medfee, "hifob_pay": sign * effects.hifob,
            "cvlserv_pay": sign * effects.cvlserv, "maf_pay": sign * (effects.maf + effects.maf_pref),
            "maf_pref_pay": sign * effects.maf_pref, "acct_pay": sign * effects.acct_pay,
            "acct_mulaid_pay": sign * effects.mulaid_pay, "oth_pay": 0}


def _sum(name: str, values) -> int:
    """fund_pay_sumamt, psn_part_amt or psn_cash_pay as the figures before it give it."""
    get = values.__getitem__ if isinstance(values, dict) else values.__getattribute__
    if name == "fund_pay_sumamt":
        return get("hifp_pay") + get("hifob_pay") + get("cvlserv_pay") + get("maf_pay") + get("oth_pay")
    if name == "psn_part_amt":
        return get("medfee_sumamt") - get("fund_pay_sumamt")
    return get("psn_part_amt") - get("acct_pay") - get("acct_mulaid_pay")


def _guesses(values, claim_id: str, effects: Effects) -> dict:
    """What the OPTIONAL fields usually are (stored as 0 when they are that)."""
    get = values.get if isinstance(values, dict) else values.__getattribute__
    orig = get("orig_claim_id")
    return {"mdtrtarea_admvs": get("insu_admdvs"), "clr_type": get("med_type"), "clr_optins": get("mdtrtarea_admvs"),
            "setl_id": setl_id_for(claim_id), "mulaid_holder_psn_no": effects.mulaid_holder if get("acct_mulaid_pay")
            else None, "psn_idet_type": None, "orig_claim_id": None,
            "orig_setl_id": setl_id_for(orig) if orig is not None else None, "orig_setl_time": None}


def dump(record: ClaimRecord, used: dict[int, str] | None) -> list:
    """The lean `data` of a claim's or reversal's record (its key says claim_id and psn_no). `used`
    collects the templates its rows name; None keeps every text whole."""
    settlement, effects = record.settlement, record.effects
    values = list(_EFFECTS_OF(effects))
    values[_VISITS] -= 1
    for index in _EFFECT_IDS:
        if values[index] is None:
            values[index] = 0
    values = _trimmed(values)
    out = [LEAN, len(values), *values, settlement.mdtrt_id, _code(settlement.med_type), _code(settlement.psn_type),
           _code(settlement.insu_admdvs), settlement.fixmedins_code, _time(settlement.setl_time),
           settlement.fulamt_ownpay_amt, settlement.overlmt_selfpay, settlement.preselfpay_amt,
           settlement.inscp_scp_amt, settlement.act_pay_dedc, settlement.hifp_pay, _ratio(settlement.pool_prop_selfpay),
           settlement.balc,
           [[_FUND_INDEX.get(row.fund_pay_type, row.fund_pay_type), row.fund_payamt, row.crt_payb_lmt_amt,
             _proc_info(row.setl_proc_info, settlement, used)] for row in settlement.setldetail]]
    # PREDICTED, as _predict and _sum give them (spelled out: this runs for every claim settled)
    sign = -1 if settlement.orig_claim_id is not None else 1
    medfee, hifob, cvlserv, maf, pref, acct, mulaid, oth, fund, part, cash = _PREDICTED_ALL(settlement)
    tail = [medfee - sign * effects.medfee, hifob - sign * effects.hifob, cvlserv - sign * effects.cvlserv,
            maf - sign * (effects.maf + effects.maf_pref), pref - sign * effects.maf_pref, acct - sign * effects.acct_pay,
            mulaid - sign * effects.mulaid_pay, oth,
            fund - (settlement.hifp_pay + hifob + cvlserv + maf + oth), part - (medfee - fund), cash - (part - acct - mulaid)]
    # OPTIONAL, as _guesses gives them
    area, clr_type, clr_optins, setl_id, holder, idet, orig_claim_id, orig_setl_id, orig_setl_time = \
        _OPTIONAL_OF(settlement)
    tail += [0 if area == settlement.insu_admdvs else area, 0 if clr_type == settlement.med_type else clr_type,
             0 if clr_optins == area else clr_optins, 0 if setl_id == setl_id_for(settlement.claim_id) else setl_id,
             0 if holder == (effects.mulaid_holder if mulaid else None) else holder, 0 if idet is None else idet,
             0 if orig_claim_id is None else orig_claim_id,
             0 if orig_setl_id == (None if orig_claim_id is None else setl_id_for(orig_claim_id)) else orig_setl_id,
             0 if orig_setl_time is None else _time(orig_setl_time)]
    return out + _trimmed(tail)


def load(data: list, year: int, psn_no: str, claim_id: str, fingerprint: str, reversed_by: str | None) -> ClaimRecord:
    """A record from its lean `data`; raises MissingTemplates when a row names a template not read yet."""
    count = data[1]
    raw = dict(zip(EFFECTS, data[2:2 + count]))
    effects = Effects(year=year, **{name: _EFFECTS_DEFAULTS[name] if raw.get(name, 0) == 0 else raw[name]
                                    for name in EFFECTS if name != "visits"}, visits=raw.get("visits", 0) + 1)
    rest = data[2 + count:]
    stored = dict(zip(STORED, rest))
    tail = rest[len(STORED):]
    tail += [0] * (len(PREDICTED) + len(OPTIONAL) - len(tail))
    optional = dict(zip(OPTIONAL, tail[len(PREDICTED):]))
    values = {name: stored[name] for name in STORED[6:14]}
    values.update(mdtrt_id=stored["mdtrt_id"], med_type=_text(stored["med_type"]), psn_type=_text(stored["psn_type"]),
                  insu_admdvs=_text(stored["insu_admdvs"]), fixmedins_code=stored["fixmedins_code"],
                  setl_time=_untime(stored["setl_time"]), pool_prop_selfpay=_unratio(stored["pool_prop_selfpay"]))
    orig_claim_id = optional["orig_claim_id"] or None
    predicted = _predict(effects, orig_claim_id is not None)
    for name, difference in zip(PREDICTED, tail):
        values[name] = (predicted[name] if name in predicted else _sum(name, values)) + difference
    values["orig_claim_id"] = orig_claim_id
    for name in OPTIONAL:
        value = optional[name]
        if value == 0:
            value = _guesses(values, claim_id, effects)[name] if name != "orig_claim_id" else orig_claim_id
        elif name == "orig_setl_time":
            value = _untime(value)
        values[name] = value
    rows, missing = [], set()
    for fund, amount, left, info in stored["setldetail"]:
        if isinstance(info, list):
            template = TEMPLATES.get(info[0])
            if template is None:
                missing.add(info[0])
                continue
            info = _fill(template, info[1:], values["orig_setl_id"], values["mulaid_holder_psn_no"])
        rows.append(SetlDetail(FUNDS[fund] if isinstance(fund, int) else fund, amount, left, info))
    if missing:
        raise MissingTemplates(missing)
    return ClaimRecord(fingerprint, Settlement(claim_id=claim_id, psn_no=psn_no, setldetail=tuple(rows), **values),
                       effects, reversed_by)


def template_ids(data: list) -> set[int]:
    """The template ids a lean `data` names."""
    count = data[1]
    rows = data[2 + count + STORED.index("setldetail")]
    return {info[0] for *_, info in rows if isinstance(info, list)}
