"""Cross-region clearing (异地就医清算), POLICY.md §7: the rules, pure.

The treatment region's agency advances the payment to its institution; the insured region owes it.
Positions are kept per month and per (treatment region, insured region); a reversal adjusts the
month of its original settlement, even when it comes later, and is counted as an adjustment there
when it was received in a later month than its original.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from gongji.common.money import to_fen, to_yuan
from gongji.contract.wire import SHANGHAI

# What a position adds up, per (month, treatment region, insured region).
COUNTS = ("settlements", "adjustments")
MONEY = ("medfee_sumamt", "hifp_pay", "hifob_pay", "cvlserv_pay", "maf_pay", "fund_pay_sumamt", "acct_pay")
FIELDS = COUNTS + MONEY


class ClearingError(Exception):
    """The root of clearing's own exceptions."""


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one cross-region settlement (or reversal) adds to its position."""

    setl_id: str
    ym: str
    treatment: str  # 就医地: advanced the payment
    insured: str  # 参保地: owes it
    amounts: dict[str, int]  # FIELDS → fen (money) or a count
    institution: str = ""  # fixmedins_code of the treating institution (it is in the treatment region)
    year: int = 0  # the year of the result's own setl_time (Beijing): clearing's clock (ClearingStore.close)


def month_of(iso_time: str) -> str:
    return datetime.fromisoformat(iso_time).astimezone(SHANGHAI).strftime("%Y-%m")


def contribution(result: dict) -> Contribution | None:
    """From a settlement or reversal result (wire form, money as yuan Decimals); None when the
    person was treated in their own region."""
    insured, treatment = result["insu_admdvs"], result["mdtrtarea_admvs"]
    if insured == treatment:
        return None
    reversal = bool(result.get("orig_claim_id"))
    ym = month_of(result["orig_setl_time"] if reversal else result["setl_time"])
    amounts = {name: to_fen(result[name]) for name in MONEY if name != "acct_pay"}
    # Personal accounts, the person's own and the family's (家庭共济), are kept by the insured region.
    amounts["acct_pay"] = to_fen(result["acct_pay"]) + to_fen(result["acct_mulaid_pay"])
    amounts["settlements"] = -1 if reversal else 1
    # The schema's adjustment: a reversal received in a later month than its original ("YYYY-MM" sorts).
    own = month_of(result["setl_time"])
    amounts["adjustments"] = 1 if reversal and own > ym else 0
    return Contribution(result["setl_id"], ym, treatment, insured, amounts, result.get("fixmedins_code") or "",
                        int(own[:4]))


def fold(contributions) -> dict[tuple[str, str, str], dict[str, int]]:
    """Positions from contributions, each setl_id once: the reference the stores must agree with."""
    seen: set[str] = set()
    positions: dict[tuple[str, str, str], dict[str, int]] = {}
    for item in contributions:
        if item.setl_id in seen:
            continue
        seen.add(item.setl_id)
        position = positions.setdefault((item.ym, item.treatment, item.insured), dict.fromkeys(FIELDS, 0))
        for name, value in item.amounts.items():
            position[name] += value
    return positions


def fold_by_institution(contributions) -> dict[tuple[str, str, str, str], dict[str, int]]:
    """Per (month, treatment region, insured region, institution), each setl_id once: the reference
    for the store's institution shares."""
    seen: set[str] = set()
    shares: dict[tuple[str, str, str, str], dict[str, int]] = {}
    for item in contributions:
        if item.setl_id in seen or not item.institution:
            continue
        seen.add(item.setl_id)
        share = shares.setdefault((item.ym, item.treatment, item.insured, item.institution), dict.fromkeys(FIELDS, 0))
        for name, value in item.amounts.items():
            share[name] += value
    return shares


def owed(flow: dict[str, int]) -> int:
    return flow["fund_pay_sumamt"] + flow["acct_pay"]


def statement(ym: str, region_a: str, region_b: str, a_to_b: dict[str, int], b_to_a: dict[str, int],
              closed_at: str) -> dict:
    """The clearing statement of one pair for one month, wire form (yuan Decimals). a_to_b: what
    region_a advanced for region_b's insured persons."""

    def flow(treatment: str, insured: str, position: dict[str, int]) -> dict:
        return {"treatment_admdvs": treatment, "insured_admdvs": insured,
                **{name: position[name] for name in COUNTS},
                **{name: to_yuan(position[name]) for name in MONEY}, "owed": to_yuan(owed(position))}

    ident = hashlib.blake2b(f"{ym}:{region_a}:{region_b}".encode(), digest_size=10).hexdigest().upper()
    return {"statement_id": f"CLR{ym.replace('-', '')}{ident}", "ym": ym, "region_a": region_a, "region_b": region_b,
            "a_to_b": flow(region_a, region_b, a_to_b), "b_to_a": flow(region_b, region_a, b_to_a),
            "net_to_a": to_yuan(owed(a_to_b) - owed(b_to_a)), "closed_at": closed_at}


def empty() -> dict[str, int]:
    return dict.fromkeys(FIELDS, 0)


#: A statement as report rows: one per direction of the pair (who advanced, for whom).
STATEMENT_COLUMNS = ("statement_id", "ym", "region_a", "region_b", "treatment_admdvs", "insured_admdvs",
                     *COUNTS, *MONEY, "owed", "net_to_a", "closed_at")
STATEMENT_MONEY = (*MONEY, "owed", "net_to_a")


def statement_rows(statements: list[dict]) -> list[dict]:
    """Each statement's two flows as flat rows (yuan Decimals), the pair's net_to_a on both."""
    return [{name: s[name] for name in ("statement_id", "ym", "region_a", "region_b", "net_to_a", "closed_at")}
            | s[direction] for s in statements for direction in ("a_to_b", "b_to_a")]


INSTITUTION_COLUMNS = ("ym", "fixmedins_code", "treatment_admdvs", "insured_admdvs", *COUNTS, *MONEY, "owed")
INSTITUTION_MONEY = (*MONEY, "owed")


def institution_rows(ym: str, shares: dict[tuple[str, str, str], dict[str, int]]) -> list[dict]:
    """A month's clearing per institution: what each treating institution was advanced for each
    insured region's persons, and what that region owes for it (fen)."""
    return [{"ym": ym, "fixmedins_code": code, "treatment_admdvs": treatment, "insured_admdvs": insured,
             **share, "owed": owed(share)}
            for (treatment, insured, code), share in sorted(shares.items(), key=lambda item: (item[0][2], item[0]))]
