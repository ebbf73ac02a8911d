"""What the demo shows while it runs: a rich live view on a terminal, a progress line every 2 s
otherwise."""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal

from rich import box
from rich.columns import Columns
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gongji.common.observe import redacted
from gongji.local.demo.figures import LATEST, MONEY, Run
from gongji.local.launch import dashboard_url

PROGRESS_EVERY = 2.0


def yuan(value: Decimal) -> str:
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
    sent, counts = run.sent, run.board.counts
    table = _table("Flow", "", "")
    table.add_row("sent on claims", f"{sent.claims:,} ({run.rate}/s)")
    table.add_row("  deliberately bad", f"{sent.junk} junk, {sent.negative} negative")
    table.add_row("settlements", f"{counts['settlement']:,}")
    table.add_row("  per s: last 5 s, overall", f"{run.recent_rate():,.0f}, {run.overall_rate():,.0f}")
    table.add_row("reversals", f"{counts['reversal']:,}")
    table.add_row("credits", f"{counts['credit']:,}")
    table.add_row("rejections", f"{counts['rejection']:,}")
    table.add_row("dead letters", f"{counts['dead letter']:,}")
    table.add_row("resends answered again", f"{run.board.repeats:,}")
    table.add_row("in flight", f"{run.in_flight():,}")
    return table


def _money_table(run: Run) -> Table:
    board = run.board
    table = _table("Paid, yuan", "", "net of reversals", "reversed")
    for name, label in MONEY.items():
        table.add_row(f"{label} [dim]{name}[/]", yuan(board.net(name)), yuan(board.paid["reversal"][name]))
    return table


def _regions_table(run: Run) -> Table:
    table = _table("By insured region", "", "settled", "fund paid")
    for code in run.regions():
        settled, fund = run.insured(code)
        table.add_row(run.board.region(code), f"{settled:,}", yuan(fund))
    table.add_row("treated elsewhere", f"{run.board.cross_region():,}", "")
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
    for data in reversed(run.board.latest):
        region = data["insu_admdvs"] + ("*" if data["mdtrtarea_admvs"] != data["insu_admdvs"] else "")
        table.add_row(data["claim_id"].removeprefix(tag), region, data["fixmedins_code"], yuan(data["medfee_sumamt"]),
                      yuan(data["fund_pay_sumamt"]), yuan(data["acct_pay"] + data["acct_mulaid_pay"]),
                      yuan(data["psn_cash_pay"]))
    return table


def render(run: Run) -> Group:
    """The live view: title and addresses, flow and money, regions and refusals, the latest
    settlements. Tables stand side by side as far as the terminal's width allows."""
    board = run.board
    stop = "Ctrl-C again to stop now" if run.phase == "draining" else "Ctrl-C to stop"
    title = Text.assemble(("Gongji demo", "bold"), f"  {run.elapsed():.0f} s  ", (run.phase, "cyan"),
                          "  ", (stop, "bold yellow"))
    return Group(title, Text(header(run), style="dim"), Text(""),
                 Columns([_flow_table(run), _money_table(run)], padding=(0, 4)), Text(""),
                 Columns([_regions_table(run), _counter_table("Rejections", board.rejections),
                          _counter_table("Dead letters", board.dead_letters),
                          _counter_table("Fraud signals", board.signal_rules)], padding=(0, 4)), Text(""),
                 _latest_table(run))


def progress_line(run: Run) -> str:
    counts = run.board.counts
    return (f"[{run.elapsed():5.0f} s] {run.phase}: sent {run.sent.claims:,} on claims | "
            f"settled {counts['settlement']:,} ({run.recent_rate():,.0f}/s last 5 s) | "
            f"reversals {counts['reversal']:,} | credits {counts['credit']:,} | "
            f"rejections {counts['rejection']:,} | dead letters {counts['dead letter']:,} | "
            f"fund paid {yuan(run.board.net('fund_pay_sumamt'))} yuan | fraud signals {run.signals():,} | "
            f"in flight {run.in_flight():,}")


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
