"""The centre's catalogue through the real broker and Redis (issue 13): `gongji catalogue load`'s
rows, signed, reach the settlement service on registry.catalogue and are stored as its own Redis
user may; claims whose lines leave the classification out then settle as replay settles the same
claims classified; a mismatch is refused naming the line; a key limited to one region cannot load
another's catalogue; `gongji settlement rebuild` restores the catalogue from its compacted topic
and finds the same results."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path

from gongji.common.redis import client_for
from gongji.local.catalogue import items, load
from gongji.local.launch import encode
from gongji.local.synthetic import Traffic
from gongji.settlement.codec import from_output, json_ready, to_event, to_wire
from gongji.settlement.memory_store import MemoryStore
from gongji.settlement.policy import load_policy_book
from gongji.settlement.rebuild import rebuild
from gongji.settlement.redis_store import RedisStore
from gongji.settlement.settler import Settler
from tests.integration.support import CATALOG, as_service, by_claim, collect, running_service, settings_for, wait_registered
from tests.integration.test_signed_input import keys_file, send

SAMPLES = Path(__file__).parents[2] / "services" / "gongji" / "settlement" / "catalogues"


def sample_rows() -> list:
    return [item for region in ("152501", "990100")
            for _, item in items((SAMPLES / f"{region}.csv").read_text(encoding="utf-8"))]


def stripped(claim: dict) -> dict:
    return {**claim, "fee_details": [{**line, "chrgitm_lv": None, "selfpay_prop": None, "pric_uplmt_amt": None}
                                     for line in claim["fee_details"]]}


async def test_loaded_catalogue_classifies_claims_on_the_stack_as_replay_does(stack, uniq, tmp_path):
    settings = settings_for(stack, uniq, input_keys_file=keys_file(tmp_path), require_signed_input=True,
                            input_signing_key="hub")
    traffic = Traffic(persons=12, seed=17, tag=uniq, family=0.0)
    claims = [claim for kind, claim in traffic.stream(60, reversals=0.0, resends=0.0) if kind == "claim"]
    active = {person["psn_no"] for person in traffic.persons if person["psn_insu_stas"] == "1"}
    first = next(claim for claim in claims if claim["psn_no"] in active and claim["med_type"] == "11")
    rest = [claim for claim in claims if claim is not first]
    wrong = copy.deepcopy(next(claim for claim in rest if claim["psn_no"] in active and claim["med_type"] == "11"))
    wrong.update(claim_id=wrong["claim_id"] + "-wrong")
    position, line = next((n, line) for n, line in enumerate(wrong["fee_details"]) if not line["non_med_flag"])
    line["chrgitm_lv"] = {"01": "03", "02": "01", "03": "01"}[line["chrgitm_lv"]]
    async with running_service(settings) as service:
        hub = service.ring.keys["hub"]
        erenhot = service.ring.keys["erenhot"]
        await send(settings, encode(CATALOG, settings, traffic.registry(), hub))
        await wait_registered(settings, traffic)
        # Before the catalogue: an unclassified line names its item and waits for it.
        await send(settings, encode(CATALOG, settings, [("claim", stripped(first))], hub))
        before = await collect(settings, settings.topics.settlements, lambda rs: first["claim_id"] in by_claim(rs))
        # `gongji catalogue load`'s sending, which returns once the settlement group took the rows.
        await load(sample_rows(), settings)
        # A key for 152501 only may not load 990100's catalogue.
        foreign = next(item for item in sample_rows() if item.admdvs == "990100")
        await send(settings, encode(CATALOG, settings, [("catalogue", {
            **to_wire(foreign), "chrgitm_lv": "03", "selfpay_prop": None, "pric_uplmt_amt": None})], erenhot))
        sent = [("claim", stripped(claim)) for claim in rest] + [("claim", wrong)]
        await send(settings, encode(CATALOG, settings, sent, hub))
        ids = {claim["claim_id"] for _, claim in sent}
        settled = await collect(settings, settings.topics.settlements, lambda rs: ids <= set(by_claim(rs)))
        dead = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= 1)
    (refused,) = by_claim(before)[first["claim_id"]]
    assert refused["err_code"] == "UNKNOWN_ITEM" and "not in region" in refused["err_msg"]
    assert [letter["reason"] for _, letter, _ in dead] == [
        "key 'erenhot' may speak only for 152501, not 990100 (the catalogue's region)"]

    # Replay of the same claims as the traffic classified them, on the same registry: the same results.
    settler = Settler(MemoryStore(), load_policy_book())
    replayed = await settler.handle([to_event(kind, data) for kind, data in traffic.registry()]
                                    + [to_event("claim", claim) for claim in rest])
    expected = {wire["claim_id"]: json_ready(wire) for _, wire in map(from_output, replayed)}
    results = by_claim(settled)
    assert {ident: json_ready(results[ident][0]) for ident in expected} == expected
    assert sum(wire.get("preselfpay_amt", "0.00") != "0.00" for wire in expected.values()) > 5
    (mismatch,) = results[wrong["claim_id"]]
    assert mismatch["err_code"] == "INVALID_CLAIM"
    assert mismatch["err_msg"].startswith(f"fee_details.{position} (feedetl_sn {line['feedetl_sn']}, "
                                          f"item {line['med_list_codg']}): chrgitm_lv {line['chrgitm_lv']} "), mismatch

    # Redis lost: the rebuild, as the service whose state it is, restores the catalogue too, and
    # settling again with it gives exactly what was published.
    settings = as_service(settings, "settlement")
    client = client_for(settings)
    try:
        report = await rebuild(settings, CATALOG, load_policy_book(), client, force=True)
        stored = await RedisStore(client, settings.key_prefix).read_catalogue({("152501", "XD04"), ("990100", "XD04")})
    finally:
        await client.aclose()
    assert report.markers_written and not report.differences, report.lines()
    assert report.unanswered == 1  # the row the region-limited key sent for 990100
    assert {item.selfpay_prop for versions in stored.values() for item in versions} == {Decimal("0.10")}
