"""The raw loop `gongji bench` measures the settlement service against: the least a consumer of the
claims topic must do on these servers, in one process of its own.

`getmany` → decode the real claim records (the service's SchemaCatalog) → trivial arithmetic (the
lines' total in fen; a reversal has none) → one pipelined Lua call per claim (an HINCRBY and a SET, on keys of its own
that the settlement user may write) → one batched produce of a result per claim → commit.
No validation, no policy, no signature check: what is left is Kafka, Avro and Redis client work,
the floor the service's per-claim cost is judged from (issue 12: service ≥ 0.8 × this loop).

The floor of the *same* work writes what the service must write: a record of RECORD_BYTES (the
budget issue 12 gives a settled claim in Redis: a short fingerprint and the effects to restore) and
a result of RESULT_BYTES (the mean Avro-encoded result of the bench's synthetic traffic; a unit test
keeps it within 15 % of what the engine produces), not a few bytes of each.

Its own process: `python -m gongji.local.raw_loop COUNT GROUP OUT_TOPIC`, with the settlement
service's settings in its environment (`Settings.to_env()`); it reads the claims topic from the
start in consumer group GROUP until COUNT claims are done, deletes its Redis keys, and prints one
JSON line: claims, seconds (first batch published to last, as the bench times the service: first
result to last) and the CPU it used meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import orjson

from gongji.common import kafka
from gongji.common.avro import SchemaCatalog
from gongji.common.redis import LuaScript, client_for, run_pipeline
from gongji.settings import Settings

RECORD_BYTES = 200
RESULT_BYTES = 460

SCRIPT = LuaScript("""
local total = redis.call('HINCRBY', KEYS[1], 'fen', ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return total
""")


async def run(settings: Settings, count: int, group: str, out_topic: str) -> dict:
    catalog = SchemaCatalog()
    redis = client_for(settings)
    consumer = kafka.consumer(settings, group, settings.topics.claims)
    producer = kafka.producer(settings)
    await producer.start()
    await consumer.start()
    prefix = settings.key_prefix
    touched: set[str] = set()
    done, first, first_cpu, last = 0, None, 0.0, None
    try:
        while done < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.batch_max_records)
            messages = [message for partition in sorted(batches) for message in batches[partition]]
            if not messages:
                continue
            claims = []
            for message in messages:
                _name, data = catalog.decode(message.value)
                fen = int(sum(line["det_item_fee_sumamt"] for line in data.get("fee_details", ())) * 100)
                claims.append((message.key, data["psn_no"], data["claim_id"], fen))

            def build(pipe):
                for _key, psn_no, claim_id, fen in claims:
                    tag = f"{prefix}:{{raw:{psn_no}}}"
                    touched.update((f"{tag}:holds", f"{tag}:rec:{claim_id}"))
                    SCRIPT.queue(pipe, [f"{tag}:holds", f"{tag}:rec:{claim_id}"], [fen, _sized(f"{claim_id}:{fen}", RECORD_BYTES)])

            await run_pipeline(redis, build, (SCRIPT,))
            sends = await kafka.publish(producer, out_topic, [
                (key, _sized(orjson.dumps({"claim_id": claim_id, "fen": fen}), RESULT_BYTES), []) for key, _p, claim_id, fen in claims])
            await asyncio.gather(*sends)
            await consumer.commit()
            done += len(messages)
            last = time.perf_counter()
            if first is None:
                first, first_cpu = last, time.process_time()
        cpu = time.process_time() - first_cpu
    finally:
        await consumer.stop()
        await producer.stop()
        keys = sorted(touched)
        for start in range(0, len(keys), 1000):  # one key a command: a cluster's keys are on many slots
            await run_pipeline(redis, lambda pipe: [pipe.unlink(key) for key in keys[start:start + 1000]])
        await redis.aclose()
    return {"claims": done, "seconds": (last or 0) - (first or 0), "cpu_seconds": cpu}


def _sized(value: str | bytes, size: int) -> bytes:
    """`value` padded with spaces to `size` bytes (a longer one is kept whole)."""
    data = value.encode() if isinstance(value, str) else value
    return data.ljust(size)


def main(argv: list[str]) -> None:
    count, group, out_topic = int(argv[0]), argv[1], argv[2]
    figures = asyncio.run(run(Settings(), count, group, out_topic))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
