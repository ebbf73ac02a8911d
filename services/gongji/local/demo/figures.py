"""One demo run's figures: what it sent (`Sent`), and what came back, folded by the dashboard's
`Board` as the dashboard folds it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from gongji.common.pseudonym import Pseudonym
from gongji.contract.wire import RECORD_OUTPUTS
from gongji.dashboard.domain import ZERO, Board
from gongji.settings import Settings

LATEST = 8  # settlements shown
LATEST_SIGNALS = 3  # fraud signals shown

#: Money totals shown, wire field -> label. fund = pooling + large-amount + civil-servant + assistance.
MONEY = {
    "medfee_sumamt": "medical fees",
    "fund_pay_sumamt": "fund paid",
    "hifp_pay": "  pooling fund",
    "acct_pay": "personal account",
    "acct_mulaid_pay": "family mutual aid",
    "psn_cash_pay": "cash",
}


@dataclass
class Sent:
    """What the demo has produced."""

    registry: int = 0
    credits: int = 0
    claims: int = 0  # every message on `claims`: claims, reversals, resends and the bad ones
    junk: int = 0
    negative: int = 0
    claims_since: float | None = None  # monotonic times the claim stream began and ended
    claims_until: float | None = None


@dataclass
class Run:
    """One demo run: where it runs, what it sent, what came back (on `settlements`, `dead-letters`
    and `fraud.signals`)."""

    settings: Settings
    rate: int
    log: Path
    region_names: dict[str, str]
    started: float = field(default_factory=time.monotonic)
    sent: Sent = field(default_factory=Sent)
    board: Board = field(init=False)
    phase: str = "starting"

    def __post_init__(self) -> None:
        # The dashboard's key: the summary names a person by the pseudonym the dashboard shows.
        self.board = Board(since=time.time(), region_names=self.region_names, latest_signals=LATEST_SIGNALS,
                           latest_settlements=LATEST, pseudonym=Pseudonym(self.settings.pseudonym_key_value()))

    def fold(self, name: str, data: dict, at: float) -> None:
        """One decoded record read back; `at` its timestamp (Unix seconds)."""
        if name == "DeadLetter":
            self.board.dead_letter(data)
        elif name == "FraudSignal":
            self.board.fraud_signal(data)
        else:
            self.board.result(RECORD_OUTPUTS[name], data, at)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def streamed(self) -> float:
        """Seconds of claim stream so far."""
        since, until = self.sent.claims_since, self.sent.claims_until
        return ((until or time.monotonic()) - since) if since else 0.0

    def overall_rate(self) -> float:
        """Settlements per second of claim stream."""
        return self.board.counts["settlement"] / self.streamed() if self.streamed() else 0.0

    def recent_rate(self) -> float:
        """Settlements per second over the last few whole seconds."""
        return self.board.rate(time.time())

    def in_flight(self) -> int:
        return max(self.sent.claims - self.board.answered, 0)

    def regions(self) -> list[str]:
        """The insured regions to show: the policy's and any a result named."""
        return sorted(set(self.region_names) | set(self.board.regions))

    def insured(self, code: str) -> tuple[int, Decimal]:
        """Settlements of insured region `code`, and the fund they paid (before reversals)."""
        tally = self.board.regions.get(code)
        return (tally.settlements, tally.settled_fund) if tally else (0, ZERO)

    def signals(self) -> int:
        return self.board.counts["fraud signal"]
