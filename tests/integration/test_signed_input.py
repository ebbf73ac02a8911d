"""Signed input against the real broker and Redis: with GONGJI_REQUIRE_SIGNED_INPUT on, unsigned,
unknown-key, forged and out-of-region input is dead-lettered with the reason and the service moves
on; signed input settles."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

from gongji.common.signing import Key, load_keys
from gongji.contract.wire import SIGNATURE_HEADER, TYPE_HEADER
from gongji.local.launch import encode
from gongji.local.synthetic import Traffic
from tests.integration.support import (
    CATALOG, as_service, by_claim, collect, producer, running_service, settings_for, wait_registered,
)

ERENHOT, PROVINCE = "152501", "990100"


def keys_file(folder: Path) -> Path:
    """A hub key for every region (HMAC-SHA256) and an Erenhot key for 152501 only (HMAC-SM3)."""
    (folder / "hub.key").write_text("hub-secret-" + "h" * 40 + "\n")
    (folder / "erenhot.key").write_text("erenhot-secret-" + "e" * 40 + "\n")
    path = folder / "keys.toml"
    path.write_text('[keys.hub]\nsecret_file = "hub.key"\n\n'
                    '[keys.erenhot]\nalgorithm = "hmac-sm3"\nsecret_file = "erenhot.key"\nregions = ["152501"]\n')
    return path


async def send(settings, rows) -> None:
    async with producer(settings) as sender:
        sends = [await sender.send(topic, value, key=key, headers=headers) for topic, key, value, _id, headers in rows]
        await asyncio.gather(*sends)


def a_claim(traffic: Traffic, person: dict, institution: dict, ident: str) -> dict:
    _, claim = traffic.claim()
    claim = copy.deepcopy(claim)
    claim.update(claim_id=f"{traffic.tag}{ident}", psn_no=person["psn_no"], fixmedins_code=institution["fixmedins_code"],
                 med_type="11", dise_codg=None, acct_used_flag="0")
    claim["fee_details"] = [line for line in claim["fee_details"] if line["med_list_codg"] != "XT13"]
    return claim


async def test_required_signatures_dead_letter_unsigned_forged_and_out_of_region_input(stack, uniq, tmp_path):
    settings = settings_for(stack, uniq, input_keys_file=keys_file(tmp_path), require_signed_input=True)
    ring = load_keys(settings.input_keys_file)
    hub, erenhot = ring.keys["hub"], ring.keys["erenhot"]
    forger = Key("hub", "hmac-sha256", b"a guess at the hub's secret, 32+ bytes long")
    stranger = Key("nobody", "hmac-sha256", b"x" * 32)
    traffic = Traffic(persons=4, seed=5, tag=uniq, family=0.0)
    local = next(p for p in traffic.persons if p["insu_admdvs"] == ERENHOT and p["psn_insu_stas"] == "1")
    other = next(p for p in traffic.persons if p["insu_admdvs"] == PROVINCE and p["psn_insu_stas"] == "1")
    here = next(i for i in traffic.institutions if i["admdvs"] == ERENHOT and i["fixmedins_type"] == "1")
    there = next(i for i in traffic.institutions if i["admdvs"] == PROVINCE and i["fixmedins_type"] == "1")
    claims = {name: a_claim(traffic, person, institution, name) for name, person, institution in [
        ("hub", other, there), ("erenhot", local, here), ("unsigned", local, here), ("forged", local, here),
        ("stranger", local, here), ("foreign", other, there), ("cross", other, here)]}
    moved = {**other, "insu_admdvs": ERENHOT}  # the Erenhot key moving a 990100 person into 152501

    async with running_service(settings) as service:
        await send(settings, encode(CATALOG, settings, traffic.registry(), hub))
        await wait_registered(settings, traffic)
        rows = (encode(CATALOG, settings, [("claim", claims["hub"])], hub)
                + encode(CATALOG, settings, [("claim", claims["erenhot"])], erenhot)
                + encode(CATALOG, settings, [("claim", claims["unsigned"])])
                + encode(CATALOG, settings, [("claim", claims["forged"])], forger)
                + encode(CATALOG, settings, [("claim", claims["stranger"])], stranger)
                + encode(CATALOG, settings, [("claim", claims["foreign"])], erenhot)
                + encode(CATALOG, settings, [("claim", claims["cross"])], erenhot)
                + encode(CATALOG, settings, [("person", moved)], erenhot))
        # A hub-signed claim replayed onto accounts.credits: the signature binds the topic.
        topic, key, value, ident, headers = rows[0]
        rows.append((settings.topics.credits, key, value, ident, headers))
        # A person record signed as a claim: the MAC holds (it covers the type it was given), the type does not.
        person_value = CATALOG.encode("Person", local)
        rows.append((settings.topics.persons, local["psn_no"].encode(), person_value, "typed",
                     hub.headers(settings.topics.persons, local["psn_no"].encode(), "claim", person_value)))
        await send(settings, rows)
        dead = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= 8)
        settled = await collect(settings, settings.topics.settlements,
                                lambda rs: {claims["hub"]["claim_id"], claims["erenhot"]["claim_id"]} <= set(by_claim(rs)))
        assert service.stats.dead_letters == 8

    reasons = {}
    for _, letter, _ in dead:
        name, data = CATALOG.decode(letter["original"])
        reasons[(letter["topic"], data.get("claim_id") or data["psn_no"])] = letter["reason"]
    claims_topic, credits_topic = settings.topics.claims, settings.topics.credits
    assert reasons == {
        (claims_topic, claims["unsigned"]["claim_id"]): "unsigned input (GONGJI_REQUIRE_SIGNED_INPUT is on)",
        (claims_topic, claims["forged"]["claim_id"]):
            "signature by key 'hub' (hmac-sha256) does not verify: not made over this topic, key, type and value",
        (claims_topic, claims["stranger"]["claim_id"]): "signed with unknown key id 'nobody'",
        (claims_topic, claims["foreign"]["claim_id"]):
            "key 'erenhot' may speak only for 152501, not 990100 (the person's insured region)",
        (claims_topic, claims["cross"]["claim_id"]):
            "key 'erenhot' may speak only for 152501, not 990100 (the person's insured region)",
        (settings.topics.persons, other["psn_no"]):
            "key 'erenhot' may speak only for 152501, not 990100 (the person's insured region before this change)",
        (settings.topics.persons, local["psn_no"]): "signed as type b'claim' but a Person record",
        (credits_topic, claims["hub"]["claim_id"]):
            "signature by key 'hub' (hmac-sha256) does not verify: not made over this topic, key, type and value",
    }
    results = by_claim(settled)
    assert "setl_id" in results[claims["hub"]["claim_id"]][0]
    assert "setl_id" in results[claims["erenhot"]["claim_id"]][0]
    refused = {claims[name]["claim_id"] for name in ("unsigned", "forged", "stranger", "foreign", "cross")}
    assert not refused & set(results)


async def test_without_the_requirement_unsigned_input_settles_and_a_forged_signature_is_still_refused(
        stack, uniq, tmp_path):
    settings = settings_for(stack, uniq, input_keys_file=keys_file(tmp_path))
    hub = load_keys(settings.input_keys_file).keys["hub"]
    traffic = Traffic(persons=2, seed=6, tag=uniq, family=0.0)
    person = next(p for p in traffic.persons if p["psn_insu_stas"] == "1")
    institution = next(i for i in traffic.institutions if i["admdvs"] == person["insu_admdvs"])
    unsigned, tampered = (a_claim(traffic, person, institution, name) for name in ("unsigned", "tampered"))
    async with running_service(settings):
        await send(settings, encode(CATALOG, settings, traffic.registry()))
        await wait_registered(settings, traffic)
        (topic, key, value, ident, headers), = encode(CATALOG, settings, [("claim", tampered)], hub)
        signature = dict(headers)[SIGNATURE_HEADER]
        # The signed bytes of one claim, the signature kept, another claim's bytes sent in their place.
        other = CATALOG.encode("Claim", {**tampered, "claim_id": tampered["claim_id"] + "-2"})
        rows = encode(CATALOG, settings, [("claim", unsigned)]) + [
            (topic, key, other, ident, [(TYPE_HEADER, b"claim"), (SIGNATURE_HEADER, signature)])]
        await send(settings, rows)
        dead = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= 1)
        settled = await collect(settings, settings.topics.settlements,
                                lambda rs: unsigned["claim_id"] in by_claim(rs))
    assert [letter["reason"] for _, letter, _ in dead] == [
        "signature by key 'hub' (hmac-sha256) does not verify: not made over this topic, key, type and value"]
    assert "setl_id" in by_claim(settled)[unsigned["claim_id"]][0]


async def test_a_rebuild_takes_no_registry_entry_the_service_refused(stack, uniq, tmp_path):
    """`gongji settlement rebuild` reads the input topics again: a person move dead-lettered for its
    signature or its key's regions must not come back into the state from there."""
    from gongji.common.redis import client_for
    from gongji.settlement.policy import load_policy_book
    from gongji.settlement.rebuild import rebuild
    from gongji.settlement.redis_store import RedisStore

    settings = settings_for(stack, uniq, input_keys_file=keys_file(tmp_path), require_signed_input=True)
    ring = load_keys(settings.input_keys_file)
    hub, erenhot = ring.keys["hub"], ring.keys["erenhot"]
    traffic = Traffic(persons=2, seed=7, tag=uniq, family=0.0)
    other = next(p for p in traffic.persons if p["insu_admdvs"] == PROVINCE)
    institution = next(i for i in traffic.institutions if i["admdvs"] == PROVINCE and i["fixmedins_type"] == "1")
    claim = a_claim(traffic, other, institution, "after-the-moves")
    moved = {**other, "insu_admdvs": ERENHOT}
    async with running_service(settings):
        await send(settings, encode(CATALOG, settings, traffic.registry(), hub))
        await wait_registered(settings, traffic)
        await send(settings, encode(CATALOG, settings, [("person", moved)], erenhot)
                   + encode(CATALOG, settings, [("person", moved)]))
        await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= 2)
        await send(settings, encode(CATALOG, settings, [("claim", claim)], hub))
        await collect(settings, settings.topics.settlements, lambda rs: claim["claim_id"] in by_claim(rs))

    settings = as_service(settings, "settlement")  # a rebuild runs as the service whose state it is
    client = client_for(settings)
    try:
        report = await rebuild(settings, CATALOG, load_policy_book(), client, force=True)
        person = (await RedisStore(client, settings.key_prefix).read({other["psn_no"]}, set(), set())).persons
    finally:
        await client.aclose()
    assert report.markers_written and not report.differences
    assert report.unanswered == 2
    assert person[other["psn_no"]].insu_admdvs == PROVINCE
