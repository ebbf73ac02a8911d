"""`gongji simulate --policies NEW_DIR FILE`: a what-if policy study. The file is settled twice by
replay's engine (gongji.settlement.replay.replay_lines, the rules the service runs), each time from
the same starting state (empty, or what `--state FILE`'s lines leave under the baseline's policies):
under the baseline policies and under the study's. The results are tallied in one pass
each (gongji.settlement.study_tally) and reported side by side (gongji.settlement.study_report).

A study directory holds, per region it changes, either a whole policy file or a change file: the
region's code and a `[change]` table, laid over each version of the baseline's file for that region
(the rest of it, and every region the study does not name, stay the baseline's). So a study of one
number is a file of three lines, and it follows the shipped policy as that is edited.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import io
import sys
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gongji.contract.wire import DEFAULT_BOUNDS, Bounds
from gongji.settlement.memory_store import MemoryStore
from gongji.settlement.policy import PolicyBook, PolicyError, RegionPolicy, _deep_merge, policy_from_raw
from gongji.settlement.replay import replay_lines
from gongji.settlement.study_tally import Tally

if TYPE_CHECKING:
    from gongji.settings import Settings


def _policy_texts(directory: Path | None) -> list[tuple[str, str]]:
    """(source, text) of each policy file in `directory`, or of the shipped ones."""
    if directory is not None:
        files = sorted(Path(directory).glob("*.toml"))
        if not files:
            raise PolicyError(f"{directory}: no *.toml policy files")
        return [(str(path), path.read_text(encoding="utf-8")) for path in files]
    shipped = importlib.resources.files("gongji.settlement").joinpath("policies")
    return [(f"policies/{entry.name}", entry.read_text(encoding="utf-8"))
            for entry in sorted(shipped.iterdir(), key=lambda e: e.name) if entry.name.endswith(".toml")]


def _toml(source: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{source}: not valid TOML: {error}") from None


def load_books(study: Path, baseline: Path | None = None) -> tuple[PolicyBook, PolicyBook]:
    """The baseline's book and the study's: the baseline with each region the study names replaced
    by the study's whole file, or by the baseline's file with the study's `[change]` laid over each
    version."""
    base_raw: dict[str, tuple[str, dict]] = {}
    for source, text in _policy_texts(baseline):
        raw = _toml(source, text)
        base_raw[str(raw.get("admdvs"))] = (source, raw)
    base = PolicyBook(policy_from_raw(raw, source) for source, raw in base_raw.values())
    replaced: dict[str, RegionPolicy] = {}
    for source, text in _policy_texts(study):
        raw = _toml(source, text)
        if "change" in raw:
            replaced.update(_changed(source, raw, base_raw))
        else:
            policy = policy_from_raw(raw, source)
            replaced[policy.admdvs] = policy
    regions = [replaced.get(code) or base.region(code) for code in base.regions]
    return base, PolicyBook([*regions, *(policy for code, policy in replaced.items() if code not in base.regions)])


def _changed(source: str, raw: dict, base_raw: dict[str, tuple[str, dict]]) -> dict[str, RegionPolicy]:
    region, change = raw.get("admdvs"), raw["change"]
    unknown = sorted(set(raw) - {"admdvs", "change", "name", "sources", "description"})
    if unknown:
        raise PolicyError(f"{source}: field '{unknown[0]}': a change file holds admdvs, [change] and a description")
    if not isinstance(change, dict) or region not in base_raw:
        raise PolicyError(f"{source}: field 'admdvs': a change file names a region of the baseline "
                          f"({', '.join(sorted(base_raw))}) and a [change] table")
    base_source, base = base_raw[region]
    versions = [_deep_merge(version, change) for version in base["versions"]]
    return {region: policy_from_raw({**base, "versions": versions}, f"{source} over {base_source}")}


@dataclass
class Run:
    """One settling of the file: its tally, how many lines it read and how long it took."""

    tally: Tally
    lines: int
    seconds: float


async def settle(lines: Iterable[bytes], book: PolicyBook, now: datetime | None = None,
                 bounds: Bounds = DEFAULT_BOUNDS, errors: IO[str] = sys.stderr,
                 start: tuple[Iterable[bytes], PolicyBook] | None = None) -> Run:
    """Replay `lines` under `book`, tallying every result as it comes, from empty state or from what
    `start`'s lines leave when settled under its book first (their results not counted)."""
    store, tally = MemoryStore(), Tally()
    if start is not None:
        async for _ in replay_lines(start[0], start[1], errors=errors, bounds=bounds, now=now, store=store):
            pass
    counted = _Counted(lines)
    started = time.perf_counter()
    async for result in replay_lines(counted, book, errors=errors, bounds=bounds, now=now, store=store):
        tally.add(result)
    tally.close(store.persons, store.states, book)
    return Run(tally, counted.count, time.perf_counter() - started)


class _Counted:
    """An iterable that counts what it handed out."""

    def __init__(self, lines: Iterable[bytes]):
        self.lines, self.count = lines, 0

    def __iter__(self):
        for line in self.lines:
            self.count += 1
            yield line


async def simulate(open_lines: Callable[[], Iterable[bytes]], base: PolicyBook, study: PolicyBook,
                   now: datetime | None = None, bounds: Bounds = DEFAULT_BOUNDS, errors: IO[str] = sys.stderr,
                   open_start: Callable[[], Iterable[bytes]] | None = None) -> tuple[Run, Run]:
    """Both runs, on the same lines and the same present: the baseline's (its skipped lines said on
    `errors`), then the study's (the same lines, not said again). With `open_start`, both start from
    the state its lines leave under the baseline's policies: the same starting state."""
    now = now or datetime.now().astimezone()
    baseline = await settle(open_lines(), base, now, bounds, errors, open_start and (open_start(), base))
    return baseline, await settle(open_lines(), study, now, bounds, io.StringIO(),
                                  open_start and (open_start(), base))


def command(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    """`gongji simulate`: offline, on no server; the bounds and the pseudonym key from the environment."""
    from gongji.common.pseudonym import Pseudonym
    from gongji.settings import Settings
    from gongji.settlement import study_report

    base, study = load_books(args.study, args.baseline or args.policies)
    if all(base.region(code) == study.region(code) for code in base.regions) and base.regions == study.regions:
        print("gongji simulate: the study's policies are the baseline's; every change will be 0", file=sys.stderr)
    settings = Settings()
    open_lines = _source(args.file)
    open_start = _source(str(args.state)) if args.state else None
    baseline, changed = asyncio.run(simulate(open_lines, base, study, args.now, settings.settlement_bounds(),
                                             open_start=open_start))
    name = (lambda psn_no: psn_no) if args.show_psn_no else Pseudonym(settings.pseudonym_key_value())
    report = study_report.build(baseline, changed, name, args.top)
    if args.csv:
        args.csv.write_text(study_report.csv_report(report), encoding="utf-8")
    if args.html:
        args.html.write_text(study_report.html_report(report, args), encoding="utf-8")
    if args.json:
        print(study_report.json_report(report))
    else:
        study_report.print_tables(report)
    seconds = baseline.seconds + changed.seconds
    print(f"gongji simulate: {baseline.lines:,} lines settled twice in {seconds:.1f} s "
          f"({2 * baseline.lines / seconds if seconds else 0:,.0f} lines/s)", file=sys.stderr)


def _source(name: str) -> Callable[[], Iterable[bytes]]:
    """What reads a file's lines afresh each time it is called; standard input ("-") is read once."""
    if name == "-":
        data = sys.stdin.buffer.read().splitlines(keepends=True)
        return lambda: data
    path = Path(name)
    if not path.is_file():
        sys.exit(f"gongji: {name}: no such file")
    return lambda: _lines(path)


def _lines(path: Path) -> Iterable[bytes]:
    with path.open("rb") as source:
        yield from source
