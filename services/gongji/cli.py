"""`gongji`: the one console command (CONTRACT.md, "Operating it"). The composition root: settings
are read here, clients built here, and passed down."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from gongji.settings import Settings
from gongji.settlement.policy import PolicyError

# What `gongji run` starts; docker-compose.yml runs each (a test checks).
SERVICES = ("settlement", "clearing", "ledger", "fraud", "dashboard")
STATE_DIR = Path(os.environ.get("GONGJI_STATE_DIR", ".gongji"))


def resolve_settings(settings: Settings | None = None) -> Settings:
    """Settings from the environment when it names any server; else every server from a running
    `gongji stack up`. Never a mix: production Kafka with the local stack's scratch database (or the
    reverse) would book real results where nobody audits them."""
    settings = settings or Settings()
    if settings.kafka_bootstrap_servers or settings.redis_url or settings.database_url:
        if not (settings.kafka_bootstrap_servers and settings.redis_url):
            sys.exit("gongji: set both GONGJI_KAFKA_BOOTSTRAP_SERVERS and GONGJI_REDIS_URL (and GONGJI_DATABASE_URL "
                     "for the ledger), or none of them to use the local stack.")
        return settings  # without a database only the ledger cannot run, and says so
    return local_stack_settings(settings)


def local_stack_settings(settings: Settings) -> Settings:
    """`settings` on the servers of the running `gongji stack up`, all of them."""
    from gongji.local.stack import STATE_FILE, stack_settings

    state_file = STATE_DIR / STATE_FILE
    if not state_file.exists():
        sys.exit("gongji: no servers configured. Set GONGJI_KAFKA_BOOTSTRAP_SERVERS and GONGJI_REDIS_URL, "
                 "or start the local stack with `gongji stack up`.")
    return settings.model_copy(update=stack_settings(json.loads(state_file.read_text())))


def tune_gc() -> None:
    """A settling service allocates many short-lived objects: collecting every 700 allocations cost
    a quarter of settlement time. Freeze what start-up built and collect the young far less often."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def start_stack_services(policy_dir: Path | None) -> str:
    """Every service of SERVICES in the background on the local stack, recorded in its state file;
    returns the dashboard's address."""
    from gongji.local.stack import record_processes
    from gongji.local.launch import dashboard_url, start_service, with_dashboard_port

    # The stack's own servers, whatever the shell's GONGJI_* say: its services must not write elsewhere.
    settings = with_dashboard_port(local_stack_settings(Settings()))
    processes = {}
    for service in SERVICES:
        log_path = STATE_DIR / f"{service}.log"
        with open(log_path, "ab") as log:
            (process,) = start_service(service, settings, policy_dir, log, outlive=True, cwd=STATE_DIR)
        processes[service] = {"pid": process.pid, "binary": sys.executable, "log": str(log_path.resolve())}
    record_processes(STATE_DIR, processes, dashboard_url=dashboard_url(settings))
    return dashboard_url(settings)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


async def run_settlement(settings: Settings, book) -> None:
    from gongji.common.avro import SchemaCatalog
    from gongji.common.observe import redacted
    from gongji.common.redis import DurabilityUnavailable, connect
    from gongji.settlement.service import SettlementService

    client = connect(settings.redis_url, settings.redis_cluster)
    service = SettlementService(settings, SchemaCatalog(), book, client)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    tune_gc()
    logging.getLogger("gongji").info("settlement: regions %s, Kafka %s, Redis %s", ", ".join(book.regions),
                                     settings.kafka_bootstrap_servers, redacted(settings.redis_url))
    try:
        await service.run(stop)
    except DurabilityUnavailable as error:
        sys.exit(f"gongji: Redis at {redacted(settings.redis_url)}: {error}")
    finally:
        await client.aclose()


async def rebuild_settlement(settings: Settings, book, args: argparse.Namespace) -> int:
    """`gongji settlement rebuild`: the state in Redis again from Kafka (gongji.settlement.rebuild)."""
    from gongji.common.avro import SchemaCatalog
    from gongji.common.redis import DurabilityUnavailable, connect
    from gongji.settlement.rebuild import RebuildError, rebuild

    client = connect(settings.redis_url, settings.redis_cluster)
    try:
        report = await rebuild(settings, SchemaCatalog(), book, client, force=args.force,
                               accept_differences=args.accept_differences, batch=args.batch)
    except (RebuildError, DurabilityUnavailable) as error:
        sys.exit(f"gongji: settlement rebuild: {error}")
    finally:
        await client.aclose()
    print("\n".join(report.lines()))
    return 0 if report.markers_written else 1


async def run_clearing(settings: Settings) -> None:
    from gongji.clearing.service import ClearingService
    from gongji.common.avro import SchemaCatalog
    from gongji.common.redis import connect

    client = connect(settings.redis_url, settings.redis_cluster)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    try:
        await ClearingService(settings, SchemaCatalog(), client).run(stop)
    finally:
        await client.aclose()


async def run_fraud(settings: Settings) -> None:
    from gongji.common.avro import SchemaCatalog
    from gongji.fraud.service import FraudService

    stop = asyncio.Event()
    _stop_on_signals(stop)
    await FraudService(settings, SchemaCatalog()).run(stop)


async def close_clearing(settings: Settings, month: str) -> None:
    from gongji.clearing.service import close_month
    from gongji.common.avro import SchemaCatalog
    from gongji.common.redis import connect

    client = connect(settings.redis_url, settings.redis_cluster)
    try:
        statements = await close_month(settings, SchemaCatalog(), client, month)
    finally:
        await client.aclose()
    print(f"{month}: {len(statements)} statement(s) on {settings.topics.clearing_statements}")
    for s in statements:
        a, b = s["a_to_b"], s["b_to_a"]
        print(f"  {s['region_a']} ⇄ {s['region_b']}: {s['region_a']} advanced {a['owed']} for {a['settlements']} "
              f"settlement(s), {s['region_b']} advanced {b['owed']} for {b['settlements']}; "
              f"net {s['net_to_a']} to {s['region_a']}")


async def topics_command(settings: Settings, action: str) -> int:
    """`gongji topics create|describe`: every topic of CONTRACT.md on the configured cluster, then a
    table of what the cluster holds; refused configs and differences from the settings on stderr.
    The exit status is 1 when `describe` finds a topic missing."""
    from gongji.common.topic_admin import REPORTED_CONFIGS, create_topics, describe_topics, differences
    from gongji.contract.topics import topic_specs

    specs = topic_specs(settings)
    bootstrap = settings.kafka_bootstrap_servers
    status = {spec.name: "missing" for spec in specs}
    if action == "create":
        for result in await create_topics(bootstrap, specs):
            status[result.name] = "created" if result.created else "exists"
            if result.refused_configs:
                refused = ", ".join(f"{k}={v}" for k, v in result.refused_configs.items())
                print(f"gongji: warning: the broker refused {refused} for {result.name} ({result.refusal}); "
                      "created it without them", file=sys.stderr)
    found = {d.name: d for d in await describe_topics(bootstrap, status)}
    rows = [("topic", "status", "partitions", "replicas", "in-sync", *REPORTED_CONFIGS)]
    for spec in specs:
        d = found[spec.name]
        if d.exists and status[spec.name] == "missing":
            status[spec.name] = "exists"
        rows.append((spec.name, status[spec.name], *(str(n) if d.exists else "-" for n in
                                                      (d.partitions, d.replication_factor, d.min_isr)),
                     *(_config_cell(key, d.configs.get(key)) for key in REPORTED_CONFIGS)))
        for difference in differences(spec, d) if d.exists else ():
            print(f"gongji: warning: {spec.name}: {difference}", file=sys.stderr)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 1 if "missing" in status.values() else 0


def _config_cell(key: str, value: str | None) -> str:
    """A config as the table shows it: '-' when the broker does not report it, retention with days."""
    if value is None:
        return "-"
    if key == "retention.ms" and value.lstrip("-").isdigit():
        ms = int(value)
        return f"{value} (forever)" if ms < 0 else f"{value} ({ms / 86_400_000:g}d)"
    return value


async def replay(path: str, policy_dir: Path | None, batch: int = 1, now: datetime | None = None) -> None:
    from gongji.settlement.policy import load_policy_book
    from gongji.settlement.replay import replay_lines

    book = load_policy_book(policy_dir)
    bounds = Settings().settlement_bounds()
    try:  # bytes: a line that is not UTF-8 is one skipped line, not the end of the file
        source = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as error:
        sys.exit(f"gongji: {path}: {error.strerror}")
    with source:
        async for output in replay_lines(source, book, batch=batch, bounds=bounds, now=now):
            sys.stdout.write(json.dumps(output, ensure_ascii=False) + "\n")


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


def main(argv: list[str] | None = None) -> None:
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
    stack.add_argument("action", choices=["up", "down"])
    settlement = commands.add_parser("settlement", help="settlement state: rebuild Redis from Kafka after it lost data")
    settlement.add_argument("action", choices=["rebuild"])
    settlement.add_argument("--force", action="store_true", help="rebuild even though Redis is not behind Kafka")
    settlement.add_argument("--accept-differences", action="store_true",
                            help="write the markers (the service resumes) even if results differ from the published")
    settlement.add_argument("--batch", type=int, default=500, help="events settled per round of Redis writes")
    clearing = commands.add_parser("clearing", help="cross-region clearing: close a month")
    clearing.add_argument("action", choices=["close"])
    clearing.add_argument("month", help="the month to close, e.g. 2023-03")
    topics = commands.add_parser("topics", help="create every Gongji topic on the configured cluster, or describe "
                                 "them: partitions, replication, cleanup.policy, retention")
    topics.add_argument("action", choices=["create", "describe"])
    run = commands.add_parser("run", help="one service in the foreground")
    run.add_argument("service", choices=SERVICES)
    from gongji.ledger.commands import add_commands as add_ledger_commands

    add_ledger_commands(commands)
    rep = commands.add_parser("replay", help="settle a JSON Lines file offline (- for stdin)")
    rep.add_argument("file")
    rep.add_argument("--batch", type=_at_least_one, default=1, metavar="N",
                     help="settle N events at a time through the service's batching path (default 1); "
                          "the results are the same for any N")
    rep.add_argument("--now", type=_aware_time, default=None, metavar="TIME",
                     help="the present that setl_time is judged against, ISO 8601 with offset (default: the clock)")
    bench = commands.add_parser("bench", help="claims/s and latency through the local stack")
    bench.add_argument("--claims", type=int, default=100_000)
    bench.add_argument("--persons", type=int, default=20_000)
    bench.add_argument("--rate", type=int, default=2000, help="claims/s of the paced (latency) phase")
    bench.add_argument("--workers", type=int, default=2, help="settlement processes in the consumer group")
    bench.add_argument("--no-downstream", dest="downstream", action="store_false",
                       help="skip timing the ledger, clearing and fraud consumers")
    args = parser.parse_args(argv)

    try:
        _dispatch(args)
    except PolicyError as error:  # a bad policy file stops start-up, naming the file and the field
        sys.exit(f"gongji: policy not loaded: {error}")
    except BrokenPipeError:  # `gongji replay file | head`
        sys.stderr.close()
    except KeyboardInterrupt:  # Ctrl-C before a command's own handling is in place (imports take a moment)
        sys.exit(130)


def _dispatch(args: argparse.Namespace) -> None:
    from gongji.common.observe import configure_logging

    configure_logging()
    if args.command == "stack":
        from gongji.local.stack import stack_down, stack_up

        if args.action == "up":
            state = stack_up(STATE_DIR)
            if not state["already_running"]:
                state["dashboard_url"] = start_stack_services(args.policies)
            print(("already running: " if state["already_running"] else "started: ")
                  + f"GONGJI_KAFKA_BOOTSTRAP_SERVERS={state['kafka_bootstrap_servers']} "
                  f"GONGJI_REDIS_URL={state['redis_url']} GONGJI_DATABASE_URL={state.get('database_url')}"
                  + (f"\ndashboard: {state['dashboard_url']}" if state.get("dashboard_url") else ""))
        else:
            print("stopped" if stack_down(STATE_DIR) else "no local stack was running")
    elif args.command == "topics":
        from aiokafka.errors import KafkaError

        from gongji.common.topic_admin import TopicError

        settings = resolve_settings()
        try:
            sys.exit(asyncio.run(topics_command(settings, args.action)))
        except TopicError as error:
            sys.exit(f"gongji: {error}")
        except KafkaError as error:
            sys.exit(f"gongji: Kafka at {settings.kafka_bootstrap_servers}: {error!r}")
    elif args.command == "run" and args.service == "settlement":
        from gongji.settlement.policy import load_policy_book

        book = load_policy_book(args.policies)  # a bad policy file stops start-up before anything runs
        asyncio.run(run_settlement(resolve_settings(), book))
    elif args.command in ("ledger", "reconcile") or (args.command == "run" and args.service == "ledger"):
        from gongji.ledger.commands import dispatch

        dispatch(args, resolve_settings())
    elif args.command == "run" and args.service == "fraud":
        asyncio.run(run_fraud(resolve_settings()))
    elif args.command == "run" and args.service == "dashboard":
        from gongji.dashboard.service import run_dashboard

        asyncio.run(run_dashboard(resolve_settings(), args.policies))
    elif args.command == "run":
        asyncio.run(run_clearing(resolve_settings()))
    elif args.command == "settlement":
        from gongji.settlement.policy import load_policy_book

        book = load_policy_book(args.policies)
        sys.exit(asyncio.run(rebuild_settlement(resolve_settings(), book, args)))
    elif args.command == "clearing":
        asyncio.run(close_clearing(resolve_settings(), args.month))
    elif args.command == "replay":
        asyncio.run(replay(args.file, args.policies, args.batch, args.now))
    elif args.command == "demo":
        from gongji.local.demo import run_demo

        asyncio.run(run_demo(rate=args.rate, seconds=args.seconds, persons=args.persons, policy_dir=args.policies))
    elif args.command == "bench":
        from gongji.local.bench import run_bench

        asyncio.run(run_bench(claims=args.claims, persons=args.persons, policy_dir=args.policies, rate=args.rate,
                              workers=args.workers, downstream=args.downstream))


if __name__ == "__main__":
    main()
