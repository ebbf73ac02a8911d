"""`gongji tail TOPIC`: any Gongji topic decoded to JSON lines on standard output.

Each record as `{"event_type": …, …fields}` (the `gongji-type` header, else its record's kind),
money as strings with their places, bytes as hex: on `settlements`, the lines `gongji replay`
prints. By default it follows from the end; `--from-beginning` reads what the topic holds and stops
at the end found on starting (`--follow`: and goes on); `--until-idle S` stops once nothing came
for S seconds; `--id` keeps the records about one claim or credit.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import IO, Any

from aiokafka import TopicPartition

from gongji.common import kafka
from gongji.common.avro import DecodeError, SchemaCatalog
from gongji.contract.topics import Topics
from gongji.contract.wire import ID_HEADER, RECORD_INPUTS, RECORD_OUTPUTS, TYPE_HEADER, header
from gongji.settings import Settings
from gongji.settlement.codec import json_ready

#: The fields that name what a record is about, for `--id`.
ID_FIELDS = ("claim_id", "credit_id", "orig_claim_id", "setl_id", "orig_setl_id", "signal_id", "statement_id")


class TailError(RuntimeError):
    """The topic cannot be read (unknown name, never created)."""


def topic_name(settings: Settings, name: str) -> str:
    """A Gongji topic by its name in CONTRACT.md ("settlements", "registry.persons", "dead-letters"),
    with the configured prefix; or already prefixed."""
    known = {plain: getattr(settings.topics, field) for field, plain in Topics().model_dump().items()}
    if name in known:
        return known[name]
    if name in known.values():
        return name
    raise TailError(f"no Gongji topic {name!r}; one of {', '.join(known)}")


def as_json(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """One decoded record as a JSON-ready dict: its kind first, decimals as text, bytes as hex."""
    def ready(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return value.hex()
        if isinstance(value, dict):
            return {key: ready(item) for key, item in value.items()}
        if isinstance(value, list):
            return [ready(item) for item in value]
        return value
    return {"event_type": kind, **ready(json_ready(data))}


def kind_of(name: str, message_headers) -> str:
    value = header(message_headers, TYPE_HEADER)
    if value:
        return value.decode("utf-8", "replace")
    return RECORD_OUTPUTS.get(name) or RECORD_INPUTS.get(name) or name


def about(data: dict[str, Any], message_headers, ident: str) -> bool:
    """Whether a record concerns the claim or credit `ident`."""
    own = header(message_headers, ID_HEADER)
    return (own is not None and own.decode("utf-8", "replace") == ident) or any(
        data.get(name) == ident for name in ID_FIELDS)


async def tail(settings: Settings, topic: str, out: IO[str], *, from_beginning: bool = False,
               follow: bool = False, until_idle: float | None = None, ident: str | None = None,
               errors: IO[str] = sys.stderr) -> int:
    """Print the records; returns how many were printed."""
    catalog = SchemaCatalog()
    consumer = kafka.consumer(settings, None, enable_auto_commit=False)
    await consumer.start()
    printed = 0
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()  # metadata of a topic no one asked for yet
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise TailError(f"topic {topic} does not exist (yet) on {settings.kafka_bootstrap_servers}")
        assigned = [TopicPartition(topic, number) for number in sorted(partitions)]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        else:
            for partition in assigned:
                consumer.seek(partition, ends[partition])
            follow = True
        stop_at_end = not follow and until_idle is None
        last = time.monotonic()
        while True:
            if stop_at_end and all([await consumer.position(p) >= ends[p] for p in assigned]):
                return printed
            if until_idle is not None and time.monotonic() - last >= until_idle:
                return printed
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                last = time.monotonic()
                for message in messages:
                    printed += _print(catalog, message, out, ident, errors)
    finally:
        await consumer.stop()


def _print(catalog: SchemaCatalog, message, out: IO[str], ident: str | None, errors: IO[str]) -> int:
    try:
        name, data = catalog.decode(message.value)
    except DecodeError as error:
        print(f"{message.topic}[{message.partition}]@{message.offset}: not decoded ({error}); skipped", file=errors)
        return 0
    if ident is not None and not about(data, message.headers, ident):
        return 0
    out.write(json.dumps(as_json(kind_of(name, message.headers), data), ensure_ascii=False) + "\n")
    out.flush()
    return 1


def command(args, resolve) -> None:
    settings = resolve()
    try:
        asyncio.run(tail(settings, topic_name(settings, args.topic), sys.stdout, from_beginning=args.from_beginning,
                         follow=args.follow, until_idle=args.until_idle, ident=args.id))
    except TailError as error:
        sys.exit(f"gongji: tail: {error}")
    except KeyboardInterrupt:
        return None
