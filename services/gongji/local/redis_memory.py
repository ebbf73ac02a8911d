"""What settlement's state costs in Redis: bytes per settled claim and per person, for `gongji bench`.

Every key of the run's prefix is sized with MEMORY USAGE (the key, its value and the server's
overhead for both, as the server counts them) and sorted by what it is (redis_store's key layout).
A claim costs its record (a field of its person's `{psn}:recs`, or in the first layout a key
`{psn}:rec:c:<id>`) and its id (a field of a bucket `ids:<n>`, or a key `id:c:<id>`); a hash of
both claims and credits is shared between them by their number of fields. A person costs their
state hash and their holds. INFO memory's used_memory, read before and after the settling, is the
cross-check: it counts what MEMORY USAGE cannot see (the keyspace's own tables, fragmentation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gongji.common.redis import deadline, primaries

# What a key is, by the part after "<prefix>:": the settlement store's layout (redis_store.py).
# "records" and "id bucket" are hashes of both claims and credits, shared out by Footprint.share.
KINDS = ("claim record", "credit record", "claim id", "credit id", "state", "holds", "other")
SHARED = ("records", "id bucket")


def kind_of(key: bytes, prefix: str) -> str | None:
    """The kind of one key of `prefix`, or None for a key that is not settlement's (clearing's)."""
    rest = key[len(prefix) + 1:] if key.startswith(prefix.encode() + b":") else None
    if rest is None or rest.startswith((b"{clr:", b"clr:")):
        return None
    if rest.startswith(b"ids:"):
        return "id bucket"
    if rest.startswith(b"id:"):
        return "credit id" if rest.startswith(b"id:k:") else "claim id"
    if rest.startswith(b"{"):
        # "{<escaped psn>}:<suffix>": the psn may hold an escaped brace, so find the last "}:"
        suffix = rest[rest.rfind(b"}:") + 2:] if b"}:" in rest else b""
        if suffix == b"recs":
            return "records"
        if suffix.startswith(b"rec:c:"):
            return "claim record"
        if suffix.startswith(b"rec:k:"):
            return "credit record"
        if suffix in (b"state", b"holds"):
            return suffix.decode()
    return "other"


@dataclass
class Footprint:
    """Bytes and key counts by kind, and used_memory around the settling."""

    bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    keys: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    used_before: int | None = None
    used_after: int | None = None

    def add(self, kind: str, size: int) -> None:
        self.bytes[kind] += size
        self.keys[kind] += 1

    def share(self, kind: str, size: int, fields: list[bytes]) -> None:
        """A hash of claims' and credits' records ("records") or ids ("id bucket"): its bytes split
        between the two by their number of fields, each field counted as one record or id."""
        claims = sum(1 for name in fields if name.startswith(b"c:"))
        credits = len(fields) - claims
        claim_kind, credit_kind = ("claim record", "credit record") if kind == "records" else ("claim id", "credit id")
        for part, count in ((claim_kind, claims), (credit_kind, credits)):
            if count:
                self.bytes[part] += size * count / len(fields)
                self.keys[part] += count

    @property
    def claims(self) -> int:
        return self.keys["claim record"]

    @property
    def persons(self) -> int:
        return self.keys["state"]

    def per_claim(self) -> float | None:
        """A settled claim's (or reversal's) record and id key, on average."""
        return (self.bytes["claim record"] + self.bytes["claim id"]) / self.claims if self.claims else None

    def per_person(self) -> float | None:
        """A person's state hash (registry entry, balance, accumulators) and holds, on average."""
        return (self.bytes["state"] + self.bytes["holds"]) / self.persons if self.persons else None

    def summary(self) -> str:
        claim, person = self.per_claim(), self.per_person()
        parts = [f"{claim:,.0f} bytes per settled claim (record {self.bytes['claim record'] / self.claims:,.0f}, "
                 f"id key {self.bytes['claim id'] / self.claims:,.0f}; {self.claims:,} claims)" if claim else "no claims",
                 f"{person:,.0f} bytes of state per person ({self.persons:,} persons)" if person else "no persons"]
        if self.used_before is not None and self.used_after is not None and self.claims:
            parts.append(f"used_memory grew {(self.used_after - self.used_before) / self.claims:,.0f} bytes a claim")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "keys": self.keys, "per_claim": self.per_claim(), "per_person": self.per_person(),
                "used_memory": [self.used_before, self.used_after]}


async def used_memory(client) -> int:
    """INFO memory's used_memory, summed over the primaries (one, outside a cluster)."""
    total = 0
    for node in await primaries(client):
        async with deadline():
            total += int((await node.info("memory"))["used_memory"])
        if node is not client:
            await node.aclose()
    return total


async def measure(client, prefix: str, footprint: Footprint | None = None) -> Footprint:
    """Size every settlement key of `prefix` (SCAN, then MEMORY USAGE pipelined, all samples)."""
    footprint = footprint or Footprint()
    for node in await primaries(client):
        keys = [(key, kind) async for key in node.scan_iter(match=f"{prefix}:*", count=1000)
                if (kind := kind_of(key, prefix)) is not None]
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            async with deadline():
                async with node.pipeline(transaction=False) as pipe:
                    for key, _ in chunk:
                        pipe.execute_command("MEMORY USAGE", key, "SAMPLES", 0)
                    for key, kind in chunk:
                        if kind in SHARED:
                            pipe.hkeys(key)
                    replies = await pipe.execute()
            sizes, fields = replies[:len(chunk)], iter(replies[len(chunk):])
            for (_, kind), size in zip(chunk, sizes):
                if kind in SHARED:
                    footprint.share(kind, int(size or 0), next(fields))
                else:
                    footprint.add(kind, int(size or 0))
        if node is not client:
            await node.aclose()
    return footprint
