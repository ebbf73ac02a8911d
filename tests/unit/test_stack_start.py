"""`gongji stack up` waits for what it started: the dashboard and the gateway say where they listen,
in their own logs, and a service that dies first is named with its reason (issue 14: a second
`stack up` beside a running dashboard printed 8350 and exited 0 while its own dashboard had died on
"address already in use"). Real child processes, standing in for the services."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gongji.local.errors import StackError
from gongji.local.launch import SERVING
from gongji.local.processes import Started, wait_started

pytestmark = pytest.mark.unit

TAKEN = ("gongji: dashboard: cannot listen on 127.0.0.1:8350 (Address already in use): another process has it "
         "(a second copy of this service?); stop it or set GONGJI_DASHBOARD_PORT to a free port")
SERVES = "2026-12-01 03:30:00 INFO gongji.{0}: {0}: http://127.0.0.1:{1}/ (Kafka 127.0.0.1:9092, topics *)"


@pytest.fixture
def children():
    """Start `python -c CODE` children logging to a file; each left alive is stopped at the end."""
    started: list[subprocess.Popen] = []

    def start(tmp: Path, name: str, code: str, earlier: str = "") -> Started:
        log_path = tmp / f"{name}.log"
        log_path.write_text(earlier)
        with open(log_path, "ab") as log:
            offset = log.tell()
            process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=log, stdin=subprocess.PIPE)
        started.append(process)
        return Started(name, process, log_path, offset, SERVING.get(name))

    yield start
    for process in started:
        process.kill()
        process.wait()


def serving(name: str, port: int) -> str:
    """Writes the line the service writes once it listens, then runs until its stdin closes."""
    return f"import sys; print({SERVES.format(name, port)!r}, flush=True); sys.stdin.read()"


def dying(line: str, status: int = 1) -> str:
    return f"import sys; sys.exit({line!r})" if line else f"import sys; sys.exit({status})"


def test_the_addresses_come_from_the_services_own_lines_not_an_earlier_run(children, tmp_path):
    dashboard = children(tmp_path, "dashboard", serving("dashboard", 8351), earlier=TAKEN + "\n")
    gateway = children(tmp_path, "gateway", serving("gateway", 8352))
    settlement = children(tmp_path, "settlement", "import sys; sys.stdin.read()")
    assert wait_started([settlement, dashboard, gateway], timeout=60) == {
        "dashboard": "http://127.0.0.1:8351/", "gateway": "http://127.0.0.1:8352/"}


def test_a_dashboard_that_lost_its_port_is_named_with_the_reason(children, tmp_path):
    dashboard = children(tmp_path, "dashboard", dying(TAKEN))
    gateway = children(tmp_path, "gateway", serving("gateway", 8352))
    with pytest.raises(StackError) as raised:
        wait_started([dashboard, gateway], timeout=60)
    assert str(raised.value) == TAKEN.removeprefix("gongji: ")
    assert "\n" not in str(raised.value)


def test_a_service_without_an_address_that_dies_is_named_too(children, tmp_path):
    """Named even when its own line does not say its name, or it said nothing at all."""
    ledger = children(tmp_path, "ledger", dying("gongji: PostgreSQL refused the password"))
    dashboard = children(tmp_path, "dashboard", "import sys; sys.stdin.read()")  # never serves
    with pytest.raises(StackError, match=r"^ledger: PostgreSQL refused the password$"):
        wait_started([ledger, dashboard], timeout=60)
    silent = children(tmp_path, "fraud", dying("", status=3))
    with pytest.raises(StackError, match=r"^fraud: exited with status 3 \(its log: .*fraud\.log\)$"):
        wait_started([silent, dashboard], timeout=60)


def test_a_service_that_never_serves_is_named_after_the_timeout(children, tmp_path):
    gateway = children(tmp_path, "gateway", "import sys; sys.stdin.read()")
    with pytest.raises(StackError, match=r"^gateway: not serving 0 s after it started"):
        wait_started([gateway], timeout=0.3)
