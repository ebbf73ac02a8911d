"""`gongji run gateway`: the national interface's synchronous front door, over aiohttp.

Every envelope comes to `POST /` (infno inside, as at the national platform's single service
address). A 2207 request is authenticated (gateway.callers), mapped to a `Claim` (gateway.national),
claimed once in Redis under its institution and msgid (SET NX), signed with the configured input
key, published to `claims`, and answered from its result on `settlements`, which ONE reply consumer
per process reads for every request (matched by the `gongji-id` header, decoded only on a match).
No answer within `gateway_wait_seconds`: "accepted, result pending", and the same msgid asked
again sends the identical claim again, which settlement answers with the identical result without
settling twice (CONTRACT.md, "Idempotency"); the answer, once known, is kept in Redis and given back.
A 2208 reverses by setl_id (the gateway keeps each setl_id it answered with its claim) or by
orig_claim_id, the same way, as a `Reversal`. A 2206 (pre-settlement) and a 5206 (accumulators)
change nothing: each is a question under an id of its own on `inquiries`, which settlement answers
on `inquiry-results` (read by the same reply consumer) from the person's state, writing nothing; no
msgid is claimed, and asking again asks again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from gongji.common import kafka
from gongji.common.avro import DecodeError, EncodeError, SchemaCatalog
from gongji.common.observe import Metrics, serve
from gongji.common.redis import client_for
from gongji.common.signing import Key, signer
from gongji.common.topic_admin import ensure_service_topics
from gongji.contract.topics import service_topics
from gongji.contract.wire import ID_HEADER, TYPE_HEADER, header
from gongji.gateway import failures, national
from gongji.gateway.callers import Callers, Unauthenticated, load_callers
from gongji.gateway.national import Refused
from gongji.settings import Settings

log = logging.getLogger("gongji.gateway")
MAX_BODY = 1024 * 1024
OUTCOME = web.ResponseKey("outcome", str)  # what /metrics counts a 2206 or 5206 answer as
LATE = 100_000  # claims answered "pending" whose results the reply loop still keeps (the oldest forgotten first)


class Replies:
    """The one consumer of `settlements` and `inquiry-results` a gateway process has: from the end
    of every partition as it starts, each result whose id someone waits for resolves their futures."""

    def __init__(self, settings: Settings, catalog: SchemaCatalog, metrics: Metrics):
        self.settings, self.catalog, self.metrics = settings, catalog, metrics
        self.waiting: dict[str, list[asyncio.Future]] = {}
        self.late: OrderedDict[str, Callable[[tuple], Awaitable[None]]] = OrderedDict()
        self._keeping: set[asyncio.Task] = set()
        self._consumer = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        topics = self.settings.topics
        # Tansu holds each fetch for fetch_max_wait even with data there: every request waits for it.
        self._consumer = kafka.consumer(self.settings, None, fetch_max_wait_ms=20)
        await self._consumer.start()
        partitions = [*await self._partitions(topics.settlements), *await self._partitions(topics.inquiry_results)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # resolved now: nothing published after start is missed
            await self._consumer.position(partition)
        self._task = asyncio.create_task(self._read(), name="gateway-replies")

    async def _partitions(self, topic: str) -> list[TopicPartition]:
        deadline = time.monotonic() + 30
        while not (found := self._consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions (run `gongji topics create`)")
            await self._consumer._client.force_metadata_update()  # as kafka.PartitionEnds does
            await asyncio.sleep(0.2)
        return [TopicPartition(topic, p) for p in sorted(found)]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()

    def expect(self, ident: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(ident, []).append(future)
        return future

    def keep_late(self, ident: str, keep: Callable[[tuple], Awaitable[None]]) -> None:
        """A claim nobody waits for any more (answered "pending"): `keep` its result when it comes, so
        the same msgid asked again, or a 2208 by its setl_id, is answered from Redis."""
        self.late[ident] = keep
        self.late.move_to_end(ident)
        while len(self.late) > LATE:
            self.late.popitem(last=False)

    def forget(self, ident: str, future: asyncio.Future) -> None:
        futures = self.waiting.get(ident, [])
        if future in futures:
            futures.remove(future)
        if not futures:
            self.waiting.pop(ident, None)

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            self.metrics.polled()  # /healthz: the reply consumer turns
            self.metrics.idle()
            for messages in batches.values():
                for message in messages:
                    self.take(message)

    def take(self, message) -> None:
        """Resolve whoever waits for this result; one that cannot be decoded fails its waiters
        (they answer that they could not read it), never the loop every request depends on."""
        ident = header(message.headers, ID_HEADER)
        futures = self.waiting.pop(ident.decode(), None) if ident else None
        keep = self.late.pop(ident.decode(), None) if ident else None
        if not futures and keep is None:
            return
        kind = (header(message.headers, TYPE_HEADER) or b"").decode()
        try:
            outcome, failure = (kind, self.catalog.decode(message.value)[1]), None
        except DecodeError as error:
            log.warning("gateway: the result for %s cannot be read: %s", ident.decode(), error)
            outcome, failure = None, ValueError(f"the result for {ident.decode()} cannot be read: {error}")
        for future in futures or ():
            if not future.done():
                future.set_result(outcome) if failure is None else future.set_exception(failure)
        if keep is not None and not futures and failure is None:  # a waiter, if any, keeps it itself
            task = asyncio.create_task(keep(outcome))
            self._keeping.add(task)
            task.add_done_callback(self._keeping.discard)


@dataclass
class Gateway:
    settings: Settings
    callers: Callers
    catalog: SchemaCatalog
    replies: Replies
    producer: object
    redis: object
    key: Key | None
    watch: failures.RedisWatch = field(init=False)

    def __post_init__(self) -> None:
        self.watch = failures.RedisWatch(self.settings, self.redis, self.replies.metrics)

    def _msg_key(self, fixmedins_code: str, msgid: str) -> str:
        return f"{self.settings.key_prefix}:gw:{fixmedins_code}:{msgid}"

    async def handle(self, request: web.Request) -> web.Response:
        try:  # one deadline over everything: a Redis that hangs does not hold the request for ever
            async with asyncio.timeout(self.settings.gateway_wait_seconds + self.settings.probe_timeout_seconds):
                response = await self._answer(request)
        except Exception as error:  # Redis away, or anything unforeseen: in the national shape, told once
            response = _json(*failures.answer(error, self.watch))
        self.replies.metrics.outputs.labels(_outcome(response)).inc()
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            caller = self.callers.authenticate(request.headers, body, time.time())
        except Unauthenticated as error:
            return _json(national.refusal(str(error)), 401)
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _json(national.refusal("the body is not JSON"), 400)
        try:
            infno, msgid, fixmedins_code, data = national.envelope(parsed)
            if fixmedins_code not in caller.fixmedins_codes:
                return _json(national.refusal(f"caller {caller.key_id} may not act for fixmedins_code "
                                              f"{fixmedins_code}"), 403)
            if infno in ("2206", "5206"):
                response = _json(answered := await self.ask(infno, fixmedins_code, data, parsed.get("inf_time")))
                response[OUTCOME] = "answered" if answered["infcode"] == 0 else "refused"
                return response
            if infno == "2207":
                kind, record = "claim", national.claim_2207(msgid, fixmedins_code, data, parsed.get("inf_time"))
            else:
                kind, record = "reversal", await self._reversal(msgid, fixmedins_code, data, parsed.get("inf_time"))
            value = self.catalog.encode("Claim" if kind == "claim" else "Reversal", record)
        except Refused as error:
            return _json(national.refusal(str(error)))
        except EncodeError as error:
            return _json(national.refusal(f"input.data: {error}"))
        return _json(await self.settle(fixmedins_code, msgid, kind, record, value))

    async def ask(self, infno: str, fixmedins_code: str, data: dict, inf_time) -> dict:
        """2206 or 5206: a question on `inquiries` under a fresh id, answered from settlement's state
        with nothing written; no answer in time is said so (asking again is harmless)."""
        ident = "q-" + secrets.token_hex(16)
        if infno == "2206":
            kind, name, record = "presettlement", "Claim", national.claim_record(ident, fixmedins_code, data, inf_time)
        else:
            kind, name, record = "accumulator-query", "AccumulatorQuery", national.query_5206(ident, data, inf_time)
        try:
            value = self.catalog.encode(name, record)
        except EncodeError as error:
            return national.refusal(f"input.data: {error}")
        future = self.replies.expect(ident)
        topic = self.settings.topics.inquiries
        try:
            result_kind, result = await asyncio.wait_for(
                self._publish_and_wait(record["psn_no"].encode(), value, kind, future, topic),
                self.settings.gateway_wait_seconds)
        except asyncio.TimeoutError:
            return national.refusal(national.UNANSWERED)
        except KafkaError as error:
            log.warning("gateway: could not publish %s: %s", ident, error)
            return national.refusal(f"Kafka did not take the request ({type(error).__name__}); ask again")
        except ValueError as error:
            return national.refusal(f"{error}; ask again")
        finally:
            self.replies.forget(ident, future)
        return national.presettled(result_kind, result) if infno == "2206" else national.accumulated(result_kind, result)

    def _setl_key(self, setl_id: str) -> str:
        return f"{self.settings.key_prefix}:gw:setl:{setl_id}"

    async def _reversal(self, msgid: str, fixmedins_code: str, data: dict, inf_time) -> dict:
        """2208 by setl_id (a settlement the gateway answered, found in Redis) or by orig_claim_id."""
        setl_id, orig = national.original_2208(fixmedins_code, data)
        if setl_id is not None:
            known = json.loads(await self.redis.get(self._setl_key(setl_id)) or "null")
            if known is None:
                raise Refused(f"input.data.setl_id: {setl_id} is not a settlement this gateway answered "
                              "(give orig_claim_id)")
            if known["fixmedins_code"] != fixmedins_code:
                raise Refused(f"input.data.setl_id: {setl_id} was not settled for {fixmedins_code}")
            orig = known["claim_id"]
        return national.reversal_2208(msgid, fixmedins_code, data, inf_time, orig)

    async def settle(self, fixmedins_code: str, msgid: str, kind: str, record: dict, value: bytes) -> dict:
        key, digest, ident = self._msg_key(fixmedins_code, msgid), national.digest(record), record["claim_id"]
        ttl = int(self.settings.gateway_answer_ttl_seconds)
        first = await self.redis.set(key, json.dumps({"digest": digest}), nx=True, ex=ttl)
        if not first:
            stored = json.loads(await self.redis.get(key) or "{}")
            if stored.get("digest", digest) != digest:
                return national.refusal(f"msgid {msgid} was used before for another request")
            if "answer" in stored:
                return stored["answer"]
        # First time, or asked again while pending: the identical claim (again). Settlement answers a
        # resend with the identical result and settles nothing twice.
        future = self.replies.expect(ident)
        try:  # sending and the result within one wait: a broker that does not answer is "pending" too
            result_kind, result = await asyncio.wait_for(self._publish_and_wait(record["psn_no"].encode(), value, kind,
                                                                                future),
                                                         self.settings.gateway_wait_seconds)
        except asyncio.TimeoutError:  # its result, when it comes, is kept all the same
            self.replies.keep_late(ident, lambda outcome: self._keep(fixmedins_code, msgid, digest, record, outcome))
            return national.pending(ident)
        except KafkaError as error:  # refused at once (no broker, not authorised): say so, retry is safe
            log.warning("gateway: could not publish %s: %s", ident, error)
            return national.refusal(f"Kafka did not take the request ({type(error).__name__}); ask again with the "
                                    "same msgid")
        except ValueError as error:  # a result this gateway cannot decode (a newer schema, say)
            return national.refusal(f"{error}; ask again with the same msgid")
        finally:
            self.replies.forget(ident, future)
        return await self._store(fixmedins_code, msgid, digest, record, result_kind, result)

    async def _store(self, fixmedins_code: str, msgid: str, digest: str, record: dict, result_kind: str,
                     result: dict) -> dict:
        """The answer to a msgid kept for asking again, and a settlement's setl_id for a 2208."""
        ident, ttl = record["claim_id"], int(self.settings.gateway_answer_ttl_seconds)
        answer = national.settled(result_kind, result)
        pipe = self.redis.pipeline(transaction=False)  # one round trip
        if result_kind == "settlement":  # a 2208 names it by setl_id
            found = {"claim_id": ident, "psn_no": record["psn_no"], "fixmedins_code": fixmedins_code}
            pipe.set(self._setl_key(result["setl_id"]), json.dumps(found), ex=ttl)
        pipe.set(self._msg_key(fixmedins_code, msgid), json.dumps({"digest": digest, "answer": answer}), ex=ttl)
        await pipe.execute()
        return answer

    async def _keep(self, fixmedins_code: str, msgid: str, digest: str, record: dict, outcome: tuple) -> None:
        """A late result kept (the reply loop's task): Redis away loses only this keeping, not the
        claim (asked again, it is sent again and answered)."""
        try:
            await self._store(fixmedins_code, msgid, digest, record, *outcome)
        except Exception as error:  # told (and Redis watched) as a request's failure is; nobody to answer
            failures.answer(error, self.watch)

    async def _publish_and_wait(self, key: bytes, value: bytes, kind: str, future: asyncio.Future,
                                topic: str | None = None):
        await self._publish(key, value, kind, topic or self.settings.topics.claims)
        return await asyncio.shield(future)

    async def _publish(self, key: bytes, value: bytes, kind: str, topic: str) -> None:
        headers = self.key.headers(topic, key, kind, value) if self.key else [(TYPE_HEADER, kind.encode())]
        await self.producer.send_and_wait(topic, value, key=key, headers=headers)

    async def openapi(self, _request: web.Request) -> web.Response:
        return _json(OPENAPI)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/", self.handle)
        app.router.add_get("/openapi.json", self.openapi)
        return app


def _outcome(response: web.Response) -> str:
    """The answers counted on /metrics (gongji_outputs by kind): settled, pending, refused, unauthenticated,
    answered (a 2206 or 5206), failed (gateway.failures)."""
    if response.status == 401:
        return "unauthenticated"
    if response.status >= 500:  # gateway.failures: Redis away, a deadline, a bug
        return "failed"
    if OUTCOME in response:
        return response[OUTCOME]
    document = json.loads(response.text)
    if document["infcode"] == 0:
        return "settled"
    return "pending" if document["err_msg"] == national.PENDING else "refused"


def _json(document: dict, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(document, ensure_ascii=False), status=status,
                        content_type="application/json", charset="utf-8")


@dataclass
class Running:
    url: str
    gateway: Gateway
    runner: web.AppRunner
    metrics_server: object = None

    async def stop(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        await self.runner.cleanup()
        await self.gateway.watch.stop()
        await self.gateway.replies.stop()
        await self.gateway.producer.stop()
        await self.gateway.redis.aclose()


async def start_gateway(settings: Settings, catalog: SchemaCatalog | None = None) -> Running:
    """The gateway listening on gateway_host:gateway_port (0: a free port), its reply consumer
    positioned first."""
    if settings.gateway_callers_file is None:
        raise ValueError("GONGJI_GATEWAY_CALLERS_FILE: the callers' keys file is required (README, \"Gateway\")")
    callers = load_callers(settings.gateway_callers_file, settings.gateway_clock_skew_seconds)
    catalog = catalog or SchemaCatalog()
    # claims and settlements with their partitions, before any client could have them auto-created
    await ensure_service_topics(settings, service_topics(settings.topics, "gateway"))
    metrics = Metrics("gateway")
    replies = Replies(settings, catalog, metrics)
    await replies.start()
    producer = kafka.producer(settings, linger_ms=0)
    await producer.start()
    gateway = Gateway(settings, callers, catalog, replies, producer, client_for(settings), signer(settings))
    runner = web.AppRunner(gateway.app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port)
    await site.start()
    host, port = runner.addresses[0][:2]
    metrics_server = None
    if settings.metrics_port:  # /metrics and /healthz (200 while the reply consumer turns)
        metrics_server = serve(metrics, settings.metrics_host, settings.metrics_port, settings.stall_seconds,
                               settings.metrics_token_value())
    return Running(f"http://{host}:{port}/", gateway, runner, metrics_server)


OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "Gongji gateway", "version": "1",
             "description": "The national interface's envelope at one address; infno inside. Served: 2206 (pre-settlement, "
                            "nothing changed), 2207 (settlement), 2208 (reversal by setl_id or orig_claim_id), 5206 "
                            "(a person's accumulators for a year)."},
    "paths": {"/": {"post": {
        "summary": "One national-interface request {infno, msgid, fixmedins_code, inf_time, input: {data}}",
        "parameters": [{"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
                       for name in ("X-Gongji-Caller", "X-Gongji-Timestamp", "X-Gongji-Signature")],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["infno", "msgid", "fixmedins_code", "input"],
            "properties": {"infno": {"type": "string", "enum": list(national.SUPPORTED)},
                           "msgid": {"type": "string", "pattern": national.MSGID.pattern},
                           "fixmedins_code": {"type": "string"},
                           "inf_time": {"type": "string", "description": "yyyy-MM-dd HH:mm:ss, Asia/Shanghai"},
                           "input": {"type": "object", "properties": {"data": {"type": "object"}}}}}}}},
        "responses": {code: {"description": text, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"infcode": {"type": "integer", "enum": [0, -1]},
                                             "err_msg": {"type": "string"}, "output": {"type": "object"}}}}}}
                      for code, text in (("200", "settled (infcode 0), refused or pending (infcode -1)"),
                                         ("401", "unauthenticated"), ("403", "not this caller's institution"))},
    }}},
}
