"""Clearing's positions in Redis.

Exactly-once effect without transactions: each position remembers the settlement ids it has
counted (`lua/apply.lua`, one hash tag per position), so a redelivered or resent result adds
nothing, and a batch split to find a result that fails (gongji.common.poison) counts each result once.

The ids are remembered until their months' year is past clearing's window, by event time: once a
result dated `window` years after a year is counted, that year closes (`<prefix>:clr:closed`, the
first year still open) and its months' ids are forgotten (their positions stay). A result of a
closed month is not counted, since it could not be told from a redelivery (the service
dead-letters it).
"""

from __future__ import annotations

import importlib.resources

from gongji.clearing.domain import FIELDS, Contribution, empty
from gongji.common.redis import LuaScript, deadline, run_pipeline


# KEYS[1] the first open year; ARGV[1] a new one: set if higher. Returns 1 if it moved.
_ADVANCE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


class ClearingStore:
    """Positions on Redis: `<prefix>:{clr:<month>:<treatment>><insured>}:flow|seen`, per month the
    set of pairs with a position, `<prefix>:clr:pairs:<month>`, and the first open year `<prefix>:clr:closed`."""

    def __init__(self, client, prefix: str, timeout: float = 10.0):
        self.client = client
        self.prefix = prefix
        self.timeout = timeout
        self._apply = LuaScript(
            importlib.resources.files("gongji.clearing").joinpath("lua", "apply.lua").read_text("utf-8"))
        self._advance = LuaScript(_ADVANCE)

    def _key(self, ym: str, treatment: str, insured: str, suffix: str) -> str:
        return f"{self.prefix}:{{clr:{ym}:{treatment}>{insured}}}:{suffix}"

    async def apply(self, items: list[Contribution]) -> int:
        """Count each item once; returns how many were new."""
        def build(pipe):
            for item in items:  # the month's index first: a position is never missed at close
                pipe.sadd(f"{self.prefix}:clr:pairs:{item.ym}", f"{item.treatment}>{item.insured}")
            for item in items:
                args = [item.setl_id, item.institution]
                for name, value in item.amounts.items():
                    if value:
                        args += [name, str(value)]
                self._apply.queue(pipe, [self._key(item.ym, item.treatment, item.insured, "seen"),
                                         self._key(item.ym, item.treatment, item.insured, "flow")], args)
        replies = await run_pipeline(self.client, build, (self._apply,), self.timeout)
        return sum(reply == b"ok" for reply in replies[len(items):])

    def _closed_key(self) -> str:
        return f"{self.prefix}:clr:closed"

    async def first_open_year(self) -> int:
        """The first year whose months are still counted (0: none closed)."""
        async with deadline(self.timeout):
            return int(await self.client.get(self._closed_key()) or 0)

    async def close(self, first_open: int) -> list[str]:
        """Close the years before `first_open` (never moving back), then forget the ids remembered for
        their months. Returns the months whose ids were forgotten (once a year: a scan of the months)."""
        [moved] = await run_pipeline(self.client, lambda pipe: self._advance.queue(pipe, [self._closed_key()], [first_open]),
                                     (self._advance,), self.timeout)
        if not moved:
            return []
        months = [ym for ym in await self.months() if int(ym[:4]) < first_open]
        for ym in months:
            async with deadline(self.timeout):
                pairs = await self.client.smembers(f"{self.prefix}:clr:pairs:{ym}")
            if pairs:
                def build(pipe, ym=ym, pairs=pairs):
                    for pair in pairs:
                        # execute_command: redis-py's cluster pipeline answers pipe.unlink() with nothing done
                        pipe.execute_command("UNLINK", self._key(ym, *pair.decode().split(">"), "seen"))
                await run_pipeline(self.client, build, timeout=self.timeout)
        return months

    async def months(self) -> list[str]:
        """The months with a position, in order (a scan: for closing and summing up, not the hot path)."""
        prefix = f"{self.prefix}:clr:pairs:"
        return sorted([key.decode()[len(prefix):] async for key in self.client.scan_iter(match=prefix + "*")])

    async def _flows(self, ym: str) -> list[tuple[tuple[str, str], dict[str, int]]]:
        pairs = sorted(member.decode() for member in await self.client.smembers(f"{self.prefix}:clr:pairs:{ym}"))
        def build(pipe):
            for pair in pairs:
                pipe.hgetall(self._key(ym, *pair.split(">"), "flow"))
        replies = await run_pipeline(self.client, build, timeout=self.timeout)
        return [(tuple(pair.split(">")), {field.decode(): int(value) for field, value in raw.items()})
                for pair, raw in zip(pairs, replies)]

    async def positions(self, ym: str) -> dict[tuple[str, str], dict[str, int]]:
        positions = {}
        for pair, flow in await self._flows(ym):
            position = empty()
            position.update({field: value for field, value in flow.items() if field in FIELDS})
            positions[pair] = position
        return positions

    async def institutions(self, ym: str) -> dict[tuple[str, str, str], dict[str, int]]:
        """Per (treatment region, insured region, fixmedins_code): the institution's share of the
        position (results counted before shares were kept have none)."""
        shares: dict[tuple[str, str, str], dict[str, int]] = {}
        for (treatment, insured), flow in await self._flows(ym):
            for field, value in flow.items():
                if field.startswith("inst:"):
                    code, _, name = field.removeprefix("inst:").rpartition(":")
                    if name in FIELDS:
                        shares.setdefault((treatment, insured, code), empty())[name] = value
        return shares
