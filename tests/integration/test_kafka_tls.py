"""The local stack's Kafka: TLS with a client certificate at the terminator (gongji.local.terminator)
in front of Tansu, certificates from the stack's own CA (gongji.local.tls). Every client of the
suite goes through it (the `stack` fixture gives the tools' certificate); here, who is refused, and
the one line the CLI prints when it is.

Each refusal is paired with what gets through, so a test cannot pass on a broker that is simply away."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.integration.support import answers
from aiokafka.errors import KafkaConnectionError

from gongji.common import kafka
from gongji.common.kafka_failures import diagnose
from gongji.local.processes import die_with_parent, free_port
from gongji.local.tls import PRINCIPALS, TOOLS, Pki, make_pki
from gongji.settings import Settings


@pytest.fixture(scope="module")
def pki(stack) -> Pki:
    if not stack.kafka_security:
        pytest.skip("configured servers: their TLS is the operator's, not the local stack's")
    return Pki(Path(stack.kafka_security["kafka_ssl_cafile"]).parent)


@pytest.fixture(scope="module")
def stranger(tmp_path_factory) -> Pki:
    """Another CA, with certificates for the same principals and hosts."""
    return make_pki(tmp_path_factory.mktemp("stranger"), ca_name="Another CA")


def at(stack, **security) -> Settings:
    return Settings(kafka_bootstrap_servers=stack.kafka_bootstrap_servers, **security)


def ssl_with(cafile: Path, certfile: Path | None = None, keyfile: Path | None = None) -> dict:
    return {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": cafile, "kafka_ssl_certfile": certfile,
            "kafka_ssl_keyfile": keyfile}


async def refused(settings: Settings) -> None:
    with pytest.raises(KafkaConnectionError):
        await answers(settings)


def terminator_says(pki: Pki, reason: str, before: int) -> None:
    """The terminator logged a refusal for `reason` past offset `before` of its log (it writes the
    line as it closes the connection, so a client may see the close first: wait for it)."""
    log = pki.folder.parent / "kafka-tls.log"
    deadline = time.monotonic() + 10
    while f": {reason}" not in log.read_text()[before:]:
        assert time.monotonic() < deadline, log.read_text()[before:]
        time.sleep(0.05)


def log_size(pki: Pki) -> int:
    return len((pki.folder.parent / "kafka-tls.log").read_text())


async def test_every_principal_gets_through_with_its_own_certificate_and_is_named(stack, pki):
    for principal in PRINCIPALS:
        assert isinstance(await answers(at(stack, **pki.client_settings(principal))), list), principal
    log = (pki.folder.parent / "kafka-tls.log").read_text()
    assert all(f"connection from {principal}\n" in log for principal in PRINCIPALS)


def test_keys_are_for_their_owner_only(pki):
    keys = sorted(pki.folder.glob("*.key"))
    assert {key.stem for key in keys} == {*PRINCIPALS, "broker"}  # the CA's key is not kept
    assert all(key.stat().st_mode & 0o777 == 0o600 for key in keys)
    assert pki.folder.stat().st_mode & 0o077 == 0


async def test_a_plaintext_client_at_the_tls_port_is_refused(stack, pki):
    await refused(at(stack))
    assert "the port speaks TLS: set GONGJI_KAFKA_SECURITY_PROTOCOL=SSL" in diagnose(at(stack))


async def test_a_tls_client_without_a_certificate_is_refused(stack, pki):
    anonymous = at(stack, **ssl_with(pki.cafile))
    before = log_size(pki)
    await refused(anonymous)
    terminator_says(pki, "PEER_DID_NOT_RETURN_A_CERTIFICATE", before)
    assert "does it want a client certificate (GONGJI_KAFKA_SSL_CERTFILE)" in diagnose(anonymous)


async def test_a_certificate_from_another_ca_is_refused(stack, pki, stranger):
    forged = at(stack, **ssl_with(pki.cafile, stranger.cert(TOOLS), stranger.key(TOOLS)))
    before = log_size(pki)
    await refused(forged)
    terminator_says(pki, "CERTIFICATE_VERIFY_FAILED", before)
    assert f"GONGJI_KAFKA_SSL_CERTFILE={stranger.cert(TOOLS)}: is it signed by a CA" in diagnose(forged)
    assert diagnose(at(stack, **pki.client_settings(TOOLS))) is None


async def test_a_client_that_does_not_trust_the_stacks_ca_is_refused(stack, pki, stranger):
    misled = at(stack, **ssl_with(stranger.cafile, pki.cert(TOOLS), pki.key(TOOLS)))
    await refused(misled)
    assert f"not trusted by GONGJI_KAFKA_SSL_CAFILE={stranger.cafile}" in diagnose(misled)


@pytest.fixture
def localhost_only(tmp_path):
    """A terminator of its own whose broker certificate names `localhost` alone (no 127.0.0.1)."""
    pki = make_pki(tmp_path / "tls", hosts=("localhost",))
    listening = socket.create_server(("127.0.0.1", 0))
    process = subprocess.Popen([sys.executable, "-m", "gongji.local.terminator", "--listen-fd",
                                str(listening.fileno()), "--upstream", str(free_port()), "--pki", str(pki.folder)],
                               pass_fds=(listening.fileno(),), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=die_with_parent(os.getpid()))
    try:
        yield pki, listening.getsockname()[1]
    finally:
        listening.close()
        process.terminate()
        process.wait(10)


async def test_a_hostname_the_certificate_does_not_hold_is_refused(localhost_only):
    pki, port = localhost_only
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}", **pki.client_settings(TOOLS))
    context = kafka.ssl_context(settings)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # the name it holds: TLS done
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            context.wrap_socket(sock, server_hostname="127.0.0.1")
    await refused(settings)
    assert "the broker's certificate is not for 127.0.0.1" in diagnose(settings)


def gongji(stack, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GONGJI_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
           "GONGJI_REDIS_URL": stack.redis_url, **env}
    return subprocess.run([sys.executable, "-m", "gongji.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The command failed with one line of its own last on stderr, and no traceback."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("case, setting", [
    ("plaintext", "GONGJI_KAFKA_SECURITY_PROTOCOL=SSL"),
    ("no certificate", "GONGJI_KAFKA_SSL_CERTFILE"),
    ("unknown CA", "not trusted by GONGJI_KAFKA_SSL_CAFILE="),
    ("missing CA file", "GONGJI_KAFKA_SSL_CAFILE="),
])
def test_the_cli_says_in_one_line_which_setting_kafka_refused(stack, pki, stranger, case, setting):
    env = {"plaintext": {},
           "no certificate": {"GONGJI_KAFKA_SECURITY_PROTOCOL": "SSL", "GONGJI_KAFKA_SSL_CAFILE": str(pki.cafile)},
           "unknown CA": {"GONGJI_KAFKA_SECURITY_PROTOCOL": "SSL", "GONGJI_KAFKA_SSL_CAFILE": str(stranger.cafile)},
           "missing CA file": {"GONGJI_KAFKA_SECURITY_PROTOCOL": "SSL",
                               "GONGJI_KAFKA_SSL_CAFILE": str(pki.folder / "nowhere.pem")}}[case]
    line = one_line(gongji(stack, "topics", "describe", **env))
    assert line.startswith("gongji: ") and setting in line, line
    right = gongji(stack, "topics", "describe", **{f"GONGJI_{k.upper()}": v for k, v in
                                                   pki.client_settings(TOOLS).items()})
    assert right.stdout.startswith("topic ") and "Kafka" not in right.stderr, right.stderr


def test_a_service_refused_by_kafka_stops_with_one_line(stack, pki, stranger, uniq):
    """`gongji run clearing`: the refusal comes out of the service's consuming loop, through the CLI."""
    own = (stack.credentials or {}).get("clearing", {})  # its Redis user, so that Kafka is what refuses
    redis = {f"GONGJI_{name.upper()}": own[name] for name in ("redis_username", "redis_password_file") if own.get(name)}
    started = time.monotonic()
    line = one_line(gongji(stack, "run", "clearing", GONGJI_KAFKA_SECURITY_PROTOCOL="SSL",
                           GONGJI_KAFKA_SSL_CAFILE=str(stranger.cafile), GONGJI_CLEARING_GROUP=f"{uniq}-clearing",
                           GONGJI_KEY_PREFIX=uniq, GONGJI_TOPIC_PREFIX=f"{uniq}.", **redis))
    assert f"not trusted by GONGJI_KAFKA_SSL_CAFILE={stranger.cafile}" in line and time.monotonic() - started < 60
