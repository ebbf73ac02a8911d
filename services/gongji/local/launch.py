"""Running Gongji end to end, as `gongji demo` and `gongji bench` do.

Servers: the ones GONGJI_KAFKA_BOOTSTRAP_SERVERS and GONGJI_REDIS_URL name, else a LocalStack of
their own. Names: a topic prefix, Redis key prefix and consumer group that no other run uses, so
runs sharing a cluster never mix. The settlement service: a child process (`gongji run
settlement`), as deployed, given those settings through its environment. Inputs: synthetic events
encoded and keyed for their topics as CONTRACT.md says.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from gongji.common.avro import SchemaCatalog
from gongji.common.topic_admin import ensure_service_topics
from gongji.contract.topics import service_topics
from gongji.common.signing import Key
from gongji.contract.wire import INPUT_RECORDS, TYPE_HEADER
from gongji.local.credentials import for_role
from gongji.local.errors import StackError
from gongji.local.processes import Started, die_with_parent, free_port, wait_started, yield_cpu
from gongji.local.stack import LocalStack, stack_settings
from gongji.local.tls import as_principal, principal
from gongji.settings import Settings
from gongji.settlement.catalogue import record_key

#: A topic message ready to send: (topic, key, value, id of the event: claim_id, credit_id or key,
#: headers: its type, and its signature when a key is configured).
Row = tuple[str, bytes, bytes, str, list[tuple[str, bytes]]]


def servers(workdir: Path, key_prefix: str | None = None) -> tuple[LocalStack | None, Settings]:
    """Settings on the configured servers when both are set, else on a LocalStack started in
    `workdir` (its services' Redis users limited to `key_prefix`), as its operator; the stack (None
    for configured servers) is the caller's to stop, its `credentials()` what start_service takes."""
    if os.environ.get("GONGJI_KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("GONGJI_REDIS_URL"):
        return None, Settings()
    stack = LocalStack(workdir, key_prefix=key_prefix, kafka_tls=Settings().local_kafka_tls).start()
    # The stack's own database too: never a configured one beside a scratch broker.
    return stack, Settings(**stack_settings(stack.state()))


def isolated(settings: Settings, tag: str) -> Settings:
    """The same servers, with topics, Redis keys and consumer groups of this run's own."""
    settings = settings.model_copy(update={"key_prefix": tag, "settlement_group": f"{tag}-settlement",
                                           "clearing_group": f"{tag}-clearing", "ledger_group": f"{tag}-ledger",
                                           "ledger_schema": tag.lower().replace("-", "_"),
                                           "fraud_group": f"{tag}-fraud"})
    return Settings(**{**settings.model_dump(exclude={"topics"}), "topic_prefix": f"{tag}."})


def with_dashboard_port(settings: Settings) -> Settings:
    """The configured dashboard port if nothing listens on it, else a free one (a second demo, or a
    demo beside `gongji stack up`)."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((settings.dashboard_host, settings.dashboard_port))
            return settings
        except OSError:
            pass
    return settings.model_copy(update={"dashboard_port": free_port()})


def with_gateway_port(settings: Settings) -> Settings:
    """The configured gateway port if nothing listens on it, else a free one (as for the dashboard)."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((settings.gateway_host, settings.gateway_port))
            return settings
        except OSError:
            pass
    return settings.model_copy(update={"gateway_port": free_port()})


def gateway_url(settings: Settings) -> str:
    return f"http://{settings.gateway_host}:{settings.gateway_port}/"


def dashboard_url(settings: Settings) -> str:
    scheme = "https" if settings.dashboard_tls_certfile else "http"
    return f"{scheme}://{settings.dashboard_host}:{settings.dashboard_port}/"


#: The services that follow settlement's results and answer no one waiting: on the local stack they
#: yield the CPU to the path a claim's answer takes (Settings.local_downstream_nice).
YIELDING = frozenset({"ledger", "clearing", "fraud", "dashboard"})


def start_service(service: str, settings: Settings, policy_dir: Path | None, log: IO[bytes], count: int = 1, *,
                  detach: bool = False, cwd: Path | None = None, outlive: bool = False,
                  credentials: dict | None = None) -> list[subprocess.Popen]:
    """`count` processes of `gongji run SERVICE` in one consumer group, logging to `log`.

    `credentials`: a local stack's (LocalStack.credentials()); the processes then get only the
    service's own, `settings` being the operator's. The ledger's schema is migrated first, as the
    owner: the service's writer role may not create it.

    `outlive`: in a session of their own and left running when the caller exits (`gongji stack up`).

    `detach`: each in a session of its own, so a terminal's Ctrl-C reaches only the caller, which
    stops them when it chooses; and SIGTERMed by the kernel should the caller die first (Linux).
    """
    command = [sys.executable, "-m", "gongji"] + (["--policies", str(policy_dir)] if policy_dir else [])
    if credentials and service == "ledger":
        migrate_ledger(settings)
    # its own certificate, and its own credentials in the stores
    env = {**os.environ, **for_role(as_principal(settings, principal(service)), credentials, service).to_env()}
    processes = [subprocess.Popen(command + ["run", service], env=env, stdout=log, stderr=log, cwd=cwd,
                                  stdin=subprocess.DEVNULL if detach or outlive else None,
                                  start_new_session=detach or outlive,
                                  preexec_fn=die_with_parent(os.getpid()) if detach and not outlive else None)
                 for _ in range(count)]
    if service in YIELDING:  # just started: still one thread, whose later threads inherit its niceness
        for process in processes:
            yield_cpu(process.pid, settings.local_downstream_nice)
    return processes


def migrate_ledger(settings: Settings) -> list[str]:
    """`gongji ledger migrate` for `settings` (the owner's), granting the writer role."""
    from gongji.ledger.store import migrate

    return migrate(settings.database_url, settings.ledger_schema, settings.ledger_writer_role,
                   settings.database_password_value())


#: What the services with an address log once they listen (their commands.py), in their own log.
SERVING = {service: re.compile(rb"%s: (https?://[^\s\"]+/) \(Kafka" % service.encode())
           for service in ("dashboard", "gateway")}
START_TIMEOUT = 120.0  # seconds for the dashboard and the gateway to listen once started


def start_stack_services(policy_dir: Path | None) -> str:
    """Every service of SERVICES in the background on the local stack (`gongji stack up`), recorded
    in its state file; returns the dashboard's address, once it and the gateway listen. A service
    that dies meanwhile (a port taken) stops the stack: StackError naming it and why."""
    from gongji.local.stack import record_processes, stack_down
    from gongji.local.state import STATE_DIR, local_stack_settings, read_state
    from gongji.local.dashboard_login import login_hint, with_dashboard_access
    from gongji.services import SERVICES

    # The stack's own servers, whatever the shell's GONGJI_* say: its services must not write elsewhere.
    settings = with_gateway_port(with_dashboard_access(with_dashboard_port(local_stack_settings(Settings())), STATE_DIR))
    credentials = read_state()["credentials"]
    processes, started = {}, []
    for service in SERVICES:
        log_path = STATE_DIR / f"{service}.log"
        with open(log_path, "ab") as log:
            offset = log.tell()
            (process,) = start_service(service, settings, policy_dir, log, outlive=True, cwd=STATE_DIR,
                                       credentials=credentials)
        processes[service] = {"pid": process.pid, "binary": sys.executable, "log": str(log_path.resolve())}
        started.append(Started(service, process, log_path, offset, SERVING.get(service)))
    record_processes(STATE_DIR, processes, dashboard_url=dashboard_url(settings), dashboard_login=login_hint(settings),
                     gateway_url=gateway_url(settings))
    try:  # every service up, or the stack stopped: a dashboard that lost its port is no stack
        urls = wait_started(started, START_TIMEOUT)
    except StackError:
        stack_down(STATE_DIR)
        raise
    record_processes(STATE_DIR, {}, dashboard_url=urls["dashboard"], gateway_url=urls["gateway"])
    return f"{urls['dashboard']} ({login_hint(settings)})"


def stop_processes(processes: Iterable[subprocess.Popen], timeout: float = 30) -> None:
    """SIGTERM each (a service finishes and commits its batch in flight), then wait for all."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout)


def input_topic(settings: Settings, kind: str) -> str:
    """The topic an input event of type `kind` goes to (CONTRACT.md, "Topics")."""
    topics = settings.topics
    return {"claim": topics.claims, "reversal": topics.claims, "credit": topics.credits,
            "person": topics.persons, "institution": topics.institutions, "catalogue": topics.catalogue}[kind]


async def prepare_topics(settings: Settings) -> None:
    """The settlement service's inputs and outputs, created before it starts so that nothing is
    produced to, or read from, a topic the broker would auto-create with its own partition count."""
    await ensure_service_topics(settings, service_topics(settings.topics, "settlement"))


def encode(catalog: SchemaCatalog, settings: Settings, events: Iterable[tuple[str, dict]],
           signer: Key | None = None) -> list[Row]:
    """Input events as topic messages, keyed by psn_no (institutions by fixmedins_code, catalogue
    items by region, item and first day), signed by `signer` when given
    (gongji.common.signing.signer(settings): the configured key)."""
    rows = []
    for kind, data in events:
        key = data["fixmedins_code"] if kind == "institution" else record_key(
            data["admdvs"], data["med_list_codg"], str(data["begndate"])) if kind == "catalogue" else data["psn_no"]
        ident = data.get("claim_id") or data.get("credit_id") or key
        rows.append(row(settings, kind, key.encode(), catalog.encode(INPUT_RECORDS[kind], data), ident, signer))
    return rows


def row(settings: Settings, kind: str, key: bytes, value: bytes, ident: str, signer: Key | None = None) -> Row:
    """One input message of type `kind`, with its type header and, given a signer, its signature."""
    topic = input_topic(settings, kind)
    headers = signer.headers(topic, key, kind, value) if signer else [(TYPE_HEADER, kind.encode())]
    return topic, key, value, ident, headers
