"""Business metrics beside the technical ones: fund paid by insured region and fund, and settled
claims by med_type, counted from the outputs a batch published.

Labels are bounded: regions are the policy book's (anything else counts as `other`), funds are
contract.wire.FUNDS and the personal account, med_types the three the engine settles. Amounts are
fen (a Prometheus counter is a float64: exact to 2^53 fen, 90 trillion yuan); a reversal counts
under `kind="reversal"` with its amounts made positive, so net paid is settlement minus reversal.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from operator import attrgetter

from prometheus_client import CollectorRegistry, Counter

from gongji.contract.wire import ACCOUNT, FUNDS
from gongji.settlement.domain import Output, Settlement

OTHER = "other"
MED_TYPES = ("11", "14", "21")  # what PolicyVersion.med_types may name
_FUND_CODES = tuple(fund.code for fund in FUNDS)
#: What each fund paid, then the two fields of the personal account (ACCOUNT): one call a result.
_PAID = attrgetter(*(fund.field for fund in FUNDS), "acct_pay", "acct_mulaid_pay")


class BusinessMetrics:
    def __init__(self, registry: CollectorRegistry, regions: Iterable[str]):
        self.regions = frozenset(regions)
        self.paid = Counter("gongji_fund_paid_fen", "Fund paid in fen, by insured region, fund_pay_type and kind "
                            "(settlement, reversal: amounts positive)", ["region", "fund", "kind"], registry=registry)
        self.claims = Counter("gongji_settled_claims", "Claims settled and reversed, by med_type and kind",
                              ["med_type", "kind"], registry=registry)

    def count(self, outputs: Iterable[Output]) -> None:
        # Tallied per batch, then one inc per label set: a label lookup per output cost ~6 µs a claim.
        claims: Tally = Tally()
        paid: Tally = Tally()
        for output in outputs:
            result = output.value
            if not isinstance(result, Settlement):
                continue
            kind = "reversal" if result.is_reversal else "settlement"
            region = result.insu_admdvs if result.insu_admdvs in self.regions else OTHER
            claims[result.med_type if result.med_type in MED_TYPES else OTHER, kind] += 1
            *funds, own, family = _PAID(result)
            for code, fen in zip(_FUND_CODES, funds):
                if fen:
                    paid[region, code, kind] += abs(fen)
            if own + family:
                paid[region, ACCOUNT, kind] += abs(own + family)
        for labels, number in claims.items():
            self.claims.labels(*labels).inc(number)
        for labels, fen in paid.items():
            self.paid.labels(*labels).inc(fen)
