"""`gongji demo`: the whole settlement path on one machine, watched while it runs.

Starts the local stack (or uses the servers GONGJI_KAFKA_BOOTSTRAP_SERVERS and GONGJI_REDIS_URL
name) under topic and key prefixes of this run's own, one settlement service as a child process,
and synthetic traffic for both seed regions: the registry, then the accounts' opening credits,
then claims, reversals and resends at a steady rate. Every 500th message on `claims` is
deliberately bad (junk bytes, or a claim with a negative amount) so the dead-letter path shows.
It reads `settlements` and `dead-letters` back and shows the figures: a live view on a terminal,
a progress line every 2 s otherwise. Ctrl-C or --seconds stops the traffic; the service is given
a moment to drain, a summary is printed, and everything the demo started is stopped.

The parts: `traffic` (what is sent and read back), `figures` (the run's figures, folded by the
dashboard's Board), `view` (the live view and progress lines), `summaries` (what is printed at
the end). This module runs them and the processes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console

from gongji.common.avro import SchemaCatalog
from gongji.common.topic_admin import ensure_service_topics
from gongji.local.dashboard_login import login_hint, with_dashboard_access
from gongji.local.demo.figures import Run
from gongji.local.demo.summaries import clearing_summary, fraud_summary, ledger_summary, summary
from gongji.local.demo.traffic import feed, read_results, wait_set
from gongji.local.demo.view import LiveView, PlainView
from gongji.local.errors import DemoError, LocalError
from gongji.local.launch import (
    dashboard_url,
    isolated,
    prepare_topics,
    servers,
    start_service,
    stop_processes,
    with_dashboard_port,
    with_gateway_port,
)
from gongji.local.synthetic import Traffic
from gongji.settlement.policy import load_policy_book

DRAIN_SECONDS = 10.0
TICK = 0.25  # the view's refresh: about 4 a second
TRAFFIC_WINDOW = 5_000  # claims kept for reversals to pick from: the demo may run for hours


async def run_demo(rate: int, seconds: float | None, persons: int, policy_dir) -> None:
    """Run the demo until Ctrl-C (or SIGTERM, SIGHUP) or for `seconds`; see the module docstring."""
    if rate < 1 or persons < 2:
        sys.exit("gongji demo: --rate must be at least 1 and --persons at least 2")
    started = time.monotonic()
    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # its INFO lines would scroll through the view
    logging.getLogger("yoyo").setLevel(logging.WARNING)  # the ledger's migration, run here as the owner
    book = load_policy_book(policy_dir)  # a bad policy file stops the demo before anything starts
    policy_dir = Path(policy_dir).resolve() if policy_dir else None  # the service runs in the workdir
    stop, hurry = asyncio.Event(), asyncio.Event()
    signals = _on_signals(stop, hurry)  # first: a Ctrl-C while the stack starts stops the demo once it is up
    workdir = Path(tempfile.mkdtemp(prefix="gongji-demo-"))
    print(f"gongji demo: starting in {workdir} ...", flush=True)
    stack = None
    try:
        tag = "d" + uuid.uuid4().hex[:6]
        stack, base = servers(workdir, key_prefix=tag)
        tagged = with_gateway_port(with_dashboard_access(with_dashboard_port(isolated(base, tag)), workdir))
        run = Run(tagged, rate, workdir / "settlement.log", book.region_names(), started=started)
        if not stop.is_set():
            await _run(run, persons, policy_dir, stop, hurry, started + seconds if seconds else None,
                       stack.credentials() if stack else None)
    except LocalError as error:
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
               deadline: float | None, credentials: dict | None) -> None:
    """Service, reader and traffic on the stack; the view while they run; the summary at the end.
    `run.settings` are the operator's (the traffic, the summaries); each service gets its own
    `credentials` (a local stack's; None: the configured servers')."""
    catalog = SchemaCatalog()
    await prepare_topics(run.settings)
    await ensure_service_topics(run.settings, [run.settings.topics.fraud_signals])  # read below from the start
    with open(run.log, "ab") as log:
        service = start_service("settlement", run.settings, policy_dir, log, detach=True, cwd=run.log.parent,
                                credentials=credentials)[0]
    downstream = {}
    for name in downstream_services(run.settings):
        with open(run.log.with_name(f"{name}.log"), "ab") as log:
            downstream[name] = start_service(name, run.settings, policy_dir, log, detach=True, cwd=run.log.parent,
                                             credentials=credentials)[0]
    if "dashboard" in downstream:
        print(f"gongji demo: live dashboard at {dashboard_url(run.settings)} (open it in a browser; "
              f"{login_hint(run.settings)})", flush=True)
    done = asyncio.Event()
    # A quarter of the fee lines leave their class to the seed regions' sample catalogues (就医地目录).
    traffic = Traffic(persons=persons, tag=run.settings.key_prefix, window=TRAFFIC_WINDOW, unclassified=0.25)
    reader = asyncio.create_task(read_results(run, catalog, done))
    feeder = asyncio.create_task(feed(run, catalog, traffic, stop))
    console = Console()
    try:
        with (LiveView if console.is_terminal else PlainView)(console, run) as view:
            await _watch(view, service, (feeder, reader), stop, deadline)
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


def downstream_services(settings) -> list[str]:
    """The services the demo runs beside settlement: every one `gongji run` knows; the ledger only
    with a PostgreSQL to write to."""
    from gongji.services import SERVICES

    return [name for name in SERVICES if name != "settlement" and (name != "ledger" or settings.database_url)]


async def _watch(view, service, tasks, stop: asyncio.Event, deadline: float | None) -> None:
    """Refresh the view until `stop` or the deadline; raise if the service or a task failed."""
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        _check(service, tasks)
        view.update()
        await wait_set(stop, TICK)


async def _drain(run: Run, view, service, hurry: asyncio.Event) -> None:
    """Give the service a moment to answer what was sent: until nothing is in flight, a second
    Ctrl-C, or DRAIN_SECONDS."""
    until = time.monotonic() + DRAIN_SECONDS
    while run.in_flight() and time.monotonic() < until and service.poll() is None:
        view.update()
        if await wait_set(hurry, TICK):
            break
    view.update()


def _check(service, tasks) -> None:
    if service.poll() is not None:
        raise DemoError(f"the settlement service exited with status {service.returncode}")
    for task in tasks:
        if task.done():
            task.result()  # raises what the task raised
