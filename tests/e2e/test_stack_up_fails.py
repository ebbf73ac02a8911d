"""`gongji stack up` fails loudly when a service it started dies on start (issue 14: a second
`stack up` beside a running dashboard printed 8350 and exited 0 while its own dashboard had died on
"address already in use"): exit 1, one line naming the service and why, and nothing left running."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from gongji.services import SERVICES
from tests.e2e.test_commands import run


def ours(marker: str) -> list[int]:
    """Processes whose environment names `marker` (the state folder: every server and service of
    this stack inherits it)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "environ").read_bytes() \
                    and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_service_that_cannot_listen_stops_stack_up_in_one_line(tmp_path):
    """The port every service's /metrics is given (GONGJI_METRICS_PORT) is taken: the services die
    on "cannot listen"; `stack up` says which, exits 1 and stops the stack it started."""
    state = tmp_path / "state"
    env = {"GONGJI_STATE_DIR": str(state), "GONGJI_METRICS_PORT": "0"}
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env["GONGJI_METRICS_PORT"] = str(port)
        try:
            up = run("stack", "up", env=env, timeout=300)
            assert up.returncode == 1, (up.stdout, up.stderr)
            # Its own line is the last and only one (what else is there is the ledger's migration log).
            lines = [line for line in up.stderr.splitlines() if line.startswith("gongji:")]
            assert len(lines) == 1 and up.stderr.strip().endswith(lines[0]), up.stderr
            assert "Traceback" not in up.stderr
            services = "|".join(SERVICES)
            assert re.fullmatch(rf"gongji: stack up: ({services}) metrics: cannot listen on 127\.0\.0\.1:{port} "
                                r"\(.*in use\): .*; the stack is stopped", lines[0]), lines[0]
            assert "started:" not in up.stdout and "dashboard:" not in up.stdout
            assert not (state / "stack.json").exists()
            assert ours(str(state)) == []
        finally:
            run("stack", "down", env=env)
