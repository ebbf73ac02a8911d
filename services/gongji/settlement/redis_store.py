"""The settlement store on Redis (or Valkey, or Redis Cluster): what the streaming service uses.

Keys (every per-person key carries the `{psn_no}` hash tag, so one person's keys share a slot and
the scripts run unchanged on Redis Cluster):
    <prefix>:{psn}:state        hash: ver (token), balc, "<year>:<accumulator>" fields, all fen;
                                "person", the registry entry (packed.dump_person), so one HGETALL reads both;
                                "pending:<claim id>" -> holder, while a family-account hold awaits its commit;
                                "from", the first year kept (settlement/window.py), once a year was closed
    <prefix>:{psn}:recs         hash: event key ("c:<claim id>", "k:<credit id>") -> the event's record
                                (packed.value: year, fingerprint, packed data, and a reversal's mark)
    <prefix>:{psn}:holds        hash: "<patient>:<claim id>" -> fen held from this account (家庭共济)
Ids inside keys and fields are escaped (store.escape: a backslash before each backslash, colon and brace) where
another part follows them, so no two different (person, claim) pairs share a key or a field; an id
without those characters is written as it is.
    <prefix>:inst:<code>        registry entry (JSON)
    <prefix>:cat:<admdvs>:<item> hash: begndate -> one version of the region's catalogue entry (JSON)
    <prefix>:ids:<n>            hash: event key -> owner (the first 8 bytes of blake2b of the person's
                                psn_no), one of ID_BUCKETS buckets by the key's CRC-32; an entry goes
                                when the reversal window closes its record's year (commit.lua names them)
    <prefix>:tpl                hash: template id -> a setl_proc_info template (settlement/lean.py), shared
                                by every record; written before the records that name it
    <prefix>:layout             "2" once `upgrade` has moved what the first layout left: a key per
                                record `{psn}:rec:<event key>` (fp, data, reversed_by) and a key per id
                                `id:<event key>` (the owner's psn_no)
    <prefix>:seen:{<n>}:<group> hash: "<topic>:<partition>" -> the next offset whose effects are here
                                (SeenMarkers)
Reads are pipelined per batch; the writes are the Lua scripts in lua/, registered once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import importlib.resources
import zlib

import orjson

from gongji.common.redis import Durability, Lane, LuaScript, deadline, primaries, run_pipeline
from gongji.settlement import lean, packed
from gongji.settlement.catalogue import CatalogueItem, stored_item
from gongji.settlement.state_hash import parse_state, state_fields
from gongji.settlement.events import Institution, Person
from gongji.settlement.store import Along, Commit, Hold, HolderView, Snapshot, Status, escape, hold_field, unescape

TEMPLATE_SECONDS = 5.0
# Never change: an id is looked up in the bucket its key hashes to (a rebuild would move them all).
ID_BUCKETS = 4096
_STATUS = {b"ok": Status.OK, b"stale": Status.STALE, b"duplicate": Status.DUPLICATE, b"short": Status.SHORT}


def _script(name: str) -> str:
    return importlib.resources.files("gongji.settlement").joinpath("lua", name).read_text(encoding="utf-8")


def owner_hash(psn_no: str) -> bytes:
    """What the id buckets keep of an event's owner: 8 bytes of the psn_no's hash (no personal id in
    the index; two persons' ids collide with odds of 2^-64 per pair of uses of one id)."""
    return hashlib.blake2b(psn_no.encode(), digest_size=8).digest()


def stored_institution(raw: bytes) -> Institution:
    """An institution as accepted when written (see packed.load_person)."""
    return Institution.model_construct(**orjson.loads(raw))


class RedisStore:
    """SettlementStore on a redis.asyncio client: Redis, Valkey, or a Redis Cluster (RedisCluster)."""

    def __init__(self, client, prefix: str = "gj", timeout: float = 10.0):
        self.client = client
        self.prefix = prefix
        self.timeout = timeout  # for each round trip; a hung server fails the batch, which is retried
        self._commit = LuaScript(_script("commit.lua"))
        self._hold = LuaScript(_script("hold.lua"))
        self._own = LuaScript(_script("own.lua"))
        self._disown = LuaScript(_script("disown.lua"))
        self._templates = LuaScript(_script("templates.lua"))
        self._confirmed: dict[int, float] = {}  # template id → when this store last wrote or found it
        self._lane = Lane(client)

    async def _run(self, build, along: Along | None = None) -> list:
        scripts = (self._commit, self._hold, self._own, self._disown, self._templates)
        if along is None:
            return await run_pipeline(self.client, build, scripts, self.timeout, lean=self._lane)
        count = 0

        def both(pipe):
            nonlocal count
            build(pipe)
            count = along.queue(pipe)
        replies = await run_pipeline(self.client, both, scripts + along.scripts, self.timeout, lean=self._lane)
        cut = len(replies) - count
        along.take(replies[cut:])
        return replies[:cut]

    async def upgrade(self) -> int:
        """Move what the first layout left into the records hashes and the id buckets, once (the
        service runs it before it consumes, so its hot path reads one layout). A move is HSETNX,
        then the old key goes: a crash halfway is finished by the next start. Returns how many keys
        moved. Stop the services of the first layout first: what they write after it is not read."""
        layout = f"{self.prefix}:layout"
        async with deadline(self.timeout):
            if await self.client.get(layout) == b"2":
                return 0
        moved = 0
        records, ids = f"{self.prefix}:{{".encode(), f"{self.prefix}:id:".encode()
        for node in await primaries(self.client):
            keys = [key async for key in node.scan_iter(match=f"{self.prefix}:*", count=1000)
                    if (key.startswith(records) and b"}:rec:" in key) or key.startswith(ids)]
            for start in range(0, len(keys), 500):
                moved += await self._move(keys[start:start + 500], len(records), len(ids))
            if node is not self.client:
                await node.aclose()
        async with deadline(self.timeout):
            await self.client.set(layout, "2")
        return moved

    async def _move(self, keys: list[bytes], records: int, ids: int) -> int:
        def read(pipe):
            for key in keys:
                if key[records - 1:records] == b"{":
                    pipe.hgetall(key)
                else:
                    pipe.get(key)
        values = await self._run(read)

        def write(pipe):
            for key, value in zip(keys, values):
                if not value:
                    continue
                text = key.decode()
                if key[records - 1:records] == b"{":  # "<prefix>:{<escaped psn>}:rec:<event key>"
                    cut = text.index("}:rec:", records)
                    psn, event_key = unescape(text[records:cut]), text[cut + 6:]
                    record = packed.load(value, psn, event_key.split(":", 1)[1])
                    mark = b"\n" + record.reversed_by.encode() if getattr(record, "reversed_by", None) else b""
                    pipe.hsetnx(self._key(psn, "recs"), event_key, packed.value(record, psn, event_key.split(":", 1)[1])
                                + mark)
                else:  # "<prefix>:id:<event key>" -> psn_no
                    pipe.hsetnx(self._ids_key(text[ids:]), text[ids:], owner_hash(value.decode()))
                # execute_command: redis-py's cluster pipeline answers pipe.unlink() with nothing done
                pipe.execute_command("UNLINK", key)
        await self._run(write)
        return sum(1 for value in values if value)

    def _key(self, psn_no: str, suffix: str) -> str:
        return f"{self.prefix}:{{{escape(psn_no)}}}:{suffix}"

    def _ids_key(self, event_key: str) -> str:
        return f"{self.prefix}:ids:{zlib.crc32(event_key.encode()) % ID_BUCKETS}"

    def _institution_key(self, code: str) -> str:
        return f"{self.prefix}:inst:{code}"

    async def wipe(self) -> int:
        """Delete every settlement key of this prefix (the rebuild starts from nothing); clearing's
        positions (`<prefix>:{clr:…}`, `<prefix>:clr:…`) share the prefix and stay. Returns how many."""
        deleted = 0
        clearing = (f"{self.prefix}:{{clr:".encode(), f"{self.prefix}:clr:".encode())
        for node in await primaries(self.client):
            keys = [key async for key in node.scan_iter(match=f"{self.prefix}:*", count=1000)
                    if not key.startswith(clearing)]
            for start in range(0, len(keys), 1000):
                async with deadline(self.timeout):
                    async with node.pipeline(transaction=False) as pipe:
                        for key in keys[start:start + 1000]:
                            pipe.unlink(key)
                        deleted += sum(await pipe.execute())
            if node is not self.client:
                await node.aclose()
        return deleted

    async def put_persons(self, persons: list[Person]) -> None:
        def build(pipe):
            for person in persons:
                pipe.hset(self._key(person.psn_no, "state"), "person", packed.dump_person(person))
        await self._run(build)

    async def put_institutions(self, institutions: list[Institution]) -> None:
        def build(pipe):
            for institution in institutions:
                pipe.set(self._institution_key(institution.fixmedins_code), institution.model_dump_json())
        await self._run(build)

    def _catalogue_key(self, admdvs: str, item: str) -> str:
        return f"{self.prefix}:cat:{admdvs}:{item}"  # admdvs is six digits: the item is the rest

    async def put_catalogue(self, items: list[CatalogueItem]) -> None:
        def build(pipe):
            for item in items:
                pipe.hset(self._catalogue_key(item.admdvs, item.med_list_codg), item.begndate.isoformat(),
                          item.model_dump_json())
        await self._run(build)

    async def read_catalogue(self, wants) -> dict[tuple[str, str], tuple[CatalogueItem, ...]]:
        return (await self.read((), (), (), catalogue=wants)).catalogue

    async def read(self, psn_nos, institution_codes, record_keys, claims=frozenset(), catalogue=frozenset(),
                   holders=frozenset(), along: Along | None = None) -> Snapshot:
        reading = Reading(self, *map(list, (psn_nos, institution_codes, record_keys, claims, catalogue, holders)))
        reading.take(await self._run(reading.queue, along))
        return await reading.snapshot()

    def reading(self, psn_nos, institution_codes, record_keys, claims=frozenset(), catalogue=frozenset(),
                holders=frozenset()) -> "Reading":
        return Reading(self, *map(list, (psn_nos, institution_codes, record_keys, claims, catalogue, holders)))

    async def _records(self, keys: list[tuple[str, str]], values: list[bytes | None]) -> dict:
        """The records read, with the templates they name that this process has not seen yet."""
        records, missing = {}, set()
        for (psn, key), value in zip(keys, values):
            try:
                records[(psn, key)] = packed.load_value(value, psn, key.split(":", 1)[1]) if value is not None else None
            except lean.MissingTemplates as unknown:
                missing |= unknown.ids
        if missing:
            wanted = sorted(missing)
            async with deadline(self.timeout):
                found = await self.client.hmget(f"{self.prefix}:tpl", [str(tid) for tid in wanted])
            lean.remember({tid: text.decode() for tid, text in zip(wanted, found) if text is not None})
            for (psn, key), value in zip(keys, values):
                if (psn, key) not in records:
                    records[(psn, key)] = packed.load_value(value, psn, key.split(":", 1)[1])
        return {key: records[key] for key in keys}

    async def read_holders(self, wants) -> dict[tuple[str, str, str], HolderView]:
        return (await self.read((), (), (), holders=wants)).holders

    async def mark_pending(self, marks: list[tuple[str, str, str]]) -> None:
        def build(pipe):
            for patient, claim_id, holder in marks:
                pipe.hset(self._key(patient, "state"), f"pending:{claim_id}", holder)
        await self._run(build)

    async def hold(self, holds: list[Hold]) -> list[Status]:
        def build(pipe):
            for hold in holds:
                self._hold.queue(pipe, [self._key(hold.holder, "state"), self._key(hold.holder, "holds")],
                                 [hold.field, str(hold.amount), str(hold.expected), str(hold.expected - hold.amount),
                                  hold.token, *(() if hold.holder_token is None else (hold.holder_token,))])
        return [_STATUS[reply] for reply in await self._run(build)]

    async def _values(self, commits: list[Commit]) -> list[bytes]:
        """Each commit's record value, its templates written first unless written or found here in the
        last TEMPLATE_SECONDS (a Redis that lost one since lost markers too: the service refuses, the
        rebuild writes them again). A template whose id another holds is refused, its texts whole."""
        while True:
            used: dict[int, str] = {}
            values = [packed.value(commit.record, commit.psn_no, commit.record_key.split(":", 1)[1], used)
                      for commit in commits]
            now = time.monotonic()
            fresh = {tid: text for tid, text in used.items() if now - self._confirmed.get(tid, -1e9) > TEMPLATE_SECONDS}
            if not fresh:
                return values
            try:
                clashes = (await self._run(lambda pipe: self._templates.queue(
                    pipe, [f"{self.prefix}:tpl"], [item for tid, text in fresh.items() for item in (str(tid), text)])))[0]
            except BaseException:
                self._confirmed.clear()
                raise
            if not clashes:
                self._confirmed = {**(self._confirmed if len(self._confirmed) < 100_000 else {}), **dict.fromkeys(fresh, now)}
                return values
            lean.REFUSED.update(used[int(tid)] for tid in clashes)

    async def commit(self, commits: list[Commit], along: Along | None = None) -> list[Status]:
        values = await self._values(commits)

        def build(pipe):
            for commit, value in zip(commits, values):
                psn = commit.psn_no
                keys = [self._key(psn, "state"), self._key(psn, "recs")]
                event_id = commit.record_key.split(":", 1)[1]
                kept = commit.state.kept_from
                self._commit.queue(pipe, keys, [commit.expected, commit.state.token, commit.record_key, value, event_id,
                                                commit.reverses or "", str(kept) if kept else "",
                                                *state_fields(commit.state, commit.record)])
        statuses, closed = [], []
        for commit, reply in zip(commits, await self._run(build, along)):
            if isinstance(reply, list):  # ok, and the event keys of the records the window closed
                reply, keys = reply[0], reply[1:]
                closed += [(key.decode(), owner_hash(commit.psn_no)) for key in keys]
            statuses.append(_STATUS[reply])
        if closed:  # `along` rides again: on the last round trip
            await self._run(lambda pipe: [self._disown.queue(pipe, [self._ids_key(key)], [key, owner])
                                          for key, owner in closed], along)
        return statuses


class Reading:
    """A read (RedisStore.read) as commands to run in some round trip, then its Snapshot."""

    def __init__(self, store: RedisStore, *lists: list):
        self.store, self.lists, self.scripts, self.replies = store, lists, (store._own,), []

    def queue(self, pipe) -> int:
        store, (psn_list, code_list, key_list, claim_list, wants, holder_list) = self.store, self.lists
        for admdvs, item in wants:
            pipe.hgetall(store._catalogue_key(admdvs, item))
        for psn in psn_list:
            pipe.hgetall(store._key(psn, "state"))
        for code in code_list:
            pipe.get(store._institution_key(code))
        for psn, key in key_list:
            pipe.hget(store._key(psn, "recs"), key)
        for key, psn in claim_list:  # first come, first owner: answers the owner's hash
            store._own.queue(pipe, [store._ids_key(key)], [key, owner_hash(psn)])
        for holder, patient, claim_id in holder_list:  # after the states, as a later round trip did
            pipe.hmget(store._key(holder, "state"), "ver", "balc", "person")
            pipe.hget(store._key(holder, "holds"), hold_field(patient, claim_id))
        return sum(map(len, self.lists)) + len(holder_list)  # two commands a holder

    def take(self, replies: list) -> None:
        self.replies = list(replies)

    async def snapshot(self) -> Snapshot:
        replies, (psn_list, code_list, key_list, claim_list, wants, holder_list) = self.replies, self.lists
        views, cut = {}, len(replies) - 2 * len(holder_list)
        for want, (token, balance, person), held in zip(holder_list, replies[cut::2], replies[cut + 1::2]):
            views[want] = HolderView((token or b"").decode(), int(balance or 0), int(held or 0),
                                     packed.load_person(person, want[0]) if person else None)
        del replies[cut:]
        entries = {want: tuple(stored_item(orjson.loads(raw)) for raw in reply.values())
                   for want, reply in zip(wants, replies)}
        del replies[:len(wants)]
        persons, states = {}, {}
        for psn, raw_state in zip(psn_list, replies):
            raw_person = raw_state.get(b"person")
            persons[psn] = packed.load_person(raw_person, psn) if raw_person else None
            states[psn] = parse_state(raw_state)
        offset = len(psn_list)
        institutions = {code: stored_institution(raw) if raw else None
                        for code, raw in zip(code_list, replies[offset:offset + len(code_list)])}
        offset += len(code_list)
        records = await self.store._records(key_list, replies[offset:offset + len(key_list)])
        offset += len(key_list)
        # another person's hash is all that says "another person" (idempotency.taken names none)
        owners = {key: psn if owner == owner_hash(psn) else "?" + owner.hex()
                  for (key, psn), owner in zip(claim_list, replies[offset:])}
        return Snapshot(persons, institutions, states, records, owners, entries, views)


class SeenMarkers:
    """What Redis holds of the settlement group's inputs: per input partition ("<topic>:<partition>"),
    the next offset whose effects are written, in the hash `<prefix>:seen:{<n>}:<group>`.

    A batch's marker is written after its state (`seal`), in the same round trip as the wait for
    durability, so a Redis that still has a marker has everything before it (the append-only file
    and the replication stream keep write order). On a Redis Cluster every primary keeps its own
    copy (n picks a hash tag in its slots), and a partition's marker is the lowest of them: a node
    that lost its data has lost its copy too.
    """

    def __init__(self, client, prefix: str, group: str, durability: Durability | None = None, timeout: float = 10.0):
        self.client = client
        self.prefix = prefix
        self.group = group
        self.durability = durability or Durability("none")
        self.timeout = timeout
        self._mark = LuaScript(_script("mark.lua"))
        self._nodes: list[tuple[object, str]] | None = None
        self._lanes: dict[int, Lane] = {}  # by id(client) of each node: a batch reads and seals on each
        self._loaded = False

    def _lane(self, client) -> Lane:
        lane = self._lanes.get(id(client))
        if lane is None or lane.client is not client:
            lane = self._lanes[id(client)] = Lane(client)
        return lane

    def key(self, tag: int = 0) -> str:
        return f"{self.prefix}:seen:{{{tag}}}:{self.group}"

    async def nodes(self) -> list[tuple[object, str]]:
        """(client, marker key) per primary."""
        if self._nodes is None:
            clients = await primaries(self.client)
            if len(clients) == 1 and clients[0] is self.client:
                self._nodes = [(self.client, self.key())]
            else:
                wanted = {node.name: node for node in self.client.get_primaries()}
                keys: dict[str, str] = {}
                tag = 0
                while len(keys) < len(wanted):
                    key = self.key(tag)
                    keys.setdefault(self.client.get_node_from_key(key).name, key)
                    tag += 1
                by_address = {f"{c.connection_pool.connection_kwargs['host']}:"
                              f"{c.connection_pool.connection_kwargs['port']}": c for c in clients}
                self._nodes = [(by_address[name], keys[name]) for name in wanted]
        return self._nodes

    async def load(self) -> None:
        """Load the marker's script before it rides on the store's round trips (Riding), or they run twice."""
        if not self._loaded:
            async with deadline(self.timeout):
                await self.client.script_load(self._mark.source)
            self._loaded = True

    async def forget_nodes(self) -> None:
        """After a failure: find the primaries again (a failover, a resharding)."""
        self._loaded = False
        nodes, self._nodes, lanes, self._lanes = self._nodes, None, self._lanes, {}
        for lane in lanes.values():
            await lane.release()
        for client, _ in nodes or ():
            if client is not self.client:
                await client.aclose()

    async def read(self, fields: list[str]) -> dict[str, int | None]:
        """Each field's marker: the lowest over the primaries; None where one lacks it."""
        found: dict[str, int | None] = {}
        for client, key in await self.nodes():
            values = (await run_pipeline(client, lambda pipe: pipe.hmget(key, fields), timeout=self.timeout,
                                         lean=self._lane(client)))[0] if fields else []
            for field, value in zip(fields, values):
                mark = int(value) if value is not None else None
                if field not in found:
                    found[field] = mark
                elif found[field] is not None:
                    found[field] = None if mark is None else min(found[field], mark)
        return found

    async def seal(self, spans: dict[str, tuple[int, int]]) -> list[str]:
        """Move each field's marker to its span's end (first, next) and wait until that is durable;
        returns the fields whose marker was missing or below the span's first offset (state Redis
        has lost), and then writes nothing and waits for nothing. first -1: no marker is needed
        (a partition never settled); -2: set it whatever it is (the rebuild). Raises NotDurable
        when the wait falls short."""
        args = [str(item) for field, (first, nxt) in spans.items() for item in (field, first, nxt)]

        async def one(client, key: str) -> list[str]:  # on each primary at once
            def build(pipe):
                self._mark.queue(pipe, [key], args)
                self.durability.queue(pipe)
            replies = await run_pipeline(client, build, (self._mark,), self.timeout, lean=self._lane(client))
            if not replies[0] and len(replies) > 1:
                self.durability.verify(replies[1])
            return [field.decode() for field in replies[0]]
        found = await asyncio.gather(*(one(client, key) for client, key in await self.nodes()))
        return sorted({field for fields in found for field in fields})

    async def clear(self) -> None:
        for client, key in await self.nodes():
            async with deadline(self.timeout):
                await client.delete(key)
