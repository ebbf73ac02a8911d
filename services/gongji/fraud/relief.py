"""OOP_SHARE, pure: a person in difficulty left with too large a share of their in-scope costs.

Seed 003: "reduce medical costs by clarifying diagnosis and treatment plans and standardizing diagnosis
and treatment, and reasonably control the proportion of out of pocket expenses within the scope of
policies for people with difficulties." The share is gongji.common.burden's, per person and calendar
year (the reversal's original's year), over the results settled under a medical-assistance category
(`psn_idet_type` on the result), net of reversals: a reversal that brings the year back under
withdraws the signal, in whatever order the two are read. Like HIGH_EXPENSE, a relief review, not a
suspicion: the person's burden is for the assistance office to look at.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from gongji.common.burden import left_share, over_share
from gongji.common.money import to_fen, to_yuan
from gongji.fraud.domain import MAX_EVIDENCE, Buckets, Signal, raise_once, withdraw, year_of

if TYPE_CHECKING:
    from gongji.fraud_settings import FraudSettings


def count_share(config: FraudSettings, buckets: Buckets, psn: str, admdvs: str | None, t: datetime,
                claim_id: str, category: str | None, inscope: int, fund: int) -> list[Signal]:
    """Count one result (a reversal's amounts negative, `t` its original's time) in the person's year."""
    if category is None:
        return []
    year = year_of(t)
    bucket = buckets.get("person_year", psn, year)
    counted = bucket.setdefault("share", {})  # claim_id → [in scope, fund paid] fen
    if claim_id in counted:
        return []
    counted[claim_id] = [inscope, fund]
    total_in = sum(pair[0] for pair in counted.values())
    total_fund = sum(pair[1] for pair in counted.values())
    threshold = config.oop_threshold(admdvs)
    minimum = to_fen(config.oop_share_min_inscope)

    def found() -> Signal:  # built only when sent, as HIGH_EXPENSE's is: most results send nothing
        share = left_share(total_in, total_fund)
        ids = tuple(cid for cid, pair in counted.items() if pair[0] > 0)
        return Signal("OOP_SHARE", "person", psn, admdvs, year, ids[-MAX_EVIDENCE:], len(counted),
                      f"> {threshold:.2%} of at least {to_yuan(minimum)} yuan in scope",
                      f"{share:.2%} of {to_yuan(total_in)} yuan in scope left to a person in assistance category "
                      f"{category} in {year.start.year} (seed 003: keep it within reason): review the relief given."
                      if share is not None else "nothing in scope", amount_fen=total_in - total_fund)

    signals = []
    if over_share(total_in, total_fund, threshold, minimum):
        if raise_once(bucket, "OOP_SHARE"):
            signals.append(found())
    elif withdraw(bucket, "OOP_SHARE"):
        share = left_share(total_in, total_fund)
        now = "nothing in scope" if share is None else f"{share:.2%} of {to_yuan(total_in)} yuan in scope"
        signals.append(found().withdrawn(f"Back to {now} after a reversal: withdrawn."))
    buckets.put("person_year", psn, year, bucket)
    return signals
