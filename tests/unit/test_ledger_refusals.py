"""Which connection errors the ledger stops on at once, in one line (gongji.ledger.store.lasting_refusal
and refusal), and which it waits out: the messages are libpq's own, as psycopg 3.3 raises them
(tests/integration/test_ledger_tls.py meets the TLS ones against a real server)."""

from __future__ import annotations

import pytest

from gongji.ledger.store import lasting_refusal, refusal

AT = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
URL = "postgresql://gongji_ledger:s3cret@db.example:5432/gongji?sslmode=verify-full&sslrootcert=/etc/gongji/ca.crt"

LASTING = {
    "password": AT + 'FATAL:  password authentication failed for user "gongji_ledger"',
    "no password": AT + "fe_sendauth: no password supplied",
    "another CA": AT + "SSL error: certificate verify failed",
    "another name": AT + 'server certificate for "localhost" (and 1 other name) does not match host name "db.example"',
    "no encryption": AT + 'FATAL:  no pg_hba.conf entry for host "127.0.0.1", user "gongji_ledger", database '
                          '"gongji", no encryption',
    "server without TLS": AT + "server does not support SSL, but SSL was required",
    "no CA file": AT + 'root certificate file "/root/.postgresql/root.crt" does not exist\nEither provide the file, '
                       "use the system's trusted roots with sslrootcert=system, or change sslmode to disable server "
                       "certificate verification.",
    "client certificate refused": AT + "SSL error: tlsv13 alert certificate required",
}
PASSING = {
    "not up yet": AT + "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
    "starting": AT + "FATAL:  the database system is starting up",
    "shutting down": AT + "FATAL:  the database system is shutting down",
    "dropped during the handshake": AT + "SSL SYSCALL error: EOF detected",
    "timeout": "connection timeout expired",
}


@pytest.mark.parametrize("message", LASTING.values(), ids=LASTING.keys())
def test_a_refusal_waiting_does_not_change_is_lasting_and_one_line_without_the_password(message):
    assert lasting_refusal(Exception(message))
    line = refusal(URL, Exception(message))
    assert "\n" not in line and "s3cret" not in line
    assert line.startswith("PostgreSQL at postgresql://gongji_ledger:***@db.example:5432/gongji?sslmode=verify-full"
                           "&sslrootcert=/etc/gongji/ca.crt refused the connection: ")
    # The reason, without psycopg's and libpq's repetition of the address or the severity.
    reason = line.split(" refused the connection: ", 1)[1]
    assert not reason.startswith(("connection", "FATAL")), reason


def test_the_reason_keeps_libpqs_hint():
    line = refusal(URL, Exception(LASTING["no CA file"]))
    assert line.endswith('refused the connection: root certificate file "/root/.postgresql/root.crt" does not exist; '
                         "Either provide the file, use the system's trusted roots with sslrootcert=system, or change "
                         "sslmode to disable server certificate verification.")


@pytest.mark.parametrize("message", PASSING.values(), ids=PASSING.keys())
def test_a_server_not_answering_yet_is_waited_for(message):
    assert not lasting_refusal(Exception(message))
