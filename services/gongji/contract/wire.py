"""The published language: what travels on Gongji's topics, named once (docs/CONTRACT.md).

Record names, the headers every message carries, the funds and the money fields of a result, the
limits of what the wire can hold and the edge accepts, and the clock dates are read in. Pure data:
every service and every integrator-facing tool reads these names from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta, timezone
from decimal import Decimal

# Asia/Shanghai has been UTC+8 without daylight saving since 1991; a fixed offset needs no tz
# database. Days, weeks, months and years (caps, book dates, fraud windows) are Shanghai's.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

# ---------------------------------------------------------------- records and headers

#: Avro record name of each input event (claims, registry.*, accounts.credits), by kind.
INPUT_RECORDS = {"institution": "Institution", "person": "Person", "claim": "Claim", "reversal": "Reversal",
                 "credit": "Credit", "catalogue": "CatalogueItem"}
RECORD_INPUTS = {record: kind for kind, record in INPUT_RECORDS.items()}
#: Avro record name of each result on `settlements`, by kind (the gongji-type header).
OUTPUT_RECORDS = {"settlement": "Settlement", "reversal": "ReversalResult", "rejection": "Rejection",
                  "credit": "CreditResult"}
RECORD_OUTPUTS = {record: kind for kind, record in OUTPUT_RECORDS.items()}

#: The gateway's questions on `inquiries` (a Claim there is priced, never settled) and the answer to
#: an AccumulatorQuery on `inquiry-results`, by kind (the gongji-type header).
INQUIRY_RECORDS = {"presettlement": "Claim", "accumulator-query": "AccumulatorQuery"}
ACCUMULATORS = "accumulators"
ACCUMULATORS_RECORD = "Accumulators"

#: What a message is (settlement, reversal, rejection, credit, fraud-signal, clearing-statement,
#: dead-letter): consumers route on it without decoding.
TYPE_HEADER = "gongji-type"
#: The id of what it concerns (claim_id, credit_id, signal_id, statement_id): idempotence downstream.
ID_HEADER = "gongji-id"
#: On a dead letter: the service that dead-lettered it (the reason is in the record).
SERVICE_HEADER = "gongji-service"
#: On an input record: who vouches for it, "kid=<key id>;alg=<hmac-sha256|hmac-sm3>;mac=<hex>", the
#: MAC over its topic, key, type header and value (gongji.common.signing; README "Signed input").
SIGNATURE_HEADER = "gongji-signature"
DEAD_LETTER = "dead-letter"
FRAUD_SIGNAL = "fraud-signal"
CLEARING_STATEMENT = "clearing-statement"


def headers(kind: str, ident: str) -> list[tuple[str, bytes]]:
    """The headers of a message of `kind` about `ident`."""
    return [(TYPE_HEADER, kind.encode()), (ID_HEADER, ident.encode())]


def header(message_headers: Iterable[tuple[str, bytes]] | None, name: str = TYPE_HEADER) -> bytes | None:
    """One header's value from a consumed message's headers (None when absent)."""
    for key, value in message_headers or ():
        if key == name:
            return value
    return None


#: Who may draw on a holder's personal account (Person.relation): 配偶、父母、子女.
MULAID_RELATIONS = ("spouse", "parent", "child")

# ---------------------------------------------------------------- funds and money


@dataclass(frozen=True, slots=True)
class Fund:
    """A fund that pays part of a claim: its fund_pay_type (setldetail), the result field that
    carries its payment, and its name."""

    code: str
    field: str
    label: str


POOLING = "310100"  # 职工基本医疗保险统筹基金
LARGE_AMOUNT = "330100"  # 职工大额医疗费用补助
CIVIL_SERVANT = "320100"  # 公务员医疗补助
ASSISTANCE = "610100"  # 医疗救助
OTHER = "999900"
ACCOUNT = "310200"  # 职工基本医疗保险个人账户
#: The funds of a settlement's fund_pay_sumamt, in the order results list them.
FUNDS = (
    Fund(POOLING, "hifp_pay", "Basic pooling"),
    Fund(LARGE_AMOUNT, "hifob_pay", "Large-amount subsidy"),
    Fund(CIVIL_SERVANT, "cvlserv_pay", "Civil-servant subsidy"),
    Fund(ASSISTANCE, "maf_pay", "Medical assistance"),
    Fund(OTHER, "oth_pay", "Other"),
)
FUND_LABELS: Mapping[str, str] = {fund.code: fund.label for fund in FUNDS} | {ACCOUNT: "Personal account"}

#: The money fields of a settlement (and, negated, of a reversal), decimal(16,2) yuan on the wire.
MONEY_FIELDS = (
    "medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt",
    "act_pay_dedc", "hifp_pay", "hifob_pay", "cvlserv_pay", "maf_pay", "oth_pay", "fund_pay_sumamt",
    "psn_part_amt", "acct_pay", "acct_mulaid_pay", "psn_cash_pay",
)

# ---------------------------------------------------------------- what the wire holds, what the edge accepts

# The wire schemas (schemas/*.avsc): money decimal(16,2), prices decimal(20,6), counts
# decimal(12,4), ratios decimal(6,4). Nothing larger can be published, so nothing larger is settled.
WIRE_MAX_FEN = 10**16 - 1  # 99,999,999,999,999.99 yuan
WIRE_MAX_PRICE = Decimal(10) ** 14 - Decimal("0.000001")
WIRE_MAX_COUNT = Decimal(10) ** 8 - Decimal("0.0001")
ID_MAX_LENGTH = 64  # ids and codes; the national platform's are at most 50 characters
NAME_MAX_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Bounds:
    """Plausibility ceilings and the clock tolerance at the edge of settlement, in fen.

    The defaults are **sample** values (the GONGJI_MAX_* settings); a fund sets its own.
    """

    max_line_amount: int = 2_000_000_00  # one fee line: above a CAR-T dose (about 1.2 million yuan)
    max_claim_amount: int = 10_000_000_00  # one claim's lines together
    max_opening_amount: int = 1_000_000_00  # an opening balance migrated into a personal account
    max_credit_base: int = 200_000_00  # a monthly credit's contribution base or average pension
    setl_time_tolerance: timedelta = timedelta(minutes=10)  # how far past the present a setl_time may be


DEFAULT_BOUNDS = Bounds()
