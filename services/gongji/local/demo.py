"""`gongji demo`: the whole settlement path on one machine, watched while it runs.

Starts the local stack (or uses the servers GONGJI_KAFKA_BOOTSTRAP_SERVERS and GONGJI_REDIS_URL
name) under topic and key prefixes of this run's own, one settlement service as a child process,
and synthetic traffic for both seed regions: the registry, then the accounts' opening credits,
then claims, reversals and resends at a steady rate. Every 500th message on `claims` is
deliberately bad (junk bytes, or a claim with a negative amount) so the dead-letter path shows.
It reads `settlements` and `dead-letters` back and shows the figures: a live view on a terminal,
a progress line every 2 s otherwise. Ctrl-C or --seconds stops the traffic; the service is given
a moment to drain, a summary is printed, and everything the demo started is stopped.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from aiokafka import TopicPartition
from rich import box
from rich.columns import Columns
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gongji.common import kafka
from gongji.common.avro import SchemaCatalog
from gongji.settings import Settings
from gongji.common.observe import redacted
from gongji.common.redis import connect
from gongji.local.stack import StackError
from gongji.common.topic_admin import ensure_service_topics
from gongji.local.launch import (
    dashboard_url,
    encode,
    isolated,
    prepare_topics,
    servers,
    start_service,
    stop_processes,
    with_dashboard_port,
)
from gongji.contract.wire import OUTPUT_RECORDS
from gongji.settlement.policy import load_policy_book
from gongji.settlement.redis_store import RedisStore
from gongji.local.synthetic import Traffic

BAD_EVERY = 500  # one deliberately bad message per 500 on `claims`, the first as the 250th
JUNK = b"GONGJI-DEMO-JUNK "  # starts every junk message, so its dead letter is recognised
DRAIN_SECONDS = 10.0
REGISTRY_TIMEOUT = 120.0
PROGRESS_EVERY = 2.0
TICK = 0.25  # the view's refresh: about 4 a second
LATEST = 8
TRAFFIC_WINDOW = 5_000  # claims kept for reversals to pick from: the demo may run for hours

#: Money totals shown, wire field -> label. fund = pooling + large-amount + civil-servant + assistance.
MONEY = {
    "medfee_sumamt": "medical fees",
    "fund_pay_sumamt": "fund paid",
    "hifp_pay": "  pooling fund",
    "acct_pay": "personal account",
    "acct_mulaid_pay": "family mutual aid",
    "psn_cash_pay": "cash",
}
RESULT_KINDS = {record: kind for kind, record in OUTPUT_RECORDS.items()}
ZERO = Decimal("0.00")


class DemoError(RuntimeError):
    """The demo cannot go on: a child process died, or the service never took the registry."""


# ------------------------------------------------------------------------------------ figures
@dataclass
class Sent:
    """What the demo has produced."""

    registry: int = 0
    credits: int = 0
    claims: int = 0  # every message on `claims`: claims, reversals, resends and the bad ones
    junk: int = 0
    negative: int = 0
    claims_since: float | None = None  # monotonic times the claim stream began and ended
    claims_until: float | None = None


@dataclass
class Tally:
    """What has come back on `settlements` and `dead-letters`. A result repeated for an id seen
    recently (a hospital's resend answered again) counts once, under `repeats`."""

    counts: Counter = field(default_factory=Counter)  # settlement, reversal, credit, rejection, dead letter
    rejections: Counter = field(default_factory=Counter)  # by err_code
    dead_letters: Counter = field(default_factory=Counter)  # by shortened reason
    settled: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(MONEY, ZERO))
    reversed: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(MONEY, ZERO))
    regions: Counter = field(default_factory=Counter)  # settlements by insured region
    region_fund: dict[str, Decimal] = field(default_factory=dict)
    cross_region: int = 0
    repeats: int = 0
    answered: int = 0  # messages on `claims` answered, repeats included
    latest: deque = field(default_factory=lambda: deque(maxlen=LATEST))
    _recent: dict = field(default_factory=dict)

    def add(self, name: str, data: dict) -> None:
        """One decoded record from `settlements` or `dead-letters`."""
        if name == "DeadLetter":
            self._dead_letter(data)
            return
        kind = RESULT_KINDS[name]
        if kind != "credit" and (kind != "rejection" or data.get("input_type") in ("claim", "reversal")):
            self.answered += 1
        if self._seen(kind, data.get("claim_id") or data.get("credit_id") or data.get("psn_no")):
            self.repeats += 1
            return
        self.counts[kind] += 1
        if kind == "rejection":
            self.rejections[data["err_code"]] += 1
        elif kind == "reversal":
            _add_money(self.reversed, data)
        elif kind == "settlement":
            self._settlement(data)

    def _settlement(self, data: dict) -> None:
        _add_money(self.settled, data)
        region = data["insu_admdvs"]
        self.regions[region] += 1
        self.region_fund[region] = self.region_fund.get(region, ZERO) + data["fund_pay_sumamt"]
        self.cross_region += region != data["mdtrtarea_admvs"]
        self.latest.append(data)

    def _dead_letter(self, data: dict) -> None:
        self.counts["dead letter"] += 1
        self.dead_letters[short_reason(data["reason"])] += 1
        # Settlement answers each message once: a result, a rejection naming it, or else its dead
        # letter. The fraud service, which reads claims too, dead-letters the same junk again.
        if data.get("service") == "settlement" and data["topic"].endswith("claims"):
            self.answered += 1

    def _seen(self, kind: str, ident: str | None, keep: int = 100_000) -> bool:
        key = (kind, ident)
        if key in self._recent:
            return True
        self._recent[key] = None
        if len(self._recent) > keep:
            del self._recent[next(iter(self._recent))]
        return False

    def net(self, name: str) -> Decimal:
        return self.settled[name] + self.reversed[name]


def _add_money(totals: dict[str, Decimal], data: dict) -> None:
    for name in MONEY:
        totals[name] += data[name]


def short_reason(reason: str, parts: int = 2, width: int = 50) -> str:
    """A dead letter's reason, its first clauses: what kind of failure, not this message's detail."""
    short = ": ".join(reason.split(": ")[:parts])
    return short if len(short) <= width else short[:width - 1] + "…"


class RateMeter:
    """Settlements per second over the last few seconds, from counts sampled each tick."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, count: int) -> None:
        self.samples.append((now, count))
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()

    def per_second(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (start, first), (end, last) = self.samples[0], self.samples[-1]
        return (last - first) / (end - start) if end > start else 0.0


@dataclass
class Run:
    """One demo run: where it runs, what it sent, what came back."""

    settings: Settings
    rate: int
    log: Path
    region_names: dict[str, str]
    started: float = field(default_factory=time.monotonic)
    sent: Sent = field(default_factory=Sent)
    tally: Tally = field(default_factory=Tally)
    meter: RateMeter = field(default_factory=RateMeter)
    phase: str = "starting"
    signals: Counter = field(default_factory=Counter)  # fraud.signals by rule_id
    latest_signals: deque = field(default_factory=lambda: deque(maxlen=3))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def streamed(self) -> float:
        """Seconds of claim stream so far."""
        since, until = self.sent.claims_since, self.sent.claims_until
        return ((until or time.monotonic()) - since) if since else 0.0

    def overall_rate(self) -> float:
        """Settlements per second of claim stream."""
        return self.tally.counts["settlement"] / self.streamed() if self.streamed() else 0.0

    def in_flight(self) -> int:
        return max(self.sent.claims - self.tally.answered, 0)

    def region(self, code: str) -> str:
        return f"{code} {self.region_names.get(code, '')}".strip()


# ------------------------------------------------------------------------------------ traffic
async def feed(run: Run, catalog: SchemaCatalog, traffic: Traffic, stop: asyncio.Event) -> None:
    """Registry, then opening credits once the service has the registry, then claims at the rate."""
    settings = run.settings
    producer = kafka.producer(settings)
    await producer.start()
    try:
        run.phase = "sending the registry"
        run.sent.registry = await _send_rows(producer, encode(catalog, settings, traffic.registry()))
        await wait_registered(settings, traffic, stop)
        if stop.is_set():
            return
        run.phase = "sending opening credits"
        run.sent.credits = await _send_rows(producer, encode(catalog, settings, traffic.openings()))
        run.phase = "settling"
        await _stream_claims(run, producer, catalog, traffic, stop)
    finally:
        await producer.stop()


async def _send_rows(producer, rows) -> int:
    """Send rows and wait until the broker has them all; returns how many."""
    await asyncio.gather(*[await _send(producer, row) for row in rows])
    return len(rows)


async def _send(producer, row) -> asyncio.Future:
    topic, key, value, _ident = row
    return await producer.send(topic, value, key=key)


async def wait_registered(settings: Settings, traffic: Traffic, stop: asyncio.Event) -> None:
    """Wait until the service has stored every person and institution (the registry topics are
    topics of their own, so nothing orders them before the claims)."""
    client = connect(settings.redis_url)
    store = RedisStore(client, settings.key_prefix)
    persons = [row["psn_no"] for row in traffic.persons]
    institutions = [row["fixmedins_code"] for row in traffic.institutions]
    deadline = time.monotonic() + REGISTRY_TIMEOUT
    try:
        while not stop.is_set():
            snapshot = await store.read(persons, institutions, ())
            if all(snapshot.persons.values()) and all(snapshot.institutions.values()):
                return
            if time.monotonic() > deadline:
                raise DemoError(f"the settlement service did not store the registry within {REGISTRY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


async def _stream_claims(run: Run, producer, catalog: SchemaCatalog, traffic: Traffic, stop: asyncio.Event) -> None:
    """Traffic.stream at `run.rate` messages a second, paced by the clock, until `stop`."""
    settings, sent = run.settings, run.sent
    events = traffic.stream(sys.maxsize)
    sent.claims_since = start = time.monotonic()
    last_claim = None
    while not stop.is_set():
        due = int((time.monotonic() - start) * run.rate)
        deliveries = []
        while sent.claims < due:
            kind, data = next(events)
            last_claim = data if kind == "claim" else last_claim
            deliveries.append(await _send(producer, encode(catalog, settings, [(kind, data)])[0]))
            sent.claims += 1
            if sent.claims % BAD_EVERY == BAD_EVERY // 2 and last_claim:
                deliveries.append(await _send(producer, bad_input(run, catalog, last_claim)))
        await asyncio.gather(*deliveries)
        await _wait(stop, 0.02)
    sent.claims_until = time.monotonic()


def bad_input(run: Run, catalog: SchemaCatalog, claim: dict):
    """A deliberately bad message for `claims`, junk bytes and a negative amount in turn. Both end
    as dead letters; the claim with a negative amount also gets an INVALID_CLAIM rejection."""
    sent, settings = run.sent, run.settings
    if sent.junk <= sent.negative:
        sent.junk += 1
        sent.claims += 1
        return settings.topics.claims, b"demo-junk", JUNK + uuid.uuid4().bytes, "junk"
    sent.negative += 1
    sent.claims += 1
    bad = copy.deepcopy(claim)
    bad["claim_id"] = f"{settings.key_prefix}NEG{sent.negative:06d}"
    line = bad["fee_details"][0]
    line["det_item_fee_sumamt"] = -line["det_item_fee_sumamt"]
    return encode(catalog, settings, [("claim", bad)])[0]


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` at most `seconds`; whether it is set."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        pass
    return event.is_set()


# ------------------------------------------------------------------------------------ results
async def read_results(run: Run, catalog: SchemaCatalog, done: asyncio.Event) -> None:
    """Decode every record on `settlements`, `dead-letters` and `fraud.signals` into the run's tally,
    until `done`."""
    topics = run.settings.topics
    consumer = kafka.consumer(run.settings, None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, number)
                      for topic in (topics.settlements, topics.dead_letters, topics.fraud_signals)
                      for number in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise DemoError(f"topics {topics.settlements} and {topics.dead_letters} have no partitions")
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        while not done.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            for messages in batches.values():
                for message in messages:
                    name, data = catalog.decode(message.value)
                    if name == "FraudSignal":
                        run.signals[data["rule_id"]] += 1
                        run.latest_signals.append(data)
                    else:
                        run.tally.add(name, data)
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------------------ the view
def _yuan(value: Decimal) -> str:
    return f"{value:,.2f}"


def header(run: Run) -> str:
    settings = run.settings
    return (f"Kafka {settings.kafka_bootstrap_servers}  Redis {redacted(settings.redis_url)}  "
            f"topics {settings.topic_prefix}*\n"
            f"dashboard {dashboard_url(settings)}  service log {run.log}")


def _table(title: str, *columns: str, caption: str | None = None) -> Table:
    """A borderless table; without column names when `columns` are all empty."""
    table = Table(title=title, title_justify="left", title_style="bold", caption=caption, caption_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, show_header=any(columns))
    for number, name in enumerate(columns):
        table.add_column(name, justify="left" if number == 0 else "right", no_wrap=True)
    return table


def _flow_table(run: Run) -> Table:
    sent, tally = run.sent, run.tally
    table = _table("Flow", "", "")
    table.add_row("sent on claims", f"{sent.claims:,} ({run.rate}/s)")
    table.add_row("  deliberately bad", f"{sent.junk} junk, {sent.negative} negative")
    table.add_row("settlements", f"{tally.counts['settlement']:,}")
    table.add_row("  per s: last 5 s, overall", f"{run.meter.per_second():,.0f}, {run.overall_rate():,.0f}")
    table.add_row("reversals", f"{tally.counts['reversal']:,}")
    table.add_row("credits", f"{tally.counts['credit']:,}")
    table.add_row("rejections", f"{tally.counts['rejection']:,}")
    table.add_row("dead letters", f"{tally.counts['dead letter']:,}")
    table.add_row("resends answered again", f"{tally.repeats:,}")
    table.add_row("in flight", f"{run.in_flight():,}")
    return table


def _money_table(tally: Tally) -> Table:
    table = _table("Paid, yuan", "", "net of reversals", "reversed")
    for name, label in MONEY.items():
        table.add_row(f"{label} [dim]{name}[/]", _yuan(tally.net(name)), _yuan(tally.reversed[name]))
    return table


def _regions_table(run: Run) -> Table:
    tally = run.tally
    table = _table("By insured region", "", "settled", "fund paid")
    for code in sorted(set(run.region_names) | set(tally.regions)):
        table.add_row(run.region(code), f"{tally.regions[code]:,}", _yuan(tally.region_fund.get(code, ZERO)))
    table.add_row("treated elsewhere", f"{tally.cross_region:,}", "")
    return table


def _counter_table(title: str, counter: Counter) -> Table:
    table = _table(title, "", "")
    for name, count in counter.most_common():
        table.add_row(name, f"{count:,}")
    return table


def _latest_table(run: Run) -> Table:
    tag = run.settings.key_prefix
    table = _table(f"Last {LATEST} settlements (claim_id less the run's prefix {tag})", "claim_id", "region",
                   "institution", "medfee", "fund", "account", "cash",
                   caption="* treated in another region; account = acct_pay + acct_mulaid_pay")
    for data in reversed(run.tally.latest):
        region = data["insu_admdvs"] + ("*" if data["mdtrtarea_admvs"] != data["insu_admdvs"] else "")
        table.add_row(data["claim_id"].removeprefix(tag), region, data["fixmedins_code"], _yuan(data["medfee_sumamt"]),
                      _yuan(data["fund_pay_sumamt"]), _yuan(data["acct_pay"] + data["acct_mulaid_pay"]),
                      _yuan(data["psn_cash_pay"]))
    return table


def render(run: Run) -> Group:
    """The live view: title and addresses, flow and money, regions and refusals, the latest
    settlements. Tables stand side by side as far as the terminal's width allows."""
    tally = run.tally
    stop = "Ctrl-C again to stop now" if run.phase == "draining" else "Ctrl-C to stop"
    title = Text.assemble(("Gongji demo", "bold"), f"  {run.elapsed():.0f} s  ", (run.phase, "cyan"),
                          "  ", (stop, "bold yellow"))
    return Group(title, Text(header(run), style="dim"), Text(""),
                 Columns([_flow_table(run), _money_table(tally)], padding=(0, 4)), Text(""),
                 Columns([_regions_table(run), _counter_table("Rejections", tally.rejections),
                          _counter_table("Dead letters", tally.dead_letters),
                          _counter_table("Fraud signals", run.signals)], padding=(0, 4)), Text(""),
                 _latest_table(run))


def progress_line(run: Run) -> str:
    tally = run.tally
    return (f"[{run.elapsed():5.0f} s] {run.phase}: sent {run.sent.claims:,} on claims | "
            f"settled {tally.counts['settlement']:,} ({run.meter.per_second():,.0f}/s last 5 s) | "
            f"reversals {tally.counts['reversal']:,} | credits {tally.counts['credit']:,} | "
            f"rejections {tally.counts['rejection']:,} | dead letters {tally.counts['dead letter']:,} | "
            f"fund paid {_yuan(tally.net('fund_pay_sumamt'))} yuan | fraud signals {sum(run.signals.values()):,} | "
            f"in flight {run.in_flight():,}")


def summary(run: Run) -> str:
    """The final figures as plain text."""
    sent, tally = run.sent, run.tally
    labels = {name: f"{label} ({name})" for name, label in MONEY.items()}
    width = max(map(len, labels.values()))
    lines = [
        f"gongji demo: ran {run.elapsed():.1f} s, claims sent for {run.streamed():.1f} s",
        f"sent: {sent.claims:,} messages on claims at {run.rate}/s, of which {sent.junk + sent.negative} "
        f"deliberately bad ({sent.junk} junk bytes, {sent.negative} claims with a negative amount); "
        f"{sent.credits:,} credits; {sent.registry:,} registry events",
        f"results: {tally.counts['settlement']:,} settlements, {tally.counts['reversal']:,} reversals, "
        f"{tally.counts['credit']:,} credits, {tally.counts['rejection']:,} rejections, "
        f"{tally.counts['dead letter']:,} dead letters; {tally.repeats:,} repeated results (resends answered again)",
        f"settlements per second: {run.overall_rate():,.0f} over the claim stream, "
        f"{run.meter.per_second():,.0f} over the last 5 s",
        "rejections by err_code: " + (", ".join(f"{code} {n:,}" for code, n in tally.rejections.most_common()) or "none"),
        "dead letters by reason: " + ("; ".join(f"{n:,} × {why}" for why, n in tally.dead_letters.most_common())
                                      or "none"),
        f"{'paid (yuan)':<{width}}  {'settled':>14}  {'reversed':>12}  {'net':>14}",
        *(f"{label:<{width}}  {_yuan(tally.settled[name]):>14}  {_yuan(tally.reversed[name]):>12}  "
          f"{_yuan(tally.net(name)):>14}" for name, label in labels.items()),
        "by insured region: " + "; ".join(
            f"{run.region(code)}: {tally.regions[code]:,} settlements, fund paid {_yuan(tally.region_fund.get(code, ZERO))}"
            for code in sorted(set(run.region_names) | set(tally.regions))),
        f"treated in another region: {tally.cross_region:,} settlements",
        f"unanswered at exit: {run.in_flight():,}; service log: {run.log}",
    ]
    return "\n".join(lines)


class LiveView:
    """The rich live view, redrawn each tick."""

    def __init__(self, console: Console, run: Run):
        self.run = run
        self.live = Live(render(run), console=console, auto_refresh=False)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.live.__exit__(*exc_info)

    def update(self) -> None:
        self.live.update(render(self.run), refresh=True)


class PlainView:
    """For a stdout that is not a terminal: the header once, then a progress line every 2 s."""

    def __init__(self, console: Console, run: Run):
        self.console, self.run = console, run
        self.printed = 0.0

    def __enter__(self) -> PlainView:
        print(f"gongji demo: {header(self.run)}\nCtrl-C to stop", flush=True)
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def update(self) -> None:
        now = time.monotonic()
        if now - self.printed >= PROGRESS_EVERY:
            self.printed = now
            print(progress_line(self.run), flush=True)


# ------------------------------------------------------------------------------------ running it
async def run_demo(rate: int, seconds: float | None, persons: int, policy_dir) -> None:
    """Run the demo until Ctrl-C (or SIGTERM, SIGHUP) or for `seconds`; see the module docstring."""
    if rate < 1 or persons < 2:
        sys.exit("gongji demo: --rate must be at least 1 and --persons at least 2")
    started = time.monotonic()
    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # its INFO lines would scroll through the view
    book = load_policy_book(policy_dir)  # a bad policy file stops the demo before anything starts
    policy_dir = Path(policy_dir).resolve() if policy_dir else None  # the service runs in the workdir
    stop, hurry = asyncio.Event(), asyncio.Event()
    signals = _on_signals(stop, hurry)  # first: a Ctrl-C while the stack starts stops the demo once it is up
    workdir = Path(tempfile.mkdtemp(prefix="gongji-demo-"))
    print(f"gongji demo: starting in {workdir} ...", flush=True)
    stack = None
    try:
        stack, base = servers(workdir)
        run = Run(with_dashboard_port(isolated(base, "d" + uuid.uuid4().hex[:6])), rate, workdir / "settlement.log",
                  {code: book.region(code).name for code in book.regions}, started=started)
        if not stop.is_set():
            await _run(run, persons, policy_dir, stop, hurry, started + seconds if seconds else None)
    except (StackError, DemoError) as error:
        sys.exit(f"gongji demo: {error}\nlogs in {workdir}")
    finally:
        if stack:
            stack.stop()
        signals()
    print(f"gongji demo: stopped{' the local stack' if stack else ''}; logs in {workdir}", flush=True)


def _on_signals(stop: asyncio.Event, hurry: asyncio.Event):
    """The first Ctrl-C stops the traffic, a second one cuts the drain short; returns the undo."""
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        (hurry if stop.is_set() else stop).set()

    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for signum in signums:
        loop.add_signal_handler(signum, interrupted)
    return lambda: [loop.remove_signal_handler(signum) for signum in signums]


async def _run(run: Run, persons: int, policy_dir: Path | None, stop: asyncio.Event, hurry: asyncio.Event,
               deadline: float | None) -> None:
    """Service, reader and traffic on the stack; the view while they run; the summary at the end."""
    catalog = SchemaCatalog()
    await prepare_topics(run.settings)
    await ensure_service_topics(run.settings, [run.settings.topics.fraud_signals])  # read below from the start
    with open(run.log, "ab") as log:
        service = start_service("settlement", run.settings, policy_dir, log, detach=True, cwd=run.log.parent)[0]
    downstream = {}
    for name in downstream_services(run.settings):
        with open(run.log.with_name(f"{name}.log"), "ab") as log:
            downstream[name] = start_service(name, run.settings, policy_dir, log, detach=True, cwd=run.log.parent)[0]
    if "dashboard" in downstream:
        print(f"gongji demo: live dashboard at {dashboard_url(run.settings)} (open it in a browser)", flush=True)
    done = asyncio.Event()
    traffic = Traffic(persons=persons, tag=run.settings.key_prefix, window=TRAFFIC_WINDOW)
    reader = asyncio.create_task(read_results(run, catalog, done))
    feeder = asyncio.create_task(feed(run, catalog, traffic, stop))
    console = Console()
    try:
        with (LiveView if console.is_terminal else PlainView)(console, run) as view:
            await _watch(run, view, service, (feeder, reader), stop, deadline)
            stop.set()
            await feeder  # sending stops
            run.phase = "draining"
            await _drain(run, view, service, hurry)
        print(summary(run), flush=True)
        if not hurry.is_set():
            print(await clearing_summary(run, catalog), flush=True)
            if "ledger" in downstream:
                print(await ledger_summary(run), flush=True)
            else:
                print("fund ledger: not run (servers configured without GONGJI_DATABASE_URL)", flush=True)
            if "fraud" in downstream:
                print(await fraud_summary(run), flush=True)
    finally:
        stop.set()
        done.set()
        await asyncio.gather(feeder, reader, return_exceptions=True)
        stop_processes([service, *downstream.values()])


async def until_steady(read, quiet: float, limit: float, every: float = 0.3):
    """Read `read()` (a coroutine function) until its value has not changed for `quiet` seconds, or
    `limit` seconds have passed; returns the last value. A downstream service's output stops
    moving once it has caught up: that is when the demo sums it up."""
    last, steady_since, until = await read(), time.monotonic(), time.monotonic() + limit
    while time.monotonic() - steady_since < quiet and time.monotonic() < until:
        await asyncio.sleep(every)
        now = await read()
        if now != last:
            last, steady_since = now, time.monotonic()
    return last


async def caught_up(settings: Settings, group: str, limit: float) -> bool:
    """Whether consumer group `group` has committed `settlements` to its end within `limit` s."""
    try:
        async with kafka.group_progress(settings, settings.topics.settlements) as progress:
            until = time.monotonic() + limit
            while time.monotonic() < until:
                done, end = await progress(group)
                if end and done >= end:
                    return True
                await asyncio.sleep(0.3)
        return False
    except Exception:  # a courtesy wait: never let it hide the demo's own outcome
        return False


async def fraud_summary(run: Run, quiet: float = 2.0, limit: float = 10.0) -> str:
    """Once the fraud service has read every result (it may still be starting: faust takes a few
    seconds) and its signals stop coming: how many per rule, and the latest few."""
    await caught_up(run.settings, run.settings.kafka_group("fraud"), limit=20.0)
    async def signals() -> int:
        return sum(run.signals.values())

    await until_steady(signals, quiet, limit)
    if not run.signals:
        return f"fraud and supervision signals: none on {run.settings.topics.fraud_signals}"
    lines = [f"fraud and supervision signals: {sum(run.signals.values()):,} on {run.settings.topics.fraud_signals} "
             "(one per rule, subject and window): "
             + ", ".join(f"{rule} {n:,}" for rule, n in run.signals.most_common())]
    for signal_ in run.latest_signals:
        lines.append(f"  {signal_['severity']} {signal_['rule_id']} {signal_['subject_type']} {signal_['subject_id']}: "
                     f"{signal_['reason']}")
    return "\n".join(lines)


def downstream_services(settings) -> list[str]:
    """The services the demo runs beside settlement: every one `gongji run` knows; the ledger only
    with a PostgreSQL to write to."""
    from gongji.services import SERVICES

    return [name for name in SERVICES if name != "settlement" and (name != "ledger" or settings.database_url)]


async def ledger_summary(run: Run, quiet: float = 1.5, limit: float = 15.0) -> str:
    """Once the ledger has booked what it will (its journal stops growing), its trial balance and
    what each kind of fund paid."""
    from gongji.ledger.store import LedgerStore

    try:
        store = await LedgerStore.connect(run.settings.database_url, run.settings.ledger_schema)
    except Exception as error:  # the summary is a courtesy: never let it hide the demo's own
        return f"fund ledger: not readable ({error})"
    try:
        async def counts() -> dict | None:
            try:
                return await store.counts()
            except Exception:  # tables not created yet
                return None

        await until_steady(counts, quiet, limit)
        trial = await store.trial_balance()
        funds = await store.balances("account", prefix="fund:")
    except Exception as error:  # LedgerStoreError, psycopg's: a summary never hides the demo's own outcome
        return f"fund ledger: not readable ({error})"
    finally:
        await store.close()
    balanced = not trial["unbalanced"] and all(day["debit"] == day["credit"] for day in trial["days"])
    lines = [f"fund ledger: {trial['entries']} journal entries on {len(trial['days'])} day(s) in PostgreSQL "
             f"(schema {run.settings.ledger_schema}); "
             + ("every entry and every day balances" if balanced else "SOME ENTRIES DO NOT BALANCE")]
    names = {"310100": "pooling", "330100": "large-amount", "320100": "civil-servant", "610100": "assistance",
             "999900": "other", "310200": "credited to personal accounts"}
    paid: dict[str, Decimal] = {}
    for row in funds:
        _, fund, _region = row["account"].split(":")
        paid[fund] = paid.get(fund, Decimal(0)) + row["balance"]
    for fund, amount in sorted(paid.items()):
        lines.append(f"  {names.get(fund, fund)} ({fund}): {amount:,.2f} yuan net")
    return "\n".join(lines)


async def clearing_summary(run: Run, catalog: SchemaCatalog, quiet: float = 1.5, limit: float = 15.0) -> str:
    """Once the clearing service has counted what it will (its positions stop moving), close the
    months it touched and describe the statements it publishes to clearing.statements."""
    from gongji.clearing.service import ClearingStore, close_month
    from gongji.common.redis import connect

    client = connect(run.settings.redis_url, run.settings.redis_cluster)
    try:
        store = ClearingStore(client, run.settings.key_prefix)
        prefix = f"{run.settings.key_prefix}:clr:pairs:"

        async def snapshot() -> dict:
            months = sorted([key.decode()[len(prefix):] async for key in client.scan_iter(match=prefix + "*")])
            return {month: await store.positions(month) for month in months}

        last = await until_steady(snapshot, quiet, limit)
        statements = [s for month in last for s in await close_month(run.settings, catalog, client, month)]
    finally:
        await client.aclose()
    if not statements:
        return "cross-region clearing: nothing treated outside the insured region"
    net: dict[tuple[str, str], Decimal] = {}
    for s in statements:
        pair = (s["region_a"], s["region_b"])
        net[pair] = net.get(pair, Decimal(0)) + s["net_to_a"]
    lines = [f"cross-region clearing: {len(statements)} statement(s) for {len(last)} month(s) on "
             f"{run.settings.topics.clearing_statements}"]
    for (region_a, region_b), amount in net.items():
        payer, payee = (region_b, region_a) if amount >= 0 else (region_a, region_b)
        lines.append(f"  {payer} pays {payee} a net {abs(amount):,.2f} yuan over those months")
    return "\n".join(lines)


async def _watch(run: Run, view, service, tasks, stop: asyncio.Event, deadline: float | None) -> None:
    """Refresh the view until `stop` or the deadline; raise if the service or a task failed."""
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        _check(service, tasks)
        _tick(run, view)
        await _wait(stop, TICK)


async def _drain(run: Run, view, service, hurry: asyncio.Event) -> None:
    """Give the service a moment to answer what was sent: until nothing is in flight, a second
    Ctrl-C, or DRAIN_SECONDS."""
    until = time.monotonic() + DRAIN_SECONDS
    while run.in_flight() and time.monotonic() < until and service.poll() is None:
        _tick(run, view)
        if await _wait(hurry, TICK):
            break
    _tick(run, view)


def _check(service, tasks) -> None:
    if service.poll() is not None:
        raise DemoError(f"the settlement service exited with status {service.returncode}")
    for task in tasks:
        if task.done():
            task.result()  # raises what the task raised


def _tick(run: Run, view) -> None:
    run.meter.sample(time.monotonic(), run.tally.counts["settlement"])
    view.update()
