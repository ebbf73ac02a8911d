"""The fund ledger's rules, pure: which balanced postings each settlement result becomes, and how a
centre's journal is reconciled against an institution's totals (对账, national 3201/3202).

Chart of accounts (an account is a string; the part after the last colon says whose):

- ``fund:<fund_pay_type>:<insured region>``: the funds that pay, by 参保地 — 310100 pooling
  (统筹基金), 330100 large-amount (大额), 320100 civil-servant (公务员补助), 610100 medical
  assistance (医疗救助), 999900 other; and 310200, the personal-account fund that credits accounts.
  Debited when the fund pays out or credits an account.
- ``acct:<psn_no>``: a person's personal account (个人账户), money the fund holds for them:
  credited by crediting, debited when it pays, own claims or a family member's (家庭共济).
- ``cash:<insured region>``: what patients paid out of pocket (现金支付), debited.
- ``inst:<fixmedins_code>:payable``: what the agency owes the institution (应付定点机构:
  fund payments and personal-account payments), credited.
- ``inst:<fixmedins_code>:cash``: the cash the institution collected from the patient, credited.

One settlement therefore balances as fund pay + account pay + cash = medfee_sumamt = payable +
collected. A reversal posts the same lines with debit and credit swapped (its amounts are
negated), so every entry, every day and every account's history balances.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable, Literal

from gongji.common.money import MoneyError, to_fen, yuan_text
from gongji.contract.wire import ACCOUNT, FUNDS, SHANGHAI

UNKNOWN_REGION = "000000"  # a credit result from a writer before insu_admdvs was on it


class LedgerError(Exception):
    """Anything the ledger refuses or fails at; the subclasses say which."""


class Unbookable(LedgerError, ValueError):
    """A settlement result (or an institution's detail line) the ledger cannot take: it would not
    balance, or lacks a field."""


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    debit: int  # fen; exactly one of debit and credit is non-zero
    credit: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal entry: one settlement, reversal or account credit, and its postings."""

    entry_id: str  # setl_id (settlement, reversal) or credit_id
    event_type: Literal["settlement", "reversal", "credit"]
    source_id: str  # claim_id or credit_id
    psn_no: str
    book_date: date  # the settlement's own calendar date (its +08:00 local date); a credit's month's first day
    postings: tuple[Posting, ...]
    setl_time: datetime | None = None
    orig_entry_id: str | None = None
    fixmedins_code: str | None = None
    insu_admdvs: str | None = None
    mdtrtarea_admvs: str | None = None
    # What 3201/3202 reconcile, in fen (negative for a reversal); acct_pay includes family aid.
    medfee_sumamt: int = 0
    fund_pay_sumamt: int = 0
    acct_pay: int = 0
    psn_cash_pay: int = 0
    # The out-of-pocket share's parts (gongji.ledger.burden): in fen, negative for a reversal.
    inscp_scp_amt: int = 0
    psn_idet_type: str | None = None

    @property
    def debits(self) -> int:
        return sum(p.debit for p in self.postings)

    @property
    def credits(self) -> int:
        return sum(p.credit for p in self.postings)


def _lines(signed: Iterable[tuple[str, int]]) -> tuple[Posting, ...]:
    """(account, amount) with debits positive and credits negative → postings, zeros dropped and
    the same account's lines merged (a patient paying their own claim from their own account twice
    over would otherwise show two lines)."""
    merged: dict[str, int] = defaultdict(int)
    for account, amount in signed:
        merged[account] += amount
    return tuple(Posting(account, amount, 0) if amount > 0 else Posting(account, 0, -amount)
                 for account, amount in merged.items() if amount)


def entry_for(event_type: str, result: dict[str, Any]) -> Entry:
    """The journal entry for one decoded result (settlement, reversal or credit); LedgerError if it
    cannot be booked. Rejections are never booked: nothing moved. Amounts are yuan (Decimal, str) or,
    as SchemaCatalog.decode_unscaled leaves them, the wire's bytes of their unscaled integers: fen,
    money being decimal(16,2) on the wire."""
    try:
        if event_type == "credit":
            return _credit_entry(result)
        if event_type in ("settlement", "reversal"):
            return _settlement_entry(event_type, result)
    except (KeyError, TypeError, ValueError) as error:
        raise Unbookable(f"{event_type} result {result.get('claim_id') or result.get('credit_id')!r}: "
                          f"{type(error).__name__}: {error}") from error
    raise Unbookable(f"not a result the ledger books: {event_type!r}")


_FEN_LIMIT = 10 ** 20  # 10^18 yuan, where to_fen stops too


def fen_of(value: object) -> int:
    """An amount in fen: the wire's unscaled integer (bytes, big-endian two's complement, scale 2)
    read as it is, anything else by to_fen; MoneyError past 10^18 yuan either way."""
    if type(value) is bytes:
        fen = int.from_bytes(value, "big", signed=True)
        if -_FEN_LIMIT < fen < _FEN_LIMIT:
            return fen
        raise MoneyError(f"amount of {fen} fen is out of range (18 digits or more before the point)")
    return to_fen(value)


_FUND_FIELDS = tuple((f"fund:{f.code}:", f.field) for f in FUNDS)


def _settlement_entry(event_type: str, s: dict[str, Any]) -> Entry:
    funds = [(account, fen_of(s[name])) for account, name in _FUND_FIELDS]
    medfee, fund_pay, acct, mulaid, cash = (fen_of(s[name]) for name in (
        "medfee_sumamt", "fund_pay_sumamt", "acct_pay", "acct_mulaid_pay", "psn_cash_pay"))
    region, institution = s["insu_admdvs"], s["fixmedins_code"]
    if mulaid and not s.get("mulaid_holder_psn_no"):
        raise Unbookable(f"{s['claim_id']}: family mutual aid paid {yuan_text(mulaid)} but no holder is named")
    if sum(amount for _, amount in funds) != fund_pay:
        raise Unbookable(f"{s['claim_id']}: the funds' payments do not add up to fund_pay_sumamt")
    payable = fund_pay + acct + mulaid
    if payable + cash != medfee:
        raise Unbookable(f"{s['claim_id']}: fund + account + cash does not equal medfee_sumamt")
    postings = _lines([
        *((account + region, amount) for account, amount in funds),
        (f"acct:{s['psn_no']}", acct),
        (f"acct:{s.get('mulaid_holder_psn_no')}", mulaid),
        (f"cash:{region}", cash),
        (f"inst:{institution}:payable", -payable),
        (f"inst:{institution}:cash", -cash),
    ])
    setl_time = datetime.fromisoformat(s["setl_time"])
    return Entry(
        entry_id=s["setl_id"], event_type=event_type, source_id=s["claim_id"], psn_no=s["psn_no"],
        book_date=setl_time.astimezone(SHANGHAI).date(), postings=postings, setl_time=setl_time,
        orig_entry_id=s.get("orig_setl_id"), fixmedins_code=institution, insu_admdvs=region,
        mdtrtarea_admvs=s["mdtrtarea_admvs"], medfee_sumamt=medfee, fund_pay_sumamt=fund_pay,
        acct_pay=acct + mulaid, psn_cash_pay=cash, inscp_scp_amt=fen_of(s.get("inscp_scp_amt", 0)),
        psn_idet_type=s.get("psn_idet_type"),
    )


def _credit_entry(c: dict[str, Any]) -> Entry:
    amount = fen_of(c["amount"])
    region = c.get("insu_admdvs") or UNKNOWN_REGION
    year, month = (int(part) for part in c["ym"].split("-"))
    return Entry(
        entry_id=c["credit_id"], event_type="credit", source_id=c["credit_id"], psn_no=c["psn_no"],
        book_date=date(year, month, 1), insu_admdvs=region,
        postings=_lines([(f"fund:{ACCOUNT}:{region}", amount), (f"acct:{c['psn_no']}", -amount)]),
    )


# ---------------------------------------------------------------- reconciliation (对账)


Verdict = Literal["balanced", "centre has more", "institution has more", "mismatch"]
# The national 3202 result codes, for integrators who map them.
VERDICT_CODES: dict[str, str] = {"balanced": "0", "centre has more": "1", "institution has more": "2", "mismatch": "3"}


@dataclass(frozen=True, slots=True)
class Totals:
    """What 3201 compares: counts and sums in fen over one institution and period."""

    count: int = 0
    medfee_sumamt: int = 0
    fund_pay_sumamt: int = 0
    acct_pay: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.count + other.count, self.medfee_sumamt + other.medfee_sumamt,
                      self.fund_pay_sumamt + other.fund_pay_sumamt, self.acct_pay + other.acct_pay)

    def dominates(self, other: Totals) -> bool:
        """Every figure at least the other's (amounts compared as magnitudes: a refund period's
        sums are negative)."""
        return (self.count >= other.count and abs(self.medfee_sumamt) >= abs(other.medfee_sumamt)
                and abs(self.fund_pay_sumamt) >= abs(other.fund_pay_sumamt) and abs(self.acct_pay) >= abs(other.acct_pay))


@dataclass(frozen=True, slots=True)
class Detail:
    """One settlement as one side has it (3202 detail line)."""

    setl_id: str
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_no: str | None = None
    setl_time: str | None = None

    def totals(self) -> Totals:
        return Totals(1, self.medfee_sumamt, self.fund_pay_sumamt, self.acct_pay)


@dataclass(frozen=True, slots=True)
class Difference:
    setl_id: str
    kind: Verdict  # "centre has more", "institution has more" or "mismatch"
    centre: Detail | None
    institution: Detail | None


@dataclass(frozen=True)
class Reconciliation:
    verdict: Verdict
    centre: Totals
    institution: Totals
    differences: list[Difference] = field(default_factory=list)

    @property
    def code(self) -> str:
        return VERDICT_CODES[self.verdict]


def totals_of(details: Iterable[Detail]) -> Totals:
    total = Totals()
    for detail in details:
        total = total + detail.totals()
    return total


def reconcile(centre: list[Detail], institution_totals: Totals, institution: list[Detail] | None = None) -> Reconciliation:
    """3201 on the totals; with the institution's detail lines, 3202 as well: every settlement
    that only one side has, or that the sides have with different amounts.

    The verdict: balanced when the totals agree (and, given details, no line differs); else, from
    the details when there are any (only the centre's extra lines: centre has more; only the
    institution's, a line it sent twice included: institution has more; anything else: mismatch),
    or from the totals alone (one
    side at least the other on every figure says who has more).
    """
    centre_totals = totals_of(centre)
    differences: list[Difference] = []
    if institution is not None:
        ours = {d.setl_id: d for d in centre}
        theirs: dict[str, Detail] = {}
        for detail in institution:
            if detail.setl_id in theirs:  # one settlement counted twice on their side
                differences.append(Difference(detail.setl_id, "institution has more", None, detail))
            else:
                theirs[detail.setl_id] = detail
        for setl_id in sorted(ours.keys() | theirs.keys()):
            mine, other = ours.get(setl_id), theirs.get(setl_id)
            if other is None:
                differences.append(Difference(setl_id, "centre has more", mine, None))
            elif mine is None:
                differences.append(Difference(setl_id, "institution has more", None, other))
            elif mine.totals() != other.totals():
                differences.append(Difference(setl_id, "mismatch", mine, other))
    if centre_totals == institution_totals and not differences:
        verdict: Verdict = "balanced"
    elif differences:
        kinds = {d.kind for d in differences}
        verdict = kinds.pop() if len(kinds) == 1 else "mismatch"
    elif centre_totals.dominates(institution_totals):
        verdict = "centre has more"
    elif institution_totals.dominates(centre_totals):
        verdict = "institution has more"
    else:
        verdict = "mismatch"
    return Reconciliation(verdict, centre_totals, institution_totals, differences)


def detail_from_row(row: dict[str, Any]) -> Detail:
    """An institution's detail line (CSV or JSON; amounts in yuan) → Detail."""
    try:
        return Detail(setl_id=str(row["setl_id"]), medfee_sumamt=to_fen(Decimal(str(row["medfee_sumamt"]))),
                      fund_pay_sumamt=to_fen(Decimal(str(row["fund_pay_sumamt"]))),
                      acct_pay=to_fen(Decimal(str(row["acct_pay"]))), psn_no=row.get("psn_no"),
                      setl_time=row.get("setl_time"))
    except (KeyError, ArithmeticError, ValueError) as error:
        raise Unbookable(f"detail line {row!r}: {type(error).__name__}: {error}") from error
