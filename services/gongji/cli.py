"""`gongji`: the one console command (CONTRACT.md, "Operating it"). The composition root: the
parser, and the table of what each command runs; the settings a command runs on are resolved here
(gongji.local.state) and handed to its handler."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from gongji.services import SERVICES, handler

if TYPE_CHECKING:
    from gongji.settings import Settings

# `gongji ledger balances --by`: gongji.ledger.commands.PREFIXES (a test holds them equal).
BALANCES_BY = ("fund", "institution", "account", "cash", "all")

# What each command runs: "module:function" (gongji.services says what a handler is), imported
# only when the command runs. `run` is gongji.services' own table, one handler per service.
COMMANDS = {
    "demo": "gongji.local.commands:demo",
    "stack": "gongji.local.commands:stack",
    "settlement": "gongji.settlement.commands:rebuild",
    "clearing": "gongji.clearing.commands:clearing",
    "topics": "gongji.common.commands:topics",
    "run": "gongji.services:run",
    "ledger": "gongji.ledger.commands:ledger",
    "reconcile": "gongji.ledger.commands:reconcile",
    "replay": "gongji.settlement.commands:replay",
    "simulate": "gongji.settlement.simulate:command",
    "synthetic": "gongji.local.synthetic:command",
    "bench": "gongji.local.commands:bench",
    "publish": "gongji.local.publish:command",
    "catalogue": "gongji.local.catalogue:command",
    "tail": "gongji.local.tail:command",
    "call": "gongji.gateway.client:command",
}


# Commands that read the ledger's journal and nothing else: GONGJI_DATABASE_URL alone will do.
DATABASE_ONLY = ("ledger", "reconcile")


def _aware_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.utcoffset() is None:
        raise ValueError("needs a UTC offset")
    return value


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("--batch must be at least 1")
    return value


def _positive(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gongji", description="Gongji (共济): streaming settlement of "
                                     "employee medical insurance outpatient mutual-aid claims")
    parser.add_argument("--policies", type=Path, default=None,
                        help="directory of regional policy files (default: the shipped ones)")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="local stack + settlement + synthetic traffic + live view")
    demo.add_argument("--rate", type=int, default=300, help="claims per second to generate (default 300)")
    demo.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    demo.add_argument("--persons", type=int, default=2000, help="synthetic insured persons (default 2000)")
    stack = commands.add_parser("stack", help="the local stack in the background")
    stack.add_argument("action", choices=["up", "down"], help="up: start it and print its addresses; down: stop it")
    settlement = commands.add_parser("settlement", help="settlement state: rebuild Redis from Kafka after it lost data")
    settlement.add_argument("action", choices=["rebuild"], help="rebuild: restore the state from the topics")
    settlement.add_argument("--force", action="store_true", help="rebuild even though Redis is not behind Kafka")
    settlement.add_argument("--accept-differences", action="store_true",
                            help="write the markers (the service resumes) even if results differ from the published")
    settlement.add_argument("--batch", type=int, default=500, help="events settled per round of Redis writes")
    clearing = commands.add_parser("clearing", help="cross-region clearing: close a month, or report on one")
    clearing.add_argument("action", choices=["close", "report"],
                          help="close: publish the month's statements; report: the month as it stands, nothing published")
    clearing.add_argument("month", help="the month, e.g. 2023-03")
    clearing.add_argument("--by", choices=["pair", "institution"], default="pair",
                          help="report: per pair of regions (default) or per treating institution")
    shape = clearing.add_mutually_exclusive_group()
    shape.add_argument("--csv", action="store_true", help="CSV: a row per direction of each pair, or per institution")
    shape.add_argument("--json", action="store_true", help="JSON lines, a line per row of the CSV")
    topics = commands.add_parser("topics", help="create every Gongji topic on the configured cluster, or describe "
                                 "them: partitions, replication, cleanup.policy, retention")
    topics.add_argument("action", choices=["create", "describe"],
                        help="create: make every topic, then show them; describe: only show them")
    run = commands.add_parser("run", help="one service in the foreground")
    run.add_argument("service", choices=SERVICES, help="the service to run")
    ledger = commands.add_parser("ledger", help="the fund ledger: migrate, balances, burden, check, entry")
    actions = ledger.add_subparsers(dest="action", required=True)
    actions.add_parser("migrate", help="create or upgrade the journal's tables")
    balances = actions.add_parser("balances", help="debits, credits and balance per account")
    balances.add_argument("--by", choices=[*BALANCES_BY, "day"], default="fund",
                          help="fund (default), institution, account, cash, all; or day: every account per day")
    balances.add_argument("--from", dest="start", type=date.fromisoformat, help="first book date, YYYY-MM-DD")
    balances.add_argument("--to", dest="end", type=date.fromisoformat, help="last book date, YYYY-MM-DD")
    balances.add_argument("--account", help="only accounts starting with this, e.g. inst:H15250100001")
    shape = balances.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    shape.add_argument("--csv", action="store_true", help="CSV (a header row; money as yuan with two decimals)")
    burden = actions.add_parser(
        "burden", help="the share of in-scope costs left to persons, per region and assistance category (seed 003)",
        description="Per insured region and medical-assistance category: persons, in-scope costs, what the funds "
                    "paid, what was left to the persons and its share, and the persons over their region's "
                    "OOP_SHARE threshold (GONGJI_FRAUD__OOP_SHARE_THRESHOLD, GONGJI_FRAUD__OOP_SHARE_THRESHOLD_BY_REGION, "
                    "GONGJI_FRAUD__OOP_SHARE_MIN_INSCOPE). Settlements net of reversals, by book date.")
    burden.add_argument("--from", dest="start", type=date.fromisoformat,
                        help="first book date, YYYY-MM-DD (default: 1 January of --to's year)")
    burden.add_argument("--to", dest="end", type=date.fromisoformat, help="last book date, YYYY-MM-DD (default: today)")
    shape = burden.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    shape.add_argument("--csv", action="store_true", help="CSV (a header row; money as yuan with two decimals)")
    actions.add_parser("check", help="trial balance: debits equal credits per entry and per day, and the ledger "
                                     "is not stuck behind the settlements (exit 1 if not)")
    entry = actions.add_parser("entry", help="one journal entry and its postings")
    entry.add_argument("entry_id", help="setl_id or credit_id")
    rec = commands.add_parser(
        "reconcile", help="reconcile an institution's totals for a period (对账, 3201; with --details, 3202)",
        description="Compare an institution's totals for a period with the centre's journal. Prints the verdict "
                    "(balanced, centre has more, institution has more, mismatch) and, with --details, every "
                    "settlement that differs. Exit status 0 when balanced, 1 when not.")
    rec.add_argument("--fixmedins", required=True, help="fixmedins_code of the institution")
    rec.add_argument("--from", dest="start", required=True, type=date.fromisoformat, help="stmt_begndate, YYYY-MM-DD")
    rec.add_argument("--to", dest="end", required=True, type=date.fromisoformat, help="stmt_enddate, YYYY-MM-DD")
    rec.add_argument("--medfee-sumamt", required=True, type=Decimal, help="the institution's medical fees total, yuan")
    rec.add_argument("--fund-pay-sumamt", required=True, type=Decimal,
                     help="the institution's fund payments total, yuan")
    rec.add_argument("--acct-pay", required=True, type=Decimal, help="personal accounts paid, family aid included")
    rec.add_argument("--count", required=True, type=int, help="fixmedins_setl_cnt: settlements counted")
    rec.add_argument("--refunds", action="store_true",
                     help="reconcile reversals (refd_setl_flag 1) instead of settlements; their amounts are negative")
    rec.add_argument("--details", type=Path,
                     help="the institution's detail lines (3202): CSV with a header, or JSON Lines; fields setl_id, "
                          "medfee_sumamt, fund_pay_sumamt, acct_pay")
    shape = rec.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="the report as one JSON object")
    shape.add_argument("--csv", action="store_true", help="the report as CSV: a row per side's totals, then a row "
                       "per side of each settlement that differs")
    rep = commands.add_parser("replay", help="settle a JSON Lines file offline (- for stdin)")
    rep.add_argument("file", help="a JSON Lines file of input events, or - for stdin")
    rep.add_argument("--batch", type=_at_least_one, default=500, metavar="N",
                     help="settle N events at a time through the service's batching path (default 500); "
                          "the results are the same for any N")
    rep.add_argument("--now", type=_aware_time, default=None, metavar="TIME",
                     help="the present that setl_time is judged against, ISO 8601 with offset (default: the clock)")
    sim = commands.add_parser(
        "simulate", help="what-if policy study: settle a file under the baseline and under new policies, side by side",
        description="Settle a JSON Lines file (as replay reads it) twice from empty state, under the baseline "
                    "policies and under the study's, and report the difference: funds by fund, region, person "
                    "class and med_type; personal burden; persons at each cap; who and which institutions change "
                    "most; the cost per 1,000 insured per month.")
    sim.add_argument("file", help="a JSON Lines file of input events, or - for stdin")
    sim.add_argument("--policies", dest="study", type=Path, required=True, metavar="NEW_DIR",
                     help="the study's policy files: a region's whole file, or a change file (admdvs and [change]) "
                          "laid over the baseline's; regions it does not name keep the baseline's")
    sim.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                     help="the baseline policy directory (default: gongji --policies, else the shipped policies)")
    sim.add_argument("--state", type=Path, default=None, metavar="FILE",
                     help="JSON lines settled first in both runs, under the baseline's policies, and not counted: "
                          "the registry and what came before the period (the same starting state for both)")
    sim.add_argument("--csv", type=Path, default=None, metavar="OUT", help="also write every figure as CSV")
    sim.add_argument("--html", type=Path, default=None, metavar="OUT",
                     help="also write an HTML report with charts (plotly.js embedded: opens offline)")
    sim.add_argument("--json", action="store_true", help="the report as JSON on stdout instead of tables")
    sim.add_argument("--top", type=_at_least_one, default=10, metavar="N",
                     help="persons and institutions listed whose payments change most (default 10)")
    sim.add_argument("--show-psn-no", action="store_true",
                     help="name persons by psn_no instead of keyed pseudonyms (GONGJI_PSEUDONYM_KEY)")
    sim.add_argument("--now", type=_aware_time, default=None, metavar="TIME",
                     help="the present that setl_time is judged against, as replay's --now")
    syn = commands.add_parser("synthetic", help="a year of synthetic traffic for both seed regions as JSON lines")
    syn.add_argument("--year", type=int, default=2023, help="the calendar year (default 2023)")
    syn.add_argument("--persons", type=_at_least_one, default=2000, help="insured persons, both regions (default 2000)")
    syn.add_argument("--claims", type=_at_least_one, default=20_000,
                     help="claims, reversals and resends in the year (default 20000)")
    syn.add_argument("--seed", type=int, default=7, help="the same seed gives the same file (default 7)")
    syn.add_argument("--family", type=float, default=0.15, help="share of persons bound to a family account holder")
    syn.add_argument("--out", type=Path, default=None, metavar="FILE", help="write here (default: stdout)")
    pub = commands.add_parser("publish", help="validate the JSON lines replay reads and send them to their topics "
                              "(- for stdin)")
    pub.add_argument("file")
    pub.add_argument("--rate", type=_positive, default=None, metavar="N", help="at most N lines a second")
    pub.add_argument("--no-wait", action="store_true",
                     help="send without waiting for the settlement group (by default a line that depends on an "
                          "earlier one on another topic or key waits until settlement has taken it, so results are "
                          "replay's); Kafka then keeps only each topic and key's order")
    cat = commands.add_parser("catalogue", help="the centre's catalogue (就医地目录): load a CSV onto registry.catalogue")
    cat.add_argument("action", choices=["load"], help="load: validate the rows and send the good ones")
    cat.add_argument("files", nargs="+", metavar="FILE",
                     help="CSV with a header: admdvs, med_list_codg, begndate, chrgitm_lv, and optionally enddate, "
                          "selfpay_prop, pric_uplmt_amt, vali_flag, hilist_name (README, \"The centre's catalogue\")")
    cat.add_argument("--check", action="store_true", help="validate every row and send nothing")
    cat.add_argument("--no-wait", action="store_true",
                     help="return once the broker has the rows, without waiting for the settlement group to take them")
    tail = commands.add_parser("tail", help="a Gongji topic decoded to JSON lines")
    tail.add_argument("topic", help="settlements, claims, registry.persons, dead-letters, …")
    tail.add_argument("--from-beginning", action="store_true",
                      help="what the topic holds, then stop at its end (default: new records as they come)")
    tail.add_argument("--follow", action="store_true", help="with --from-beginning: go on at the end")
    tail.add_argument("--until-idle", type=_positive, default=None, metavar="S",
                      help="stop once nothing came for S seconds")
    tail.add_argument("--id", default=None, metavar="CLAIM_OR_CREDIT",
                      help="only the records about this claim_id, credit_id or setl_id")
    call = commands.add_parser("call", help="send one request in the national envelope (2207, 2208, …) to the "
                               "gateway, signed as GONGJI_GATEWAY_CALLER, and print the answer (- for stdin)")
    call.add_argument("file", help="a JSON file of one envelope: infno, fixmedins_code, input (msgid and inf_time "
                      "are filled when missing)")
    bench = commands.add_parser("bench", help="claims/s and latency through the local stack")
    bench.add_argument("--claims", type=int, default=100_000, help="claims queued for the throughput phase")
    bench.add_argument("--persons", type=int, default=20_000, help="synthetic insured persons")
    bench.add_argument("--rate", type=int, default=2000, help="claims/s of the paced (latency) phase")
    bench.add_argument("--workers", type=int, default=2, help="settlement processes in the consumer group")
    bench.add_argument("--no-downstream", dest="downstream", action="store_false",
                       help="no ledger, clearing or fraud: the latency phase with settlement alone, and no "
                       "timing of each downstream consumer")
    bench.add_argument("--gateway", action="store_true",
                       help="instead: signed 2207 requests over HTTP to the gateway (requests/s, p50/p90/p99/max)")
    bench.add_argument("--gateway-rate", type=int, default=500, help="requests/s sent to the gateway")
    bench.add_argument("--gateway-requests", type=int, default=5000, help="2207 requests sent to the gateway")
    bench.add_argument("--gateway-concurrency", type=int, default=100, help="requests in flight at most")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from gongji.common.observe import MetricsExposed, PortInUse
    from gongji.settlement.policy import PolicyError

    _configure_logging()
    resolved: list[Settings] = []  # the settings the command ran on, for an error line
    try:
        # `gongji run SERVICE` on the local stack connects with the service's own certificate.
        service = args.service if args.command == "run" else None

        def resolve() -> Settings:
            resolved.append(_resolve(service, args.command in DATABASE_ONLY))
            return resolved[-1]

        status = handler(COMMANDS[args.command])(args, resolve)
    except PolicyError as error:  # a bad policy file stops start-up, naming the file and the field
        sys.exit(f"gongji: policy not loaded: {error}")
    except (MetricsExposed, PortInUse) as error:  # /metrics off loopback without a token; a port taken
        sys.exit(f"gongji: {error}")
    except BrokenPipeError:  # `gongji replay file | head`
        sys.stderr.close()
        return
    except KeyboardInterrupt:  # Ctrl-C before a command's own handling is in place (imports take a moment)
        sys.exit(130)
    except Exception as error:  # a server refused us or is away: one line naming the setting, not a traceback
        from gongji.common.kafka_failures import explain, is_kafka_failure
        from gongji.common.reachable import outage_line

        if is_kafka_failure(error):
            sys.exit(f"gongji: {explain(error, resolved[-1] if resolved else _resolved_quietly())}")
        line = outage_line(error, resolved[-1] if resolved else None)
        if line is None:
            raise
        sys.exit(f"gongji: {line}")
    if status:
        sys.exit(status)


def _configure_logging() -> None:
    """GONGJI_LOG_FORMAT and GONGJI_LOG_LEVEL (settings.LogSettings), read before anything logs."""
    from pydantic import ValidationError

    from gongji.common.observe import configure_logging
    from gongji.settings import LogSettings

    try:
        chosen = LogSettings()
    except ValidationError as error:
        problem = error.errors()[0]
        sys.exit(f"gongji: GONGJI_{str(problem['loc'][0]).upper()}={problem.get('input')!r}: {problem['msg']}")
    configure_logging(chosen.log_format, chosen.log_level)


def _resolved_quietly() -> Settings | None:
    """The settings a failed command ran on, for its error line (None if there are none)."""
    try:
        return _resolve()
    except (SystemExit, ValueError):
        return None


def _resolve(service: str | None = None, database_only: bool = False) -> Settings:
    """The settings on the configured servers, else the local stack's (gongji.local.state), as
    `service`'s principal there when one is named."""
    from gongji.local.state import resolve_settings

    settings = resolve_settings(service=service, database_only=database_only)
    try:
        settings.check_secret_files()
    except ValueError as error:  # a password file missing or unreadable: one line, not a traceback
        sys.exit(f"gongji: {error}")
    return settings


if __name__ == "__main__":
    main()
