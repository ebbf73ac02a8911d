"""Kafka security from settings (issue 10): what `gongji.common.kafka.client_options` gives every
client, that secrets reach a child and no printout, and that nothing in
services/ builds a Kafka client any other way."""

from __future__ import annotations

import ast
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from gongji.common import kafka
from gongji.settings import Settings

pytestmark = pytest.mark.unit

SERVICES = Path(__file__).resolve().parents[2] / "services" / "gongji"
TESTS = Path(__file__).resolve().parents[1]
FACTORY = SERVICES / "common" / "kafka.py"
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
SECRET = "s3cret-Ω"


def kafka_constructions(tree: ast.AST) -> list[tuple[str, int]]:
    """(class, line) of every call of an aiokafka client class, by name or attribute
    (`AIOKafkaProducer(...)`, `aiokafka.AIOKafkaProducer(...)`, an alias bound by import)."""
    aliases = set(CLIENTS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            aliases |= {alias.asname for alias in node.names if alias.name in CLIENTS and alias.asname}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name in aliases:
                found.append((name, node.lineno))
    return found


def test_the_walk_finds_a_construction_however_it_is_written():
    tree = ast.parse("from aiokafka import AIOKafkaConsumer as C\nimport aiokafka\n"
                     "a = C()\nb = aiokafka.AIOKafkaProducer(x=1)\nc = f(AIOKafkaAdminClient(y=2))\n")
    assert sorted(line for _, line in kafka_constructions(tree)) == [3, 4, 5]


def test_no_kafka_client_is_built_outside_the_factory():
    """Every aiokafka client in services/ and tests/ comes from gongji.common.kafka (so it gets the
    security settings: the local stack's TLS and client certificate too); a client built elsewhere
    would connect without them."""
    outside = [f"{path}:{line} {name}" for path in sorted([*SERVICES.rglob("*.py"), *TESTS.rglob("*.py")])
               if path != FACTORY for name, line in kafka_constructions(ast.parse(path.read_text()))]
    assert outside == []
    assert len(kafka_constructions(ast.parse(FACTORY.read_text()))) == 3  # producer, consumer, admin


def sasl(**overrides) -> Settings:
    return Settings(**{"kafka_bootstrap_servers": "k1:9093", "kafka_security_protocol": "SASL_PLAINTEXT",
                       "kafka_sasl_username": "settlement", "kafka_sasl_password": SECRET, **overrides})


def test_plaintext_gives_only_the_brokers():
    assert kafka.client_options(Settings(kafka_bootstrap_servers="k1:9092")) == {
        "bootstrap_servers": "k1:9092", "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_gives_mechanism_user_and_password(mechanism):
    options = kafka.client_options(sasl(kafka_sasl_mechanism=mechanism))
    assert options == {"bootstrap_servers": "k1:9093", "security_protocol": "SASL_PLAINTEXT",
                       "sasl_mechanism": mechanism, "sasl_plain_username": "settlement",
                       "sasl_plain_password": SECRET}


def test_the_default_mechanism_is_scram_sha_512():
    assert kafka.client_options(sasl())["sasl_mechanism"] == "SCRAM-SHA-512"


def test_a_password_file_is_read_when_a_client_is_built(tmp_path):
    secret = tmp_path / "password"
    secret.write_text(SECRET + "\n", encoding="utf-8")  # as `kubectl create secret --from-file` often has it
    settings = Settings(kafka_bootstrap_servers="k1:9093", kafka_security_protocol="SASL_PLAINTEXT",
                        kafka_sasl_username="ledger", kafka_sasl_password_file=secret)
    assert kafka.client_options(settings)["sasl_plain_password"] == SECRET
    secret.write_text("rotated", encoding="utf-8")
    assert kafka.client_options(settings)["sasl_plain_password"] == "rotated"
    secret.unlink()
    with pytest.raises(ValueError, match="GONGJI_KAFKA_SASL_PASSWORD_FILE: cannot read .*password"):
        kafka.client_options(settings)


@pytest.mark.parametrize("fields, complaint", [
    (dict(kafka_security_protocol="SASL_SSL"), "needs kafka_sasl_username"),
    (dict(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u"), "needs kafka_sasl_username"),
    (dict(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_password="p"), "needs kafka_sasl_username"),
    (dict(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u", kafka_sasl_password="p",
          kafka_sasl_password_file="/run/secrets/p"), "needs kafka_sasl_username"),
    (dict(kafka_sasl_username="u", kafka_sasl_password="p"), "SASL credentials are set"),
    (dict(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u", kafka_sasl_password="p",
          kafka_ssl_cafile="/ca.pem"), "SSL files are set"),
    (dict(kafka_ssl_cafile="/ca.pem"), "SSL files are set"),
    (dict(kafka_security_protocol="SSL", kafka_ssl_keyfile="/k.pem"), "kafka_ssl_keyfile without"),
    (dict(kafka_security_protocol="SASL_TLS"), "SASL_SSL"),
    (dict(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="GSSAPI", kafka_sasl_username="u",
          kafka_sasl_password="p"), "SCRAM-SHA-512"),
])
def test_inconsistent_security_settings_are_refused_at_start(fields, complaint):
    """A credential or file the protocol would not use means someone believes it is in force."""
    with pytest.raises(ValidationError, match=complaint):
        Settings(kafka_bootstrap_servers="k1:9093", **fields)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, and a client certificate and key it signed (PEM files), made with openssl."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make test certificates"
    where = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=where, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=gongji test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
        "-subj", "/CN=settlement")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "client.pem", "-days", "2")
    return where


def test_ssl_verifies_the_broker_and_its_hostname_against_the_ca_file(pki):
    settings = Settings(kafka_bootstrap_servers="k1:9093", kafka_security_protocol="SSL",
                        kafka_ssl_cafile=pki / "ca.pem")
    options = kafka.client_options(settings)
    context = options.pop("ssl_context")
    assert options == {"bootstrap_servers": "k1:9093", "security_protocol": "SSL"}
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "gongji test CA"),),)]


def test_ssl_without_a_ca_file_trusts_the_systems_cas():
    context = kafka.client_options(Settings(kafka_bootstrap_servers="k1:9093",
                                            kafka_security_protocol="SSL"))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs() == [] or all(ca["subject"] != ((("commonName", "gongji test CA"),),)
                                               for ca in context.get_ca_certs())


def test_mtls_loads_the_client_certificate_and_refuses_a_key_that_does_not_match(pki):
    settings = sasl(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=pki / "ca.pem",
                    kafka_ssl_certfile=pki / "client.pem", kafka_ssl_keyfile=pki / "client.key")
    options = kafka.client_options(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_plain_password"] == SECRET
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    wrong = settings.model_copy(update={"kafka_ssl_keyfile": pki / "ca.key"})
    with pytest.raises(kafka.KafkaSettingsError, match="GONGJI_KAFKA_SSL_CERTFILE=.*client.pem.*ca.key"):
        kafka.client_options(wrong)
    with pytest.raises(kafka.KafkaSettingsError, match="GONGJI_KAFKA_SSL_CAFILE=.*nowhere.pem"):
        kafka.client_options(settings.model_copy(update={"kafka_ssl_cafile": pki / "nowhere.pem"}))


async def test_producer_consumer_and_admin_all_take_the_options(pki):
    settings = sasl(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=pki / "ca.pem",
                    kafka_sasl_mechanism="SCRAM-SHA-256")
    clients = [kafka.producer(settings).client, kafka.consumer(settings, "g", "t")._client,
               kafka.admin(settings)._client]
    for client in clients:
        assert (client._security_protocol, client._sasl_mechanism, client._sasl_plain_username,
                client._sasl_plain_password) == ("SASL_SSL", "SCRAM-SHA-256", "settlement", SECRET)
        assert client._ssl_context.check_hostname


def test_the_password_reaches_a_child_and_no_printout(monkeypatch, tmp_path):
    file_env = Settings(kafka_bootstrap_servers="k1:9093", kafka_security_protocol="SASL_PLAINTEXT",
                        kafka_sasl_username="u", kafka_sasl_password_file=tmp_path / "p").to_env()
    assert file_env["GONGJI_KAFKA_SASL_PASSWORD"] == "" and file_env["GONGJI_KAFKA_SASL_PASSWORD_FILE"] == str(tmp_path / "p")
    settings = sasl(kafka_security_protocol="SASL_SSL")
    env = settings.to_env()
    assert env["GONGJI_KAFKA_SASL_PASSWORD"] == SECRET and env["GONGJI_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    for key in os.environ:
        if key.startswith("GONGJI_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    child = Settings()
    assert child == settings and child.kafka_sasl_secret() == SECRET
    for printout in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert SECRET not in printout


def test_only_aiokafkas_scram_key_error_is_taken_for_a_refused_password():
    """The CLI turns Kafka refusals into one line; any other KeyError('v') stays a bug with its traceback."""
    from gongji.common.kafka_failures import explain, is_kafka_failure

    try:
        {}["v"]
    except KeyError as error:
        assert not is_kafka_failure(error)
    assert is_kafka_failure(kafka.KafkaSettingsError("GONGJI_KAFKA_SSL_CAFILE=/x: no such file"))
    assert explain(kafka.KafkaSettingsError("GONGJI_KAFKA_SSL_CAFILE=/x: gone"), None) == "GONGJI_KAFKA_SSL_CAFILE=/x: gone"
