"""The out-of-pocket share of in-scope costs, one definition for the ledger's report and the fraud
service's signal (seed 003: "reasonably control the proportion of out of pocket expenses within the
scope of policies for people with difficulties").

In scope is `inscp_scp_amt` (符合政策范围金额); what the layers paid of it is `fund_pay_sumamt` (basic
pooling, large-amount, civil-servant subsidy, medical assistance: the funds only ever pay in scope).
What is left is the person's, whoever pays it: their cash, their own account or a family member's
(a personal account is the person's own money). Amounts are fen, net of reversals.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

SHARE_PLACES = Decimal("0.0001")


def left_share(inscope: int, fund: int) -> Decimal | None:
    """The share of in-scope costs left to the person, to four places (half up); None with nothing
    in scope."""
    if inscope <= 0:
        return None
    return (Decimal(inscope - fund) / Decimal(inscope)).quantize(SHARE_PLACES, ROUND_HALF_UP)


def over_share(inscope: int, fund: int, threshold: Decimal, minimum: int) -> bool:
    """True when at least `minimum` fen was in scope and more than `threshold` of it is left to the
    person, compared exactly (no rounding: one fen over is over)."""
    return inscope >= minimum and inscope > 0 and Decimal(inscope - fund) > threshold * inscope
