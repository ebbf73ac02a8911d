"""`gongji catalogue load FILE…`: the centre's catalogue (就医地目录), a CSV the operator keeps, put on
the compacted `registry.catalogue` topic, one record per version of an item.

The file: UTF-8 (a spreadsheet's byte-order mark is fine), a header row naming the columns in any
order, then one row per version of an item in a region's catalogue:

| column | required | what |
|---|---|---|
| `admdvs` | yes | the region whose catalogue it is (6 digits): the treatment region of the claims it classifies |
| `med_list_codg` | yes | the item code fee lines carry |
| `begndate` | yes | first day in force, yyyy-MM-dd |
| `enddate` | no | last day in force, included; empty: until further notice |
| `chrgitm_lv` | yes | 01, 02, 03 (or 甲, 乙, 丙) |
| `selfpay_prop` | no | 乙类 only: the self-pay share, 0 to 1, at most 4 places |
| `pric_uplmt_amt` | no | 甲类 and 乙类: the limit price in yuan, at most 6 places |
| `vali_flag` | no | 1 (default) valid; 0 withdraws the version loaded before under the same region, item and begndate |
| `hilist_name` | no | the item's name, for people |

Every row is validated as settlement will read it (gongji.settlement.catalogue.CatalogueItem); a bad
row is one line on standard error, `line N: …; not sent`, and the good rows still go. An unknown or
missing column stops the file before anything is sent. A good row is encoded, keyed
(`<admdvs>:<med_list_codg>:<begndate>`, so a row loaded again replaces its version) and signed as
every input is (gongji.local.launch.encode), then sent; by default the command returns once the
settlement group has taken the rows, so claims sent after it are classified by them.
"""

from __future__ import annotations

import asyncio
import csv
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aiokafka import TopicPartition
from pydantic import ValidationError

from gongji.common import kafka
from gongji.common.avro import SchemaCatalog
from gongji.common.signing import signer
from gongji.local.launch import encode
from gongji.settings import Settings
from gongji.settlement.catalogue import CatalogueItem
from gongji.settlement.codec import describe, to_wire

COLUMNS = ("admdvs", "med_list_codg", "begndate", "enddate", "chrgitm_lv", "selfpay_prop", "pric_uplmt_amt",
           "vali_flag", "hilist_name")
REQUIRED = ("admdvs", "med_list_codg", "begndate", "chrgitm_lv")
LEVEL_NAMES = {"甲": "01", "乙": "02", "丙": "03", "甲类": "01", "乙类": "02", "丙类": "03"}


class CatalogueFileError(ValueError):
    """The file cannot be read as a catalogue at all (not UTF-8, no header, a column unknown or missing)."""


@dataclass
class Tally:
    good: int = 0
    refused: int = 0
    by_region: dict[str, int] = field(default_factory=dict)

    def line(self, sent: bool) -> str:
        regions = ", ".join(f"{region} {count}" for region, count in sorted(self.by_region.items()))
        return (f"gongji catalogue load: {self.good} {'sent' if sent else 'good'} ({regions or 'none'}), "
                f"{self.refused} refused" + ("" if sent else "; --check: nothing sent"))


def _level(value: str | None) -> str | None:
    if value in ("1", "2", "3"):
        raise ValueError(f"must be 01, 02 or 03 (or 甲, 乙, 丙), not {value!r}: did a spreadsheet "
                         "drop the leading zero?")
    return LEVEL_NAMES.get(value, value) if value is not None else None


def items(text: str) -> Iterator[tuple[int, CatalogueItem | str]]:
    """(line number, the row's item or what is wrong with it) for each row of a catalogue file's text.
    Raises CatalogueFileError for a header it cannot use."""
    reader = csv.reader(text.splitlines(keepends=True))
    header = next((row for row in reader if any(cell.strip() for cell in row)), None)
    if header is None:
        raise CatalogueFileError("no header row; the first line names the columns: " + ",".join(COLUMNS))
    names = [name.strip().lower() for name in header]
    unknown = [name for name in names if name not in COLUMNS]
    missing = [name for name in REQUIRED if name not in names]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if unknown or missing or repeated:
        problems = ([f"unknown column(s) {', '.join(map(repr, unknown))}"] if unknown else []) + \
                   ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                   ([f"repeated column(s) {', '.join(repeated)}"] if repeated else [])
        raise CatalogueFileError(f"line {reader.line_num}: {'; '.join(problems)} (the columns: {', '.join(COLUMNS)})")
    first: dict[str, int] = {}  # record key → the line that had it
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            yield number, f"{len(row)} cells, the header has {len(names)}"
            continue
        data = {name: cell for name, cell in zip(names, row) if cell != ""}  # empty: the default
        try:
            data["chrgitm_lv"] = _level(data.get("chrgitm_lv"))
            item = CatalogueItem.model_validate(data)
        except ValidationError as error:  # the row's own checks name no field: their message does
            yield number, re.sub(r"(^|; )event: ", r"\1", describe(error)).replace("Value error, ", "")
            continue
        except ValueError as error:
            yield number, f"chrgitm_lv: {error}"
            continue
        if item.key in first:
            yield number, (f"repeats line {first[item.key]}: region {item.admdvs}, item {item.med_list_codg}, "
                           f"begndate {item.begndate}")
            continue
        first[item.key] = number
        yield number, item


def read_file(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CatalogueFileError(error.strerror or str(error)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CatalogueFileError(f"not UTF-8 (byte {error.start})") from None


def validated(paths: list[Path], errors: IO[str], tally: Tally) -> list[CatalogueItem]:
    """The good rows of every file, each bad one said on `errors` (with the file's name when there
    are several files); a file that cannot be read at all is said and counted as refused."""
    good: list[CatalogueItem] = []
    seen: dict[str, str] = {}
    for path in paths:
        where = f"{path}: " if len(paths) > 1 else ""
        try:
            rows = list(items(read_file(path)))
        except CatalogueFileError as error:
            print(f"{path}: {error}; nothing sent from it", file=errors)
            tally.refused += 1
            continue
        for number, item in rows:
            if isinstance(item, CatalogueItem) and item.key in seen:
                item = f"repeats {seen[item.key]}"
            if isinstance(item, str):
                print(f"{where}line {number}: {item}; not sent", file=errors)
                tally.refused += 1
                continue
            seen[item.key] = f"{where}line {number}"
            good.append(item)
            tally.good += 1
            tally.by_region[item.admdvs] = tally.by_region.get(item.admdvs, 0) + 1
    return good


async def load(good: list[CatalogueItem], settings: Settings, wait: bool = True) -> None:
    """Send the items to registry.catalogue, signed with the configured key; with `wait`, return
    once the settlement group has taken them."""
    from gongji.local.publish import Group

    rows = encode(SchemaCatalog(), settings, [("catalogue", to_wire(item)) for item in good], signer(settings))
    producer = kafka.producer(settings)
    await producer.start()
    try:
        deliveries = [await producer.send(topic, value, key=key, headers=headers)
                      for topic, key, value, _ident, headers in rows]
        sent: dict[TopicPartition, int] = {}
        for metadata in await asyncio.gather(*deliveries):
            partition = TopicPartition(metadata.topic, metadata.partition)
            sent[partition] = max(sent.get(partition, 0), metadata.offset + 1)
    finally:
        await producer.stop()
    if wait and sent:
        group = Group(settings)
        try:
            await group.taken_up_to(sent)
        finally:
            await group.close()


def command(args, resolve) -> int:
    """`gongji catalogue load FILE…`: 0 when every row went (or, with --check, is good), 1 otherwise."""
    from gongji.local.publish import PublishError

    tally = Tally()
    good = validated([Path(name) for name in args.files], sys.stderr, tally)
    if good and not args.check:
        try:
            asyncio.run(load(good, resolve(), wait=not args.no_wait))
        except PublishError as error:
            sys.exit(f"gongji: catalogue load: {error}")
    print(tally.line(sent=not args.check), file=sys.stderr)
    return 1 if tally.refused else 0
