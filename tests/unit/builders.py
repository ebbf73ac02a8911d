"""Small factories for the settlement core's inputs, so each test states only what it is about.

Money is given in yuan strings, as on the wire ("100.00"); the domain models turn it into fen.
"""

from __future__ import annotations

from decimal import Decimal
from itertools import count

from gongji.common.money import to_fen, yuan_to_fen
from gongji.settlement.domain import ClaimRecord, PersonState, YearTotals
from gongji.settlement.events import Claim, Credit, FeeLine, Institution, Person, Reversal
from gongji.settlement.rules import ClaimSettled
from gongji.settlement.policy import PolicyBook, load_policy_book

ERENHOT = "152501"  # 二连浩特: annual deductible 1000, caps 4000/5000, counted in the fund cap
PROVINCE = "990100"  # seed-000 province: per-visit deductible 50, caps 1500/2000, family doctor +5

BOOK: PolicyBook = load_policy_book()

_serial = count(1)


def fen(yuan: str) -> int:
    """Yuan string → fen, for readable expectations: fen("12.35") == 1235."""
    return to_fen(yuan)


def person(
    psn_no: str = "P1",
    region: str = ERENHOT,
    retired: bool = False,
    **overrides,
) -> Person:
    fields = dict(
        psn_no=psn_no,
        insutype="310",
        psn_type="1201" if retired else "1101",
        insu_admdvs=region,
        psn_insu_stas="1",
    )
    fields.update(overrides)
    return Person(**fields)


def institution(
    code: str = "H3",
    level: str = "3",
    pharmacy: bool = False,
    grassroots: bool = False,
    admdvs: str = ERENHOT,
) -> Institution:
    return Institution(
        fixmedins_code=code,
        fixmedins_name=f"institution {code}",
        fixmedins_type="2" if pharmacy else "1",
        medins_lv=level,
        grassroots=grassroots,
        admdvs=admdvs,
    )


def line(
    amount: str | None = None,
    lv: str = "01",
    *,
    pric: str | None = None,
    cnt: str = "1",
    uplmt: str | None = None,
    selfpay: str | None = None,
    non_med: str | None = None,
    sn: str | None = None,
) -> FeeLine:
    """A fee line. Give `amount` (then pric = amount, cnt 1) or `pric` and `cnt` (amount = pric × cnt rounded
    half-up to the fen). Prices may have up to 6 decimals, as in the 2204 interface."""
    if pric is None:
        assert amount is not None, "give amount or pric"
        pric = amount
    if amount is None:
        fen_amount = yuan_to_fen(Decimal(pric) * Decimal(cnt))
        amount = f"{Decimal(fen_amount) / 100:.2f}"
    return FeeLine(
        feedetl_sn=sn or f"L{next(_serial)}",
        med_list_codg="XA01AAA0001",
        list_type="101",
        chrgitm_lv=lv,
        det_item_fee_sumamt=amount,
        cnt=cnt,
        pric=pric,
        pric_uplmt_amt=uplmt,
        selfpay_prop=selfpay,
        non_med_flag=non_med,
    )


def claim(
    *lines: FeeLine,
    claim_id: str | None = None,
    psn_no: str = "P1",
    fixmedins_code: str = "H3",
    setl_time: str = "2023-06-01T10:00:00+08:00",
    acct_used_flag: str = "0",
    med_type: str = "11",
    insutype: str = "310",
    dise_codg: str | None = None,
) -> Claim:
    claim_id = claim_id or f"C{next(_serial)}"
    return Claim(
        claim_id=claim_id,
        mdtrt_id=f"M-{claim_id}",
        psn_no=psn_no,
        fixmedins_code=fixmedins_code,
        med_type=med_type,
        insutype=insutype,
        setl_time=setl_time,
        acct_used_flag=acct_used_flag,
        fee_details=lines or (line("100.00"),),
        dise_codg=dise_codg,
    )


def reversal(
    orig_claim_id: str,
    claim_id: str | None = None,
    psn_no: str = "P1",
    setl_time: str = "2023-06-02T10:00:00+08:00",
) -> Reversal:
    return Reversal(
        claim_id=claim_id or f"R{next(_serial)}",
        orig_claim_id=orig_claim_id,
        psn_no=psn_no,
        setl_time=setl_time,
    )


def credit(
    ym: str,
    *,
    base: str | None = None,
    amount: str | None = None,
    psn_no: str = "P1",
    credit_id: str | None = None,
) -> Credit:
    return Credit(
        credit_id=credit_id or f"K{next(_serial)}",
        psn_no=psn_no,
        ym=ym,
        crdt_type="opening" if amount is not None else "monthly",
        crdt_base=base,
        amount=amount,
    )


def state(balance: str = "0.00", **years: YearTotals) -> PersonState:
    """PersonState(balance, years); years as y2023=YearTotals(...)."""
    return PersonState(balance=fen(balance), years={int(key.lstrip("y")): totals for key, totals in years.items()})


def record(outcome: ClaimSettled, reversed_by: str | None = None) -> ClaimRecord:
    """What a store keeps for a settled claim."""
    return ClaimRecord(
        fingerprint="fp-" + outcome.settlement.claim_id,
        settlement=outcome.settlement,
        effects=outcome.effects,
        reversed_by=reversed_by,
    )


async def settled_in_batches(events: list, size: int, book: PolicyBook = BOOK) -> list:
    """The wire outputs of settling `events` through a Settler on the memory store, `size` at a time
    (batch invariance: any size must give what size 1 gives)."""
    return (await settled_with_store(events, size, book))[0]


async def settled_with_store(events: list, size: int = 1, book: PolicyBook = BOOK) -> tuple[list, object]:
    """`settled_in_batches`'s outputs, and the memory store they left (its records, states, owners)."""
    from gongji.settlement.codec import from_output
    from gongji.settlement.memory_store import MemoryStore
    from gongji.settlement.settler import Settler

    store = MemoryStore()
    settler, outputs = Settler(store, book), []
    for start in range(0, len(events), size):
        outputs += [from_output(output) for output in await settler.handle(events[start:start + size])]
    return outputs, store
