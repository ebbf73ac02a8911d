"""Business metrics (gongji.settlement.business): what the funds paid per region and fund, and claims
per med_type, counted from settled outputs; a reversal counts on its own so net = settlement − reversal."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry
from tests.unit.builders import BOOK, ERENHOT, claim, fen, institution, line, person, record, reversal, state

from gongji.contract.wire import ACCOUNT, FUNDS, POOLING
from gongji.settlement.business import OTHER, BusinessMetrics
from gongji.settlement.domain import Output, Rejection
from gongji.settlement.rules import reverse_claim, settle_claim

pytestmark = pytest.mark.unit


def paid(registry: CollectorRegistry, region: str, fund: str, kind: str = "settlement") -> float:
    return registry.get_sample_value("gongji_fund_paid_fen_total", {"region": region, "fund": fund, "kind": kind}) or 0


def test_a_settlement_and_its_reversal_count_every_fund_by_region_and_med_type():
    registry = CollectorRegistry()
    metrics = BusinessMetrics(registry, BOOK.regions)
    p, inst = person(), institution("EH3", "3")
    settled = settle_claim(claim(line("3000.00"), acct_used_flag="1"), p, inst, BOOK, state("500.00"), None)
    s = settled.settlement
    assert s.hifp_pay > 0 and s.acct_pay > 0  # both a fund and the account paid: the case is worth checking
    undone = reverse_claim(reversal(s.claim_id), record(settled), settled.state)
    refused = Rejection("UNKNOWN_PERSON", "no such person", "P9", claim_id="C9", input_type="claim")
    metrics.count([Output("P1", s), Output("P1", undone.settlement), Output("P9", refused)])

    assert paid(registry, ERENHOT, POOLING) == s.hifp_pay
    assert paid(registry, ERENHOT, ACCOUNT) == s.acct_pay + s.acct_mulaid_pay
    assert paid(registry, ERENHOT, POOLING, "reversal") == s.hifp_pay  # positive, net zero
    total = sum(paid(registry, ERENHOT, code) for code in [fund.code for fund in FUNDS] + [ACCOUNT])
    assert total == s.fund_pay_sumamt + s.acct_pay + s.acct_mulaid_pay
    claims = "gongji_settled_claims_total"
    assert registry.get_sample_value(claims, {"med_type": "11", "kind": "settlement"}) == 1
    assert registry.get_sample_value(claims, {"med_type": "11", "kind": "reversal"}) == 1
    assert fen("3000.00") >= total


def test_labels_stay_bounded_a_region_outside_the_book_counts_as_other():
    registry = CollectorRegistry()
    metrics = BusinessMetrics(registry, BOOK.regions)
    s = settle_claim(claim(line("3000.00")), person(), institution("EH3", "3"), BOOK, state(), None).settlement
    metrics.count([Output("P1", dataclasses.replace(s, insu_admdvs="123456", med_type="99"))])
    assert paid(registry, OTHER, POOLING) == s.hifp_pay > 0
    assert paid(registry, "123456", POOLING) == 0
    assert registry.get_sample_value("gongji_settled_claims_total", {"med_type": OTHER, "kind": "settlement"}) == 1


def test_a_batch_tallies_its_outputs_before_counting_and_still_adds_every_one():
    """Counted per batch (one inc per label set): three settlements in one call count three claims
    and the sum of their fund payments, and a second call adds to the first."""
    registry = CollectorRegistry()
    metrics = BusinessMetrics(registry, BOOK.regions)
    s = settle_claim(claim(line("3000.00")), person(), institution("EH3", "3"), BOOK, state(), None).settlement
    metrics.count([Output("P1", s)] * 3)
    metrics.count([Output("P1", s)])
    assert paid(registry, ERENHOT, POOLING) == 4 * s.hifp_pay > 0
    assert registry.get_sample_value("gongji_settled_claims_total", {"med_type": "11", "kind": "settlement"}) == 4


def test_the_services_stats_tally_a_batch_by_kind_and_code_and_keep_the_totals():
    from gongji.common.avro import SchemaCatalog
    from gongji.contract.wire import ACCUMULATORS, ACCUMULATORS_RECORD, OUTPUT_RECORDS
    from gongji.settlement.codec import ResultEncoder
    from gongji.settlement.domain import Accumulators
    from gongji.settlement.service import Stats, records

    s = settle_claim(claim(line("30.00")), person(), institution("EH3", "3"), BOOK, state("5.00"), None).settlement
    refused = Rejection("UNKNOWN_PERSON", "no such person", "P9", claim_id="C9", input_type="claim")
    asked = Accumulators("Q1", "P1", 2024, "310", "152501", 0, 0, ())
    encoder = ResultEncoder(SchemaCatalog(), {**OUTPUT_RECORDS, ACCUMULATORS: ACCUMULATORS_RECORD})
    everything = [(Output("P1", s), False), (Output("P9", refused), False), (Output("P9", refused), False),
                  (Output("P1", asked), True), (Output("", refused), False)]
    results, replies, kinds, codes = records(everything, encoder.encode)
    assert (kinds, codes) == ({"settlement": 1, "rejection": 3}, {"UNKNOWN_PERSON": 3})
    assert [key for key, _, _ in results] == [b"P1", b"P9", b"P9", None] and [key for key, _, _ in replies] == [b"P1"]
    assert [dict(headers)["gongji-type"] for _, _, headers in results + replies] == \
        [b"settlement", b"rejection", b"rejection", b"rejection", b"accumulators"]
    stats = Stats()
    stats.add(kinds, codes)
    stats.add(*records(everything[:1], encoder.encode)[2:])
    assert stats.outputs == {"settlement": 2, "rejection": 3} and stats.rejections == {"UNKNOWN_PERSON": 3}
