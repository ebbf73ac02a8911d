"""The clearing service against the real broker and Redis: settlements in, statements out, and a
full redelivery changing nothing (issue 4 §3)."""

from __future__ import annotations

import asyncio
import csv
import urllib.request
from decimal import Decimal

import pytest
from tests.integration.support import (
    CATALOG, as_service, collect, produce, running, service_credentials, settings_for, wait_registered,
)

from gongji.clearing.domain import FIELDS, Contribution, contribution, fold, fold_by_institution, owed
from gongji.clearing.commands import close_and_print, report
from gongji.clearing.service import ClearingService, close_month
from gongji.clearing.store import ClearingStore
from gongji.common.redis import client_for, connect
from gongji.local.processes import free_port
from gongji.settlement.policy import load_policy_book
from gongji.settlement.service import SettlementService
from gongji.local.synthetic import Traffic


async def test_statements_reconcile_with_the_settlements_and_redelivery_changes_nothing(stack, uniq, capsys):
    settings = settings_for(stack, uniq)
    traffic = Traffic(persons=60, seed=31, tag=uniq, family=0.1)
    claims = list(traffic.stream(800, reversals=0.05))
    # Each service on its own Redis user, as the stack runs them.
    settlement_settings, clearing_settings = as_service(settings, "settlement"), as_service(settings, "clearing")
    settlement_client, client = client_for(settlement_settings), client_for(clearing_settings)
    try:
        settlement = SettlementService(settlement_settings, CATALOG, load_policy_book(), settlement_client)
        clearing = ClearingService(clearing_settings, CATALOG, client)
        async with running(settlement, clearing):
            await produce(settings, traffic.registry())
            await wait_registered(settings, traffic)
            await produce(settings, traffic.openings())
            await produce(settings, claims)
            ids = {d["claim_id"] for _, d in claims}
            records = await collect(settings, settings.topics.settlements,
                                    lambda rs: ids <= {d.get("claim_id") for _, d, _ in rs})
            # The reference: every cross-region settlement or reversal published, each once.
            results = [d for name, d, _ in records if name in ("Settlement", "ReversalResult")]
            items = [item for item in map(contribution, results) if item is not None]
            expected = fold(items)
            assert len({i.setl_id for i in items}) >= 20, "too little cross-region traffic to test"
            while clearing.counted["seen"] < len(items):
                await asyncio.sleep(0.1)
        store = ClearingStore(client, settings.key_prefix)
        months = sorted({ym for ym, _, _ in expected})
        counted = {(ym, *pair): position for ym in months for pair, position in (await store.positions(ym)).items()}
        assert counted == expected
        # Per institution, counted in the same step: the reference's shares, adding up to each position.
        shares = {(ym, *key): share for ym in months for key, share in (await store.institutions(ym)).items()}
        assert shares == fold_by_institution(items) and len({key[3] for key in shares}) > 1
        for (ym, treatment, insured), position in expected.items():
            assert {name: sum(share[name] for key, share in shares.items() if key[:3] == (ym, treatment, insured))
                    for name in FIELDS} == position

        # Redelivery of everything (a new consumer group reads the topic from the start): no change.
        port = free_port()
        again = ClearingService(clearing_settings.model_copy(update={"clearing_group": f"{uniq}-again",
                                                                     "metrics_port": port}),
                                CATALOG, client)
        async with running(again):
            while again.counted["seen"] < len(items):
                await asyncio.sleep(0.1)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                metrics = response.read().decode()
        assert f'gongji_outputs_total{{kind="already counted"}} {float(len(items))}' in metrics
        assert again.counted["new"] == 0
        assert {(ym, *pair): p for ym in months for pair, p in (await store.positions(ym)).items()} == expected

        statements = [s for ym in months for s in await close_month(settings, CATALOG, client, ym)]
    finally:
        await client.aclose()
        await settlement_client.aclose()
    # Statements reconcile exactly with the settlements they came from.
    for s in statements:
        for flow in (s["a_to_b"], s["b_to_a"]):
            position = expected.get((s["ym"], flow["treatment_admdvs"], flow["insured_admdvs"]), dict.fromkeys(FIELDS, 0))
            assert flow["settlements"] == position["settlements"]
            assert int(flow["fund_pay_sumamt"] * 100) == position["fund_pay_sumamt"]
            assert int(flow["owed"] * 100) == position["fund_pay_sumamt"] + position["acct_pay"]
        assert s["net_to_a"] == s["a_to_b"]["owed"] - s["b_to_a"]["owed"]

    # `gongji clearing close MONTH --csv`: the same statements, a row per direction, money to the fen.
    capsys.readouterr()
    await close_and_print(settings, months[0], "csv")
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    flows = {(s["statement_id"], flow["treatment_admdvs"]): (s, flow) for s in statements if s["ym"] == months[0]
             for flow in (s["a_to_b"], s["b_to_a"])}
    assert len(rows) == len(flows) > 0
    for row in rows:
        s, flow = flows[row["statement_id"], row["treatment_admdvs"]]
        assert row["insured_admdvs"] == flow["insured_admdvs"] and int(row["settlements"]) == flow["settlements"]
        for name in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "owed"):
            assert row[name] == f"{flow[name]:.2f}" and Decimal(row[name]) == flow[name], name
        assert Decimal(row["net_to_a"]) == s["net_to_a"]

    # `gongji clearing report MONTH --by institution --csv`: a row per institution and insured region.
    await report(settings, months[0], "institution", "csv")
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    mine = {key[1:]: share for key, share in shares.items() if key[0] == months[0]}
    assert len(rows) == len(mine) > 0
    for row in rows:
        share = mine[row["treatment_admdvs"], row["insured_admdvs"], row["fixmedins_code"]]
        assert int(row["settlements"]) == share["settlements"] and row["ym"] == months[0]
        assert int(Decimal(row["fund_pay_sumamt"]) * 100) == share["fund_pay_sumamt"]
        assert int(Decimal(row["owed"]) * 100) == owed(share) and len(row["owed"].rpartition(".")[2]) == 2
    published = await collect(settings, settings.topics.clearing_statements, lambda rs: len(rs) >= len(statements))
    assert {d["statement_id"] for _, d, _ in published} == {s["statement_id"] for s in statements}


@pytest.mark.parametrize("server", ["redis", "redis-cluster"])
async def test_the_store_names_the_months_with_a_position_under_its_own_prefix(request, stack, uniq, server):
    """What `gongji demo` closes at its end: every month counted, on one server or spread over a
    cluster's nodes, and none of another prefix's."""
    url, cluster = (stack.redis_url, False) if server == "redis" else (request.getfixturevalue("redis_cluster"), True)
    client = connect(url, cluster, **service_credentials(stack, "clearing"))
    try:
        mine, other = ClearingStore(client, uniq), ClearingStore(client, f"{uniq}x")
        assert await mine.months() == []
        items = [Contribution(f"S{n}", ym, "152501", "990100", {"settlements": 1, "fund_pay_sumamt": 100})
                 for n, ym in enumerate(["2023-03", "2023-01", "2024-12", "2023-03"])]
        assert await mine.apply(items) == 4
        await other.apply([Contribution("S9", "2022-07", "152501", "990100", {"settlements": 1})])
        assert await mine.months() == ["2023-01", "2023-03", "2024-12"]
        assert await other.months() == ["2022-07"]
    finally:
        await client.aclose()


@pytest.mark.parametrize("server", ["redis", "redis-cluster"])
async def test_closing_a_year_forgets_its_months_ids_and_keeps_their_positions(request, stack, uniq, server):
    """Clearing's remembered ids expire by event time: closing the years before 2024 forgets the ids
    of 2023's months (a result of them would count again: the service refuses those instead) and
    keeps every position; later months still remember theirs; the first open year never moves back."""
    url, cluster = (stack.redis_url, False) if server == "redis" else (request.getfixturevalue("redis_cluster"), True)
    client = connect(url, cluster, **service_credentials(stack, "clearing"))
    try:
        store = ClearingStore(client, uniq)
        old = Contribution("S1", "2023-03", "152501", "990100", {"settlements": 1, "fund_pay_sumamt": 100}, year=2023)
        kept = Contribution("S2", "2024-05", "990100", "152501", {"settlements": 1, "fund_pay_sumamt": 200}, year=2024)
        assert await store.apply([old, kept]) == 2 and await store.first_open_year() == 0
        assert await store.close(2024) == ["2023-03"]
        assert await store.first_open_year() == 2024
        assert await store.close(2023) == [] and await store.first_open_year() == 2024
        assert (await store.positions("2023-03"))[("152501", "990100")]["fund_pay_sumamt"] == 100
        assert await store.apply([kept]) == 0  # 2024's ids are still remembered
        assert await store.apply([old]) == 1  # 2023's are forgotten
    finally:
        await client.aclose()
