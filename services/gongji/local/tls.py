"""The local stack's certificates: a CA of its own, the broker's certificate (for the TLS terminator
in front of Tansu, gongji.local.terminator) and one client certificate per principal, made with the
`cryptography` package into the stack's folder; and the settings that put a client on them.

A principal is the certificate's CN: `gongji-<service>` for each service `gongji stack up` and the
demo start, `gongji-tools` for everything else (the CLI, the demo's traffic, the tests). Tansu has
no ACLs (README, "Kafka security"), so today the principal names who connected, in the
terminator's log; on a real cluster it is what the ACLs are written for.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from gongji.local.credentials import write_private
from gongji.services import SERVICES
from gongji.settings import Settings

TOOLS = "gongji-tools"
#: Every principal the local stack makes a certificate for.
PRINCIPALS = (*(f"gongji-{service}" for service in SERVICES), TOOLS)
#: The names the broker's certificate is valid for: what clients of the local stack dial.
BROKER_HOSTS = ("127.0.0.1", "localhost")
BROKER = "broker"
VALID_DAYS = 30  # a scratch stack's; made anew with each stack


def principal(service: str) -> str:
    return f"gongji-{service}"


@dataclass(frozen=True)
class Pki:
    """Where a CA's files are: ca.pem, and <name>.pem / <name>.key for the broker and each principal."""

    folder: Path

    @property
    def cafile(self) -> Path:
        return self.folder / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.folder / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"

    def client_settings(self, name: str = TOOLS) -> dict[str, str]:
        """The Settings fields of a client connecting as `name`: SSL, this CA, its own certificate."""
        return {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": str(self.cafile),
                "kafka_ssl_certfile": str(self.cert(name)), "kafka_ssl_keyfile": str(self.key(name))}


def make_pki(folder: str | Path, principals: tuple[str, ...] = PRINCIPALS,
             hosts: tuple[str, ...] = BROKER_HOSTS, ca_name: str = "Gongji local stack CA") -> Pki:
    """A new CA in `folder` (replacing any there), a broker certificate for `hosts` (IP addresses
    and DNS names as subject alternative names) and a client certificate per principal; keys 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki = Pki(Path(folder))
    pki.folder.mkdir(parents=True, exist_ok=True)
    pki.folder.chmod(0o700)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gongji local stack"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def build(subject: str, key, issuer_key, issuer: x509.Name, *, ca: bool = False, usage=None, alt=None):
        public = key.public_key()
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer)
                   .public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(stem: str, certificate, key) -> None:
        from cryptography.hazmat.primitives import serialization

        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        write_private(pki.key(stem), pem)
        pki.cert(stem).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = name(ca_name)
    write("ca", build(ca_name, ca_key, ca_key, ca_subject, ca=True), ca_key)
    pki.key("ca").unlink()  # nothing signs after this: the CA's key is not kept

    def alt_name(host: str) -> x509.GeneralName:
        try:
            return x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            return x509.DNSName(host)

    key = ec.generate_private_key(ec.SECP256R1())
    write(BROKER, build(BROKER, key, ca_key, ca_subject, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                        alt=[alt_name(host) for host in hosts]), key)
    for client in principals:
        key = ec.generate_private_key(ec.SECP256R1())
        write(client, build(client, key, ca_key, ca_subject, usage=ExtendedKeyUsageOID.CLIENT_AUTH), key)
    return pki


def as_principal(settings: Settings, name: str) -> Settings:
    """`settings` with the client certificate of `name` in place of theirs, when their certificate
    is one of a local stack's (its folder holds `name`'s too); otherwise unchanged (a configured
    cluster's certificates are the operator's to hand out)."""
    if not settings.kafka_ssl_certfile or settings.kafka_ssl_cafile is None:
        return settings
    pki = Pki(Path(settings.kafka_ssl_certfile).parent)
    if pki.cafile != Path(settings.kafka_ssl_cafile) or not pki.cert(name).exists():
        return settings
    return settings.model_copy(update={"kafka_ssl_certfile": pki.cert(name), "kafka_ssl_keyfile": pki.key(name)})
