"""What an operator sees from `gongji` when a server is away, as a subprocess on closed ports: one
line naming the server, its address and the setting, never a traceback; a service then waits with
backoff, summing up; a one-shot command stops; a missing stack says where it looked."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

GONGJI = [sys.executable, "-m", "gongji.cli"]
ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(**settings: str) -> dict[str, str]:
    """The caller's environment without any GONGJI_ setting, and `settings` (GONGJI_ names)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GONGJI_")}
    return {**env, "GONGJI_LOG_FORMAT": "text", **settings}


def lines_until(process: subprocess.Popen, marker: str, timeout: float = 60) -> list[str]:
    """stderr lines of `process` up to and including the first holding `marker`."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, f"exited before {marker!r}: {seen}"
        seen.append(line)
        if marker in line:
            return seen


def test_a_service_whose_servers_are_away_says_so_once_and_waits_with_backoff():
    kafka, redis = closed_port(), closed_port()
    env = environment(GONGJI_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka}",
                      GONGJI_REDIS_URL=f"redis://gongji-clearing:s3cret@127.0.0.1:{redis}/0",
                      GONGJI_RETRY_INITIAL_SECONDS="0.05", GONGJI_RETRY_MAX_SECONDS="0.2")
    process = subprocess.Popen([*GONGJI, "run", "clearing"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        seen = lines_until(process, "still waiting")
    finally:
        process.terminate()
        process.wait(timeout=30)
    told = [line.split(" WARNING gongji.reachable: ", 1)[1] for line in seen if "does not answer" in line]
    assert told == [
        f"clearing: Kafka at 127.0.0.1:{kafka} does not answer (Connection refused); is it running, and is "
        "GONGJI_KAFKA_BOOTSTRAP_SERVERS right?; waiting for it, trying again with backoff up to 0.2 s",
        f"clearing: Redis at redis://gongji-clearing:***@127.0.0.1:{redis}/0 does not answer (Connection refused); "
        "is it running, and is GONGJI_REDIS_URL right?; waiting for it, trying again with backoff up to 0.2 s"]
    assert f"still waiting for Kafka at 127.0.0.1:{kafka}, Redis at redis://gongji-clearing:***@" in seen[-1]
    assert not any("Traceback" in line or "s3cret" in line for line in seen), seen


@pytest.mark.parametrize("command", [
    ["ledger", "balances"], ["ledger", "check"], ["ledger", "entry", "S-1"],
    ["reconcile", "--fixmedins", "H15250100001", "--from", "2023-03-01", "--to", "2023-03-31",
     "--medfee-sumamt", "1", "--fund-pay-sumamt", "1", "--acct-pay", "0", "--count", "1"],
])
def test_the_ledgers_commands_need_only_the_database_and_say_in_one_line_that_it_is_away(command):
    port = closed_port()
    done = subprocess.run([*GONGJI, *command], env=environment(
        GONGJI_DATABASE_URL=f"postgresql://gongji_ledger:s3cret@127.0.0.1:{port}/gongji"),
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"gongji: PostgreSQL at postgresql://gongji_ledger:***@127.0.0.1:{port}/gongji: connection failed: connection "
        f'to server at "127.0.0.1", port {port} failed: Connection refused; is it running, and is GONGJI_DATABASE_URL '
        "right?"]


def test_a_command_run_without_servers_from_a_subdirectory_says_where_it_looked_for_the_stack(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "docs" / "notes").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text('[project]\nname = "gongji"\n')
    done = subprocess.run([*GONGJI, "topics", "describe"], cwd=checkout / "docs" / "notes", env=environment(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (f"looked for stack.json in {checkout}/docs/notes/.gongji, {checkout}/docs/.gongji, {checkout}/.gongji)"
            in done.stderr)
