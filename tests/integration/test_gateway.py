"""The gateway over HTTP against the real broker, Redis and the settlement service, with signed input
required: a 2207 request settles and is answered in the national shape; a retried msgid gets the
same answer and settles nothing twice; no result in time answers "pending" and asking again gets it;
another institution's caller, an unauthenticated request and a reused msgid are refused."""

from __future__ import annotations

import copy
import json
import time
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import aiohttp

from gongji.contract.wire import SHANGHAI
from gongji.gateway.callers import load_callers
from gongji.gateway.national import LOCAL_TIME, PENDING, UNANSWERED, claim_id
from gongji.gateway.service import start_gateway
from gongji.local.launch import encode, prepare_topics
from gongji.common.signing import load_keys
from gongji.local.synthetic import Traffic
from tests.integration.support import CATALOG, as_service, by_claim, collect, running_service, settings_for, wait_registered
from tests.integration.test_poison import until
from tests.integration.test_signed_input import keys_file, send


def callers_file(folder: Path, institution: str) -> Path:
    (folder / "his.key").write_text("his-secret-" + "s" * 40 + "\n")
    (folder / "other.key").write_text("other-secret-" + "o" * 40 + "\n")
    path = folder / "callers.toml"
    path.write_text(f'[callers.his]\nsecret_file = "his.key"\nfixmedins_codes = ["{institution}"]\n\n'
                    '[callers.other]\nsecret_file = "other.key"\nfixmedins_codes = ["H99999999999"]\n')
    return path


class World:
    """A population registered with a settlement service that requires signed input, and a caller
    for one of its institutions."""

    def __init__(self, stack, uniq: str, folder: Path, **changes):
        self.traffic = Traffic(persons=2, seed=11, tag=uniq, family=0.0)
        self.person = next(p for p in self.traffic.persons if p["psn_insu_stas"] == "1")
        self.institution = next(i for i in self.traffic.institutions
                                if i["admdvs"] == self.person["insu_admdvs"] and i["fixmedins_type"] == "1")
        code = self.institution["fixmedins_code"]
        self.settings = settings_for(stack, uniq, input_keys_file=keys_file(folder), require_signed_input=True,
                                     input_signing_key="hub", gateway_port=0,
                                     gateway_callers_file=callers_file(folder, code), **changes)
        self.callers = load_callers(self.settings.gateway_callers_file)
        self.hub = load_keys(self.settings.input_keys_file).keys["hub"]

    def request(self, msgid: str, psn_no: str | None = None, fixmedins_code: str | None = None) -> dict:
        """A 2207 envelope for a claim of the synthetic traffic: money as strings, one as a number."""
        _, claim = self.traffic.claim()
        claim = copy.deepcopy(claim)
        lines = [line for line in claim["fee_details"] if line["med_list_codg"] != "XT13"]
        feedetail = [{name: (str(value) if isinstance(value, Decimal) else value) for name, value in line.items()
                      if value is not None} for line in lines]
        feedetail[0]["cnt"] = float(lines[0]["cnt"])  # a JSON number
        when = datetime.fromisoformat(claim["setl_time"]).astimezone(SHANGHAI).strftime(LOCAL_TIME)
        return {"infno": "2207", "msgid": msgid, "fixmedins_code": fixmedins_code or self.institution["fixmedins_code"],
                "inf_time": when, "input": {"data": {
                    "psn_no": psn_no or self.person["psn_no"], "mdtrt_id": claim["mdtrt_id"], "med_type": "11",
                    "insutype": "310", "acct_used_flag": "0", "setl_time": when, "feedetail": feedetail}}}

    async def register(self) -> None:
        await send(self.settings, encode(CATALOG, self.settings, self.traffic.registry(), self.hub))
        await wait_registered(self.settings, self.traffic)


async def post(url: str, body: dict, caller=None, stamp: float | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    headers = caller.headers(int(stamp if stamp is not None else time.time()), data) if caller else {}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=data, headers={"Content-Type": "application/json", **headers}) as response:
            return response.status, await response.json()


@asynccontextmanager
async def gateway(settings):
    """The gateway on its own credentials (Redis user gongji-gateway: GET and SET on gw:* only)."""
    running = await start_gateway(as_service(settings, "gateway"))
    try:
        yield running
    finally:
        await running.stop()


async def test_2207_settles_and_a_retried_msgid_gets_the_same_answer_and_one_settlement(stack, uniq, tmp_path):
    world = World(stack, uniq, tmp_path)
    his = world.callers.by_id["his"]
    async with running_service(world.settings):
        await world.register()
        async with gateway(world.settings) as running:
            url = running.url
            request = world.request("MSG0001")
            status, first = await post(url, request, his)
            again_status, again = await post(url, request, his)
            settled = counted(running, "settled")
    assert status == again_status == 200
    assert first["infcode"] == 0, first
    assert again == first and settled == 2
    setlinfo = first["output"]["setlinfo"]
    assert setlinfo["psn_no"] == world.person["psn_no"] and setlinfo["fixmedins_code"] == world.institution["fixmedins_code"]
    assert setlinfo["setl_time"] == request["input"]["data"]["setl_time"]  # local time, as sent
    assert Decimal(setlinfo["medfee_sumamt"]) == sum(Decimal(line["det_item_fee_sumamt"])
                                                     for line in request["input"]["data"]["feedetail"])
    assert Decimal(setlinfo["medfee_sumamt"]) == Decimal(setlinfo["fund_pay_sumamt"]) + Decimal(setlinfo["psn_part_amt"])
    assert {line["fund_pay_type"] for line in first["output"]["setldetail"]} >= {"310100"}
    ident = claim_id(world.institution["fixmedins_code"], "MSG0001")
    results = by_claim(await collect(world.settings, world.settings.topics.settlements, lambda rs: ident in by_claim(rs)))
    assert len(results[ident]) == 1 and results[ident][0]["setl_id"] == setlinfo["setl_id"]


async def test_2208_reverses_by_setl_id_once(stack, uniq, tmp_path):
    world = World(stack, uniq, tmp_path)
    his = world.callers.by_id["his"]
    async with running_service(world.settings):
        await world.register()
        async with gateway(world.settings) as running:
            _, settled = await post(running.url, world.request("MSG0010"), his)
            setl_id = settled["output"]["setlinfo"]["setl_id"]
            reversal = {"infno": "2208", "msgid": "MSG0011", "fixmedins_code": world.institution["fixmedins_code"],
                        "inf_time": settled["output"]["setlinfo"]["setl_time"],
                        "input": {"data": {"psn_no": world.person["psn_no"], "setl_id": setl_id}}}
            _, reversed_ = await post(running.url, reversal, his)
            _, twice = await post(running.url, {**reversal, "msgid": "MSG0012"}, his)
            _, unknown = await post(running.url, {**reversal, "msgid": "MSG0013",
                                                  "input": {"data": {"psn_no": world.person["psn_no"], "setl_id": "nope"}}}, his)
    assert reversed_["infcode"] == 0, reversed_
    info, original = reversed_["output"]["setlinfo"], settled["output"]["setlinfo"]
    assert info["orig_setl_id"] == setl_id and info["setl_id"] != setl_id
    assert Decimal(info["medfee_sumamt"]) == -Decimal(original["medfee_sumamt"])
    assert Decimal(info["fund_pay_sumamt"]) == -Decimal(original["fund_pay_sumamt"])
    assert twice["infcode"] == -1 and twice["err_msg"].startswith("ALREADY_REVERSED"), twice
    assert unknown["infcode"] == -1 and "setl_id: nope is not a settlement" in unknown["err_msg"]


async def test_no_result_in_time_answers_pending_and_the_result_is_kept_when_it_comes(stack, uniq, tmp_path):
    """Asked while settlement is down: "pending", twice (the identical claim sent twice). Nobody waits
    when the result comes; the reply loop keeps it all the same, so the msgid asked again is answered
    from Redis (nothing sent a third time) and a 2208 finds the settlement by its setl_id."""
    world = World(stack, uniq, tmp_path, gateway_wait_seconds=0.5)
    his = world.callers.by_id["his"]
    async with running_service(world.settings):
        await world.register()
    code = world.institution["fixmedins_code"]
    ident = claim_id(code, "MSG0002")
    async with gateway(world.settings) as running:
        request = world.request("MSG0002")
        status, pending = await post(running.url, request, his)  # the settlement service is down
        assert (status, pending["infcode"], pending["err_msg"]) == (200, -1, PENDING)
        assert pending["output"]["claim_id"] == ident
        _, still = await post(running.url, request, his)
        assert still["err_msg"] == PENDING
        async with running_service(world.settings):
            await until(lambda: stored_answer(world, code, "MSG0002"), "the late result kept in Redis")
            _, answer = await post(running.url, request, his)
            setl_id = answer["output"]["setlinfo"]["setl_id"]
            reversal = {"infno": "2208", "msgid": "MSG0003", "fixmedins_code": code,
                        "inf_time": answer["output"]["setlinfo"]["setl_time"],
                        "input": {"data": {"psn_no": world.person["psn_no"], "setl_id": setl_id}}}
            running.gateway.settings = running.gateway.settings.model_copy(update={"gateway_wait_seconds": 30.0})
            _, reversed_ = await post(running.url, reversal, his)
    assert answer["infcode"] == 0, answer
    assert reversed_["infcode"] == 0 and reversed_["output"]["setlinfo"]["orig_setl_id"] == setl_id, reversed_
    results = by_claim(await collect(world.settings, world.settings.topics.settlements,
                                     lambda rs: len(by_claim(rs).get(ident, [])) >= 2))
    # The claim went twice (two asks while pending); settlement answered the same result twice and
    # settled once; the third ask was answered from Redis, sending nothing.
    assert len(results[ident]) == 2 and results[ident][0] == results[ident][1]
    assert results[ident][0]["setl_id"] == setl_id


async def stored_answer(world, code: str, msgid: str) -> bool:
    from gongji.common.redis import client_for

    client = client_for(world.settings)
    try:
        return b'"answer"' in (await client.get(f"{world.settings.key_prefix}:gw:{code}:{msgid}") or b"")
    finally:
        await client.aclose()


async def test_callers_are_authenticated_and_act_only_for_their_own_institution(stack, uniq, tmp_path):
    world = World(stack, uniq, tmp_path, gateway_wait_seconds=0.5)
    his, other = world.callers.by_id["his"], world.callers.by_id["other"]
    await prepare_topics(world.settings)
    async with gateway(world.settings) as running:
        url = running.url
        request = world.request("MSG0003")
        refused = [await post(url, request),  # no credentials
                   await post(url, request, other),  # another institution's caller
                   await post(url, request, his, stamp=time.time() - 3600)]  # a stale (replayed) request
        forged = json.dumps(request).encode()
        headers = {**his.headers(int(time.time()), b"something else"), "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=forged, headers=headers) as response:
                refused.append((response.status, await response.json()))
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "openapi.json") as response:
                document = await response.json()
    assert (counted(running, "unauthenticated"), counted(running, "refused")) == (3, 1)
    assert [status for status, _ in refused] == [401, 403, 401, 401]
    assert all(answer["infcode"] == -1 for _, answer in refused)
    assert "may not act for fixmedins_code" in refused[1][1]["err_msg"]
    assert document["paths"]["/"]["post"]
    # Nothing reached claims: every refusal came before the claim was published.
    redis_keys = [key async for key in world_client_keys(world)]
    assert redis_keys == []


def counted(running, kind: str) -> float:
    """The gateway's answers of `kind` on /metrics (gongji_outputs)."""
    return running.gateway.replies.metrics.registry.get_sample_value("gongji_outputs_total", {"kind": kind}) or 0


async def world_client_keys(world):
    from gongji.common.redis import client_for

    client = client_for(world.settings)
    try:
        async for key in client.scan_iter(match=f"{world.settings.key_prefix}:gw:*"):
            yield key
    finally:
        await client.aclose()


async def test_a_rejection_is_infcode_minus_one_and_a_reused_msgid_with_other_content_is_refused(stack, uniq, tmp_path):
    world = World(stack, uniq, tmp_path)
    his = world.callers.by_id["his"]
    async with running_service(world.settings):
        await world.register()
        async with gateway(world.settings) as running:
            url = running.url
            _, unknown = await post(url, world.request("MSG0004", psn_no=f"{uniq}-nobody"), his)
            _, reused = await post(url, world.request("MSG0004"), his)  # other content, same msgid
    assert unknown["infcode"] == -1 and unknown["err_msg"].startswith("UNKNOWN_PERSON"), unknown
    assert (reused["infcode"], reused["err_msg"]) == (-1, "msgid MSG0004 was used before for another request")


def visit(world, infno: str, msgid: str, amount: str, when: str = "2023-03-01 10:15:00", mdtrt_id: str = "M1") -> dict:
    """An envelope for one in-scope (甲类) line of `amount` yuan at the world's hospital (level 3)."""
    return {"infno": infno, "msgid": msgid, "fixmedins_code": world.institution["fixmedins_code"], "inf_time": when,
            "input": {"data": {"psn_no": world.person["psn_no"], "mdtrt_id": mdtrt_id, "med_type": "11",
                               "insutype": "310", "acct_used_flag": "0", "setl_time": when,
                               "feedetail": [{"feedetl_sn": "1", "med_list_codg": "XA01", "list_type": "101",
                                              "chrgitm_lv": "01", "det_item_fee_sumamt": amount, "cnt": 1,
                                              "pric": amount}]}}}


def accumulators_5206(world, msgid: str, psn_no: str | None = None, year: str = "2023") -> dict:
    return {"infno": "5206", "msgid": msgid, "fixmedins_code": world.institution["fixmedins_code"],
            "inf_time": "2023-12-01 09:00:00", "input": {"data": {"psn_no": psn_no or world.person["psn_no"],
                                                                 "year": year}}}


def rows(answer: dict) -> dict[str, tuple]:
    return {row["cum_type_code"]: (row["cum"], row["payb_lmt_amt"], row["crt_payb_lmt_amt"])
            for row in answer["output"]["cuminfo"]}


async def question_traces(world) -> list:
    """Whatever a question would leave in Redis had it been settled: a claimed id, a record."""
    from gongji.common.redis import client_for

    client = client_for(world.settings)
    try:
        return [key async for key in client.scan_iter(match=f"{world.settings.key_prefix}:*q-*")]
    finally:
        await client.aclose()


async def test_2206_answers_what_the_2207_after_it_settles_and_changes_nothing(stack, uniq, tmp_path):
    world = World(stack, uniq, tmp_path)
    his = world.callers.by_id["his"]
    async with running_service(world.settings):
        await world.register()
        async with gateway(world.settings) as running:
            url = running.url
            _, before = await post(url, accumulators_5206(world, "MSG0030"), his)
            _, asked = await post(url, visit(world, "2206", "MSG0031", "600.00"), his)
            _, again = await post(url, visit(world, "2206", "MSG0031", "600.00"), his)  # same msgid: asked again
            _, between = await post(url, accumulators_5206(world, "MSG0032"), his)
            traces = await question_traces(world)
            _, settled = await post(url, visit(world, "2207", "MSG0033", "600.00"), his)
            _, after = await post(url, accumulators_5206(world, "MSG0034"), his)
            answered = counted(running, "answered")
    assert asked["infcode"] == 0 and again == asked, asked
    assert answered == 5  # 2206 twice, 5206 three times
    assert settled["infcode"] == 0, settled
    info = settled["output"]["setlinfo"]
    assert asked["output"]["setlinfo"] == {k: v for k, v in info.items() if k not in ("setl_id", "claim_id")}
    assert asked["output"]["setldetail"] == settled["output"]["setldetail"]
    assert (info["act_pay_dedc"], info["hifp_pay"]) == ("600.00", "0.00")  # the deductible, not used before
    # Nothing changed: the accumulators before and after two pre-settlements are the same, no id or
    # record of a question is in Redis, and no question reached settlements (the ledger's input).
    assert before["infcode"] == 0 and between == before, (before, between)
    assert rows(before)["deductible"] == ("0.00", "1000.00", "1000.00")
    assert traces == []
    assert rows(after)["deductible"] == ("600.00", "1000.00", "400.00") and after["output"]["visits"] == 1
    ident = claim_id(world.institution["fixmedins_code"], "MSG0033")
    results = by_claim(await collect(world.settings, world.settings.topics.settlements, lambda rs: ident in by_claim(rs)))
    assert not [claim for claim in results if claim.startswith("q-")]


async def test_5206_after_two_2207s_and_for_a_person_never_seen(stack, uniq, tmp_path):
    world = World(stack, uniq, tmp_path)
    his = world.callers.by_id["his"]
    async with running_service(world.settings):
        await world.register()
        async with gateway(world.settings) as running:
            url = running.url
            _, first = await post(url, visit(world, "2207", "MSG0040", "600.00"), his)
            _, second = await post(url, visit(world, "2207", "MSG0041", "900.00", "2023-04-01 09:00:00"), his)
            _, year = await post(url, accumulators_5206(world, "MSG0042"), his)
            _, other_year = await post(url, accumulators_5206(world, "MSG0043", year="2024"), his)
            _, nobody = await post(url, accumulators_5206(world, "MSG0044", psn_no=f"{uniq}-nobody"), his)
    assert first["infcode"] == second["infcode"] == 0, (first, second)
    # 二连浩特 (152501), in service, a level-3 hospital: annual deductible 1,000, ratio 0.60, outpatient
    # cap 4,000 counted in the annual fund cap of 150,000. 600 all deductible; of 900, 400 deductible
    # and 500 × 0.60 = 300 pooling.
    assert second["output"]["setlinfo"]["hifp_pay"] == "300.00"
    output = year["output"]
    assert year["infcode"] == 0, year
    assert (output["psn_no"], output["year"], output["insu_admdvs"], output["balc"], output["visits"]) == (
        world.person["psn_no"], "2023", "152501", "0.00", 2)
    figures = rows(year)
    assert figures["deductible"] == ("1000.00", "1000.00", "0.00")
    assert figures["outpatient_pool"] == ("300.00", "4000.00", "3700.00")
    assert figures["fund_cap"] == ("300.00", "150000.00", "149700.00")
    assert figures["medfee"] == ("1500.00", None, None)
    assert other_year["infcode"] == 0 and rows(other_year)["deductible"] == ("0.00", "1000.00", "1000.00")
    assert nobody["infcode"] == -1 and nobody["err_msg"].startswith("UNKNOWN_PERSON"), nobody


async def test_an_unsigned_question_is_dead_lettered_and_answers_nothing(stack, uniq, tmp_path):
    """Settlement requires signed input on inquiries too: a gateway without the input key gets no
    answer, and its question is on dead-letters naming why."""
    world = World(stack, uniq, tmp_path, gateway_wait_seconds=1.0)
    his = world.callers.by_id["his"]
    async with running_service(world.settings):
        await world.register()
        async with gateway(world.settings.model_copy(update={"input_signing_key": None})) as running:
            _, unanswered = await post(running.url, accumulators_5206(world, "MSG0050"), his)
        dead = await collect(world.settings, world.settings.topics.dead_letters, lambda rs: len(rs) >= 1)
    assert (unanswered["infcode"], unanswered["err_msg"]) == (-1, UNANSWERED)
    (letter,) = [data for _name, data, _message in dead]
    assert letter["topic"] == world.settings.topics.inquiries and "unsigned" in letter["reason"], letter
