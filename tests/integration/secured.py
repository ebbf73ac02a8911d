"""The secured stores as the store-authentication tests see them: the local stack's own Valkey and
PostgreSQL (`stack_redis`, `stack_postgres`: its users, roles and password files), and a valkey-server
whose users are limited to one key prefix, as deploy/redis/users.acl.example is (`secured_redis`:
the local stack's users take any prefix, since each test has its own)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gongji.local.processes import die_with_parent, free_port, stop_signal, terminate
from gongji.local.servers import (
    Server,
    redis_ready,
    redis_server_binary,
)
from gongji.local.credentials import OPERATOR, read_secret
from gongji.local.store_users import ADMIN, LEDGER_OWNER, LEDGER_WRITER, REDIS_RULES, StoreCredentials, redis_acl, redis_user

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


def stack_secrets(stack) -> StoreCredentials:
    """The local stack's passwords, read from its files."""
    folder = Path(stack.credentials[OPERATOR]["redis_password_file"]).parent
    return StoreCredentials(redis={service: read_secret(folder / f"redis-{service}") for service in REDIS_RULES},
                            redis_admin=read_secret(folder / "redis-admin"),
                            postgres_superuser=read_secret(folder / "postgres"),
                            ledger_owner=read_secret(folder / LEDGER_OWNER),
                            ledger_writer=read_secret(folder / LEDGER_WRITER))


def stack_redis(stack, prefix: str) -> "SecuredRedis":
    return SecuredRedis(urlsplit(stack.redis_url).port, prefix, stack_secrets(stack))


def stack_postgres(stack) -> "SecuredPostgres":
    return SecuredPostgres(urlsplit(stack.database_url).port, stack_secrets(stack), None)


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
    data: Path | None

    def url(self, role: str, password: str | None = None) -> str:
        """The ledger's database (roles.sql's `gongji`) as `role`, with `password` in the URL if given."""
        return f"postgresql://{role}:{password}@127.0.0.1:{self.port}/gongji" if password else \
            f"postgresql://{role}@127.0.0.1:{self.port}/gongji"
