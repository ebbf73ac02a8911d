"""Why Kafka refused a client, in one line that names the setting to look at: what the CLI prints
instead of a traceback (gongji.cli).

aiokafka hides the cause of most refusals: a TLS handshake that failed (a CA that does not sign the
broker's certificate, a hostname that does not match, a client certificate the broker does not
take) and a plaintext client at a TLS port all end as `KafkaConnectionError("Unable to bootstrap
…")`, the cause only in a log line; and a wrong SCRAM password on Tansu surfaces as `KeyError('v')`
(its server-final message carries no verifier). So `explain` probes the first bootstrap server
once more with the client's own TLS context, and says what it found.
"""

from __future__ import annotations

import socket
import ssl
import struct
import traceback

from aiokafka.errors import KafkaConnectionError, KafkaError

from gongji.common.kafka import KafkaSettingsError, ssl_context
from gongji.settings import Settings

PROBE_SECONDS = 5.0
# ApiVersions v0, correlation id 1, client id "gongji": a request any Kafka broker answers.
_API_VERSIONS = struct.pack(">hhih", 18, 0, 1, 6) + b"gongji"
_HOSTNAME_MISMATCH = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def is_kafka_failure(error: BaseException) -> bool:
    """A failure `explain` has words for: Kafka's own errors, our settings' files, a SCRAM refusal."""
    return isinstance(error, (KafkaError, KafkaSettingsError, ssl.SSLError)) or _scram_refused(error)


def explain(error: BaseException, settings: Settings | None) -> str:
    """One line: what failed, and which GONGJI_ setting to look at."""
    if isinstance(error, KafkaSettingsError):
        return str(error)
    where = f"Kafka at {settings.kafka_bootstrap_servers}" if settings else "Kafka"
    if _scram_refused(error):
        return (f"{where} refused the SASL login of GONGJI_KAFKA_SASL_USERNAME={settings.kafka_sasl_username} "
                f"({settings.kafka_sasl_mechanism}): wrong password (GONGJI_KAFKA_SASL_PASSWORD or "
                "GONGJI_KAFKA_SASL_PASSWORD_FILE), or no such user")
    if isinstance(error, KafkaConnectionError) and settings is not None:
        found = diagnose(settings)
        if found:
            return f"{where}: {found}"
    return f"{where}: {type(error).__name__}: {error}"


def diagnose(settings: Settings, timeout: float = PROBE_SECONDS) -> str | None:
    """Connect to the first bootstrap server as a client with `settings` would (TCP, then TLS with
    the same context and hostname check, then one request) and say what stopped it; None when
    nothing did (the refusal came later: SASL, or a broker it was sent on to)."""
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
    host = host.strip("[]")
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as error:
        return f"nothing answers there ({error.strerror or error}); check GONGJI_KAFKA_BOOTSTRAP_SERVERS"
    context = ssl_context(settings)
    with sock:
        if context is None:
            return _plaintext_refused(sock, host, settings)
        try:
            with context.wrap_socket(sock, server_hostname=host) as tls:
                return _answered(tls, settings)
        except ssl.SSLCertVerificationError as error:
            if error.verify_code in _HOSTNAME_MISMATCH:
                return (f"the broker's certificate is not for {host} ({error.verify_message}): dial a name "
                        "it holds in GONGJI_KAFKA_BOOTSTRAP_SERVERS")
            cafile = settings.kafka_ssl_cafile or "the system's CAs (GONGJI_KAFKA_SSL_CAFILE unset)"
            return (f"the broker's certificate is not trusted by GONGJI_KAFKA_SSL_CAFILE={cafile} "
                    f"({error.verify_message})")
        except ssl.SSLError as error:
            return _tls_refused(error, settings)
        except (ConnectionError, socket.timeout):
            return (f"no TLS answer (the connection was closed or nothing came in {timeout:g} s): is it a "
                    f"plaintext port? GONGJI_KAFKA_SECURITY_PROTOCOL is {settings.kafka_security_protocol}")


def _answered(tls: ssl.SSLSocket, settings: Settings) -> str | None:
    """After the handshake: with TLS 1.3 the broker's verdict on our certificate comes now."""
    try:
        tls.sendall(struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS)
        if tls.recv(4):
            return None
    except ssl.SSLError as error:
        return _tls_refused(error, settings)
    except (ConnectionError, socket.timeout):
        pass
    # A broker that refuses a client certificate may close without saying why (the local stack's
    # terminator does: asyncio drops the alert).
    mine = (f"GONGJI_KAFKA_SSL_CERTFILE={settings.kafka_ssl_certfile}: is it signed by a CA the broker trusts?"
            if settings.kafka_ssl_certfile else "does it want a client certificate (GONGJI_KAFKA_SSL_CERTFILE)?")
    return f"the broker closed the connection after the TLS handshake; {mine}"


def _tls_refused(error: ssl.SSLError, settings: Settings) -> str:
    reason = (error.reason or str(error)).lower().replace("_", " ")
    if any(word in reason for word in ("certificate required", "unknown ca", "bad certificate", "certificate unknown")):
        mine = settings.kafka_ssl_certfile or "none (GONGJI_KAFKA_SSL_CERTFILE unset)"
        return (f"the broker refused our client certificate ({reason}): GONGJI_KAFKA_SSL_CERTFILE={mine} "
                "must be signed by a CA the broker trusts")
    if "wrong version number" in reason or "record layer failure" in reason or "packet length" in reason:
        return (f"the port does not speak TLS ({reason}): GONGJI_KAFKA_SECURITY_PROTOCOL is "
                f"{settings.kafka_security_protocol}; a plaintext listener wants PLAINTEXT or SASL_PLAINTEXT")
    return f"TLS handshake failed ({reason}); GONGJI_KAFKA_SECURITY_PROTOCOL is {settings.kafka_security_protocol}"


def _plaintext_refused(sock: socket.socket, host: str, settings: Settings) -> str | None:
    """A plaintext client: does the port answer Kafka, or does it want TLS?"""
    try:
        sock.sendall(struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS)
        if sock.recv(4):
            return None
    except (ConnectionError, socket.timeout):
        pass
    try:
        probe = ssl.create_default_context()
        probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE  # only asking: TLS or not?
        with socket.create_connection(sock.getpeername()[:2], timeout=PROBE_SECONDS) as again:
            with probe.wrap_socket(again, server_hostname=host):
                pass
    except ssl.SSLError as error:
        if "alert" not in str(error).lower():  # an alert is the broker speaking TLS
            return (f"the broker closed the connection; GONGJI_KAFKA_SECURITY_PROTOCOL is "
                    f"{settings.kafka_security_protocol}: does it want SASL (SASL_PLAINTEXT)?")
    except OSError:
        return (f"the broker closed the connection; GONGJI_KAFKA_SECURITY_PROTOCOL is "
                f"{settings.kafka_security_protocol}: does it want SASL (SASL_PLAINTEXT)?")
    return ("the port speaks TLS: set GONGJI_KAFKA_SECURITY_PROTOCOL=SSL (or SASL_SSL), with "
            "GONGJI_KAFKA_SSL_CAFILE and, for a client certificate, GONGJI_KAFKA_SSL_CERTFILE")


def _scram_refused(error: BaseException) -> bool:
    """aiokafka's SCRAM client reading a server-final message without `v=` (Tansu's refusal)."""
    if not (isinstance(error, KeyError) and error.args == ("v",)):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and "aiokafka" in frames[-1].filename
