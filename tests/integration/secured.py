"""A valkey-server with ACL users and a PostgreSQL with scram-sha-256 passwords, started for the
store-authentication tests (the local stack itself still runs them open: issue 10 switches it when
every client can authenticate)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gongji.local.processes import die_with_parent, free_port, stop_signal, terminate
from gongji.local.servers import (
    Server,
    init_postgres,
    postgres_bindir,
    postgres_ready,
    redis_ready,
    redis_server_binary,
)
from gongji.local.store_users import ADMIN, StoreCredentials, redis_acl, redis_user

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy/postgres/roles.sql"


def _start(server: Server, workdir: Path, ready, timeout: float = 30.0) -> Server:
    with open(server.log, "wb") as log:
        server.process = subprocess.Popen(server.argv(workdir), cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True, user=server.user,
                                          preexec_fn=die_with_parent(os.getpid(), stop_signal(server.name)))
    server.pid = server.process.pid
    deadline = time.monotonic() + timeout
    while not ready():
        if server.process.poll() is not None or time.monotonic() > deadline:
            terminate(server.pid, server.process, first=stop_signal(server.name))
            raise AssertionError(f"{server.name} did not start: {server.log_tail()}")
        time.sleep(0.05)  # polling for the positive marker: the server answers
    return server


def _stop(server: Server) -> None:
    terminate(server.pid, server.process, first=stop_signal(server.name))
    if server.data is not None and server.user is not None:
        shutil.rmtree(server.data.parent, ignore_errors=True)


@dataclass
class SecuredRedis:
    port: int
    prefix: str
    credentials: StoreCredentials

    def url(self, service: str | None = None, password: str | None = None) -> str:
        """redis:// for `service`'s user (the admin when None), with its password or `password`."""
        user = redis_user(service) if service else ADMIN
        secret = password or (self.credentials.redis[service] if service else self.credentials.redis_admin)
        return f"redis://{user}:{secret}@127.0.0.1:{self.port}/0"

    @property
    def bare_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def secured_redis(workdir: Path, prefix: str):
    """Generator for a fixture: a valkey-server whose users are redis_acl's for `prefix`."""
    credentials = StoreCredentials()
    acl = workdir / "users.acl"
    acl.write_text(redis_acl(credentials.redis, prefix, credentials.redis_admin))
    acl.chmod(0o600)
    server = Server("redis", redis_server_binary(), free_port(), workdir / "redis.log", acl_file=acl)
    _start(server, workdir, lambda: redis_ready(server.port, ADMIN, credentials.redis_admin))
    try:
        yield SecuredRedis(server.port, prefix, credentials)
    finally:
        _stop(server)


@dataclass
class SecuredPostgres:
    port: int
    credentials: StoreCredentials
    data: Path

    def url(self, role: str, password: str | None = None) -> str:
        """The ledger's database (roles.sql's `gongji`) as `role`, with `password` in the URL if given."""
        return f"postgresql://{role}:{password}@127.0.0.1:{self.port}/gongji" if password else \
            f"postgresql://{role}@127.0.0.1:{self.port}/gongji"


def secured_postgres(workdir: Path):
    """Generator for a fixture: PostgreSQL with scram-sha-256 for every connection, and the
    ledger's owner and writer roles and database (deploy/postgres/roles.sql)."""
    credentials = StoreCredentials()
    bindir = postgres_bindir()
    data, user = init_postgres(workdir, bindir, credentials.postgres_superuser)
    server = Server("postgres", str(bindir / "postgres"), free_port(), workdir / "postgres.log", data=data, user=user)
    _start(server, workdir, lambda: postgres_ready(server.port, credentials.postgres_superuser))
    try:
        # The roles as deployed: deploy/postgres/roles.sql, through psql.
        done = subprocess.run(
            [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(server.port),
             "-U", "postgres", "-d", "postgres", "-v", f"owner_password={credentials.ledger_owner}",
             "-v", f"writer_password={credentials.ledger_writer}", "-f", str(ROLES_SQL)],
            env={**os.environ, "PGPASSWORD": credentials.postgres_superuser}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        yield SecuredPostgres(server.port, credentials, data)
    finally:
        _stop(server)
