"""A producer with a newer schema, a service with the older one: the service finds the writer's
schema on the schemas topic by its fingerprint, with no registry server, and settles the claim."""

from __future__ import annotations

import asyncio
import importlib.resources

from tests.integration.support import CATALOG, as_service, by_claim, collect, settings_for, wait_registered

from gongji.common import kafka
from gongji.common.avro import SchemaCatalog, load_packaged_schema
from gongji.common.redis import client_for
from gongji.common.schemas import SchemaDirectory
from gongji.settlement.policy import load_policy_book
from gongji.settlement.service import SettlementService
from gongji.local.synthetic import Traffic
from tests.integration.support import produce


def newer_catalog() -> SchemaCatalog:
    """The shipped schemas, with Claim grown by one optional field (what a later release adds)."""
    files = [entry.name for entry in importlib.resources.files("gongji.schemas").iterdir()
             if entry.name.endswith(".avsc")]
    schemas = [load_packaged_schema(name) for name in files]
    for schema in schemas:
        if schema["name"] == "Claim":
            schema["fields"].append({"name": "referral_no", "type": ["null", "string"], "default": None,
                                     "doc": "转诊单号, added by a later release"})
    return SchemaCatalog(current=schemas, history=[])


async def test_service_learns_a_newer_writer_schema_from_the_schemas_topic(stack, uniq):
    settings = settings_for(stack, uniq)
    traffic = Traffic(persons=3, seed=9, tag=uniq, family=0.0)
    _, claim = traffic.claim()
    newer = newer_catalog()
    assert newer.fingerprint("Claim") != CATALOG.fingerprint("Claim")
    own = as_service(settings, "settlement")
    client = client_for(own)
    service = SettlementService(own, SchemaCatalog(), load_policy_book(), client)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await produce(settings, traffic.registry())
        await wait_registered(settings, traffic)
        producer = kafka.producer(settings)
        await producer.start()
        try:
            await SchemaDirectory(settings, newer).publish(producer)  # what the newer service does on start
            value = newer.encode("Claim", {**claim, "referral_no": "ZZ-2023-0001"})
            await producer.send_and_wait(settings.topics.claims, value, key=claim["psn_no"].encode())
            # A writer that never published its schema: this one stays a dead letter.
            orphan = SchemaCatalog(current=[{**load_packaged_schema("reversal.avsc"),
                                             "fields": load_packaged_schema("reversal.avsc")["fields"]
                                             + [{"name": "x", "type": "int"}]}], history=[])
            junk = orphan.encode("Reversal", {"claim_id": "R", "orig_claim_id": "C", "psn_no": claim["psn_no"],
                                              "setl_time": "2023-01-01T00:00:00+08:00", "x": 1})
            await producer.send_and_wait(settings.topics.claims, junk, key=claim["psn_no"].encode())
        finally:
            await producer.stop()
        settled = await collect(settings, settings.topics.settlements, lambda rs: claim["claim_id"] in by_claim(rs))
        dead = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await client.aclose()
    result = by_claim(settled)[claim["claim_id"]][0]
    assert "setl_id" in result and result["medfee_sumamt"] > 0
    assert "unknown writer schema fingerprint" in dead[0][1]["reason"]
